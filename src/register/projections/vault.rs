//! Personal data stays off the log. A decision's `subject_ref`, `input_sha256` and
//! `inputs` enter its entry only as salted commitments, `HMAC-SHA256(key = 32-byte random salt, message =
//! RFC 8785 canonical JSON of the value)`; the value and its salt live in the vault
//! beside the log. Erasing them (crypto-shredding) leaves every entry, leaf hash and
//! proof valid: the field then reads as erased.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;

use crate::error::AppError;

/// RFC 8785 canonical JSON bytes of a value.
pub fn canonical(v: &serde_json::Value) -> Result<Vec<u8>, AppError> {
    serde_json_canonicalizer::to_vec(v)
        .map_err(|e| AppError::internal(format!("canonical JSON: {e}")))
}

/// The commitment to `value` under `salt`.
pub fn commit(salt: &[u8; 32], value: &serde_json::Value) -> Result<[u8; 32], AppError> {
    Ok(commit_canonical(salt, &canonical(value)?))
}

/// The commitment to a value already in its canonical JSON bytes.
pub fn commit_canonical(salt: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(canonical);
    mac.finalize().into_bytes().into()
}

/// The commitment to a value given as its canonical JSON text, and its opening: the
/// value canonicalized once for both.
pub fn seal_canonical(salt: [u8; 32], canonical: String) -> ([u8; 32], Opening) {
    let commitment = commit_canonical(&salt, canonical.as_bytes());
    (commitment, Opening::of_canonical(salt, canonical))
}

/// The canonical JSON text of a value.
pub fn canonical_text(v: &serde_json::Value) -> Result<String, AppError> {
    String::from_utf8(canonical(v)?).map_err(AppError::internal)
}

/// The canonical JSON text of a lowercase hex digest: the digits in quotes (RFC 8785
/// escapes nothing in them), without a round through a JSON value.
pub fn canonical_hex(digest: &[u8]) -> String {
    let mut text = String::with_capacity(digest.len() * 2 + 2);
    text.push('"');
    text.push_str(&hex::encode(digest));
    text.push('"');
    text
}

pub fn fresh_salt() -> [u8; 32] {
    let mut s = [0u8; 32];
    // ThreadRng: ChaCha12, seeded and periodically reseeded from the OS; a syscall per
    // salt (two per decision) would dominate batch logging.
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut s);
    s
}

/// A value with the salt that opens its commitment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    /// The value's canonical JSON text.
    pub value: String,
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
}

impl Opening {
    pub fn new(salt: [u8; 32], value: &serde_json::Value) -> Result<Self, AppError> {
        Ok(Self::of_canonical(salt, canonical_text(value)?))
    }

    /// The opening of a value given as its canonical JSON text.
    pub fn of_canonical(salt: [u8; 32], canonical: String) -> Self {
        Self {
            value: canonical,
            salt: salt.to_vec(),
        }
    }

    pub fn salt(&self) -> [u8; 32] {
        self.salt.as_slice().try_into().unwrap_or([0; 32])
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.value).unwrap_or(serde_json::Value::Null)
    }
}

/// How a committed field reads: opened (value and salt, checkable against the
/// commitment) or erased.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OpenedField {
    /// The commitment in the entry, lowercase hex.
    pub commitment: String,
    /// The value; absent when erased.
    pub value: Option<serde_json::Value>,
    /// The salt (lowercase hex); absent when erased.
    pub salt: Option<String>,
    pub erased: bool,
}

impl OpenedField {
    pub fn new(commitment: &[u8], opening: Option<&Opening>) -> Self {
        match opening {
            Some(o) => Self {
                commitment: hex::encode(commitment),
                value: Some(o.json()),
                salt: Some(hex::encode(&o.salt)),
                erased: false,
            },
            None => Self {
                commitment: hex::encode(commitment),
                value: None,
                salt: None,
                erased: true,
            },
        }
    }
}

/// The vault row of one decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionVault {
    pub system: String,
    pub subject: Opening,
    pub inputs: Option<Opening>,
    /// When the retention period ends (unix µs).
    pub expires_at: u64,
    /// When the decision was made (unix µs): part of its subject index key.
    pub occurred_at: u64,
    /// The opening of the inputs' digest; absent in rows of decisions written before
    /// the digest was committed (their entries hold it in the clear). Last, so that
    /// packed rows written before it still decode.
    #[serde(default)]
    pub input_sha256: Option<Opening>,
}

pub(crate) use crate::register::projections::keys::decision_key;
pub use crate::register::projections::keys::subject_digest;
