//! The ledger entry envelope: a CBOR map with the keys `v, index, time, kind, system,
//! actor, prev, body`, in that order (see `schemas/entry.cddl`).
//!
//! The bytes written are the bytes hashed: an entry is encoded once, by the writer, and
//! every later check hashes the stored bytes as they are. Decoding is only ever for
//! reading fields, never to re-encode.

use serde::{Deserialize, Serialize};

use super::merkle::Hash;

/// The envelope format version written by this code.
pub const FORMAT_VERSION: u8 = 1;

/// An entry as written. `body` is kind-specific.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Entry<B> {
    pub v: u8,
    pub index: u64,
    /// Server time of sequencing, unix microseconds, non-decreasing along the log.
    pub time: u64,
    pub kind: String,
    pub system: Option<String>,
    pub actor: String,
    #[serde(with = "serde_bytes")]
    pub prev: Vec<u8>,
    pub body: B,
}

/// The envelope without its body, decoded cheaply by the verifier.
pub type EntryHeader = Entry<serde::de::IgnoredAny>;

/// A decoded entry with its body as a generic CBOR value.
pub type RawEntry = Entry<serde_cbor::Value>;

/// Encode an entry. Only the writer calls this.
pub fn encode<B: Serialize>(entry: &Entry<B>) -> Vec<u8> {
    serde_cbor::to_vec(entry).expect("entry envelopes always encode")
}

/// Decode an entry's envelope and body.
pub fn decode<B: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<Entry<B>, serde_cbor::Error> {
    serde_cbor::from_slice(bytes)
}

/// Decode the envelope only, skipping the body.
pub fn decode_header(bytes: &[u8]) -> Result<EntryHeader, serde_cbor::Error> {
    serde_cbor::from_slice(bytes)
}

impl<B> Entry<B> {
    /// `prev` as a fixed-size hash, if it has the right length.
    pub fn prev_hash(&self) -> Option<Hash> {
        self.prev.as_slice().try_into().ok()
    }
}

/// A CBOR value as JSON for reading: byte strings become lowercase hex, maps with
/// non-text keys use the keys' JSON text. Floats are not written by this crate.
pub fn cbor_to_json(v: &serde_cbor::Value) -> serde_json::Value {
    use serde_cbor::Value as C;
    use serde_json::Value as J;
    match v {
        C::Null => J::Null,
        C::Bool(b) => J::Bool(*b),
        C::Integer(i) => {
            if let Ok(u) = u64::try_from(*i) {
                J::from(u)
            } else if let Ok(s) = i64::try_from(*i) {
                J::from(s)
            } else {
                J::String(i.to_string())
            }
        }
        C::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .unwrap_or(J::Null),
        C::Bytes(b) => J::String(hex::encode(b)),
        C::Text(s) => J::String(s.clone()),
        C::Array(a) => J::Array(a.iter().map(cbor_to_json).collect()),
        C::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        C::Text(s) => s.clone(),
                        other => cbor_to_json(other).to_string(),
                    };
                    (key, cbor_to_json(v))
                })
                .collect(),
        ),
        // Decimal fractions (tag 4, `[exponent, mantissa]`) read as JSON numbers.
        C::Tag(4, inner) => match inner.as_ref() {
            C::Array(a) if a.len() == 2 => match (&a[0], &a[1]) {
                (C::Integer(e), C::Integer(m)) => format!("{m}e{e}")
                    .parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(J::Number)
                    .unwrap_or(J::Null),
                _ => J::Null,
            },
            _ => J::Null,
        },
        C::Tag(_, inner) => cbor_to_json(inner),
        _ => J::Null,
    }
}

/// The JSON view of a stored entry (hashes in hex).
pub fn entry_json(bytes: &[u8]) -> Result<serde_json::Value, serde_cbor::Error> {
    let e: RawEntry = decode(bytes)?;
    Ok(serde_json::json!({
        "v": e.v,
        "index": e.index,
        "time": e.time,
        "kind": e.kind,
        "system": e.system,
        "actor": e.actor,
        "prev": hex::encode(&e.prev),
        "body": cbor_to_json(&e.body),
    }))
}
