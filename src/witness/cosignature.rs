//! C2SP tlog-cosignature `cosignature/v1`: an Ed25519 signature, with its timestamp, by a
//! witness over a checkpoint it checked for consistency.
//!
//! The signed message is `cosignature/v1\ntime <unix seconds>\n` followed by the
//! checkpoint's note text; the signature line is `— <name> base64(key id ‖ u64 timestamp
//! ‖ 64-byte signature)`, the key id `SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]`, and
//! the verifier key `<name>+<hex key id>+<base64(0x04 ‖ public key)>`.

use crate::log::note::valid_name;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};

/// The signature type byte of `cosignature/v1` keys.
const ALG_COSIGNATURE_V1: u8 = 0x04;
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("malformed witness key: {0}")]
    BadKey(&'static str),
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    crate::log::note::typed_key_id(name, ALG_COSIGNATURE_V1, public)
}

fn message(text: &str, timestamp: u64) -> Vec<u8> {
    format!("cosignature/v1\ntime {timestamp}\n{text}").into_bytes()
}

/// A witness's signing half.
#[derive(Clone)]
pub struct Cosigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CosignatureError> {
        if !valid_name(name) {
            return Err(CosignatureError::BadKey(
                "name must be non-empty, without '+' or spaces",
            ));
        }
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The signature line (ending in a newline) cosigning the checkpoint `text` at
    /// `timestamp` (unix seconds, not zero).
    pub fn cosign(&self, text: &str, timestamp: u64) -> String {
        let sig = self.key.sign(&message(text, timestamp));
        let mut blob = Vec::with_capacity(76);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

/// A witness's verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CosignatureVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl CosignatureVerifier {
    /// Parse `<name>+<hex key id>+<base64(0x04 ‖ public key)>`.
    pub fn parse(s: &str) -> Result<Self, CosignatureError> {
        let mut parts = s.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CosignatureError::BadKey("expected name+keyid+key"));
        };
        if !valid_name(name) {
            return Err(CosignatureError::BadKey("bad name"));
        }
        let id: [u8; 4] = hex::decode(id_hex)
            .ok()
            .and_then(|v| v.try_into().ok())
            .filter(|_| id_hex.len() == 8 && id_hex == id_hex.to_ascii_lowercase())
            .ok_or(CosignatureError::BadKey(
                "key id must be 8 lowercase hex digits",
            ))?;
        let data = B64
            .decode(data)
            .map_err(|_| CosignatureError::BadKey("key data is not standard base64"))?;
        let public: [u8; 32] = match data.split_first() {
            Some((&ALG_COSIGNATURE_V1, k)) => k
                .try_into()
                .map_err(|_| CosignatureError::BadKey("public key must be 32 bytes"))?,
            _ => {
                return Err(CosignatureError::BadKey(
                    "only cosignature/v1 (type 0x04) keys are supported",
                ))
            }
        };
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| CosignatureError::BadKey("not an Ed25519 public key"))?;
        if key_id(name, &public) != id {
            return Err(CosignatureError::BadKey("key id does not match key"));
        }
        Ok(Self {
            name: name.to_owned(),
            id,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The timestamp of a valid cosignature by this key on the checkpoint `text` among
    /// `lines` (signature lines; others' are ignored), if there is one.
    pub fn verify(&self, text: &str, lines: &str) -> Option<u64> {
        lines.lines().find_map(|line| self.verify_line(text, line))
    }

    /// Whether `line` is a signature line naming this key (its name and key id; whether
    /// the signature is valid is not asked): witnesses left at one default name are
    /// still told apart by their keys.
    pub fn names_key_of(&self, line: &str) -> bool {
        let Some((name, b64)) = line
            .strip_prefix(SIG_PREFIX)
            .and_then(|l| l.split_once(' '))
        else {
            return false;
        };
        name == self.name
            && B64
                .decode(b64.trim_end())
                .is_ok_and(|b| b.get(..4) == Some(&self.id[..]))
    }

    /// The timestamp of `line`, when it is a valid cosignature by this key on `text`.
    pub fn verify_line(&self, text: &str, line: &str) -> Option<u64> {
        let (name, b64) = line.strip_prefix(SIG_PREFIX)?.split_once(' ')?;
        if name != self.name {
            return None;
        }
        let blob = B64.decode(b64).ok()?;
        if blob.len() != 76 || blob[..4] != self.id {
            return None;
        }
        let timestamp = u64::from_be_bytes(blob[4..12].try_into().ok()?);
        let sig = Signature::from_slice(&blob[12..]).ok()?;
        self.key
            .verify(&message(text, timestamp), &sig)
            .ok()
            .map(|_| timestamp)
    }
}

impl std::fmt::Display for CosignatureVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut data = vec![ALG_COSIGNATURE_V1];
        data.extend_from_slice(self.key.as_bytes());
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.id),
            B64.encode(data)
        )
    }
}

/// A signed note's text and its signature lines: (text ending in `\n`, lines).
pub fn split_note(note: &str) -> Option<(&str, &str)> {
    let at = note.rfind("\n\n")?;
    Some((&note[..at + 1], &note[at + 2..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosigner() -> Cosigner {
        Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[7; 32])).unwrap()
    }

    #[test]
    fn a_cosignature_verifies_with_its_timestamp_and_the_key_round_trips() {
        let c = cosigner();
        let text = "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let line = c.cosign(text, 1_679_315_147);
        let v = CosignatureVerifier::parse(&c.verifier().to_string()).unwrap();
        assert_eq!(v, c.verifier());
        assert_eq!(v.verify(text, &line), Some(1_679_315_147));
        // Another checkpoint, or the same one at another time, does not verify.
        assert_eq!(v.verify("example.com/log\n6\nAAAA\n", &line), None);
        let other = c.cosign(text, 1);
        let forged = format!("{}{}", &other[..other.len() - 20], &line[line.len() - 20..]);
        assert_eq!(v.verify(text, &forged), None);
    }

    #[test]
    fn a_log_key_is_not_a_witness_key() {
        // Type 0x01 (a log's signed-note key) is refused: witnesses sign cosignature/v1.
        let log = crate::log::note::NoteSigner::new("w", SigningKey::from_bytes(&[7; 32]))
            .unwrap()
            .verifier()
            .to_string();
        assert!(CosignatureVerifier::parse(&log).is_err());
    }
}
