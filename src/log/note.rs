//! C2SP `signed-note` with Ed25519 and C2SP `tlog-checkpoint` bodies.
//!
//! A note is its text (ending in `\n`), a blank line, and signature lines
//! `— <key name> <base64(4-byte key id ‖ 64-byte signature)>`. The key id is
//! `SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key)[:4]`; 0x01 is the Ed25519 type byte.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use super::merkle::Hash;

const ALG_ED25519: u8 = 0x01;
const SIG_PREFIX: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed key string: {0}")]
    BadKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("no valid signature by key {0}")]
    Unverified(String),
    #[error("malformed checkpoint: {0}")]
    BadCheckpoint(&'static str),
}

fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    typed_key_id(name, ALG_ED25519, public)
}

/// A signed-note key id: `SHA-256(name ‖ "\n" ‖ type byte ‖ public key)[:4]` (the type
/// is 0x01 for a note signer, 0x04 for a `cosignature/v1` witness).
pub fn typed_key_id(name: &str, alg: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A key name signed notes accept: non-empty, without `+`, spaces or control characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('+')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A note signer: a key name (the log's origin) and an Ed25519 key.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadKey(
                "key name must be non-empty, without '+' or spaces",
            ));
        }
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key,
            id,
        })
    }

    /// Parse `PRIVATE+KEY+<name>+<hex id>+<base64(0x01 ‖ seed)>`.
    pub fn from_key_string(s: &str) -> Result<Self, NoteError> {
        let rest = s
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::BadKey("missing PRIVATE+KEY+ prefix"))?;
        let (name, id, data) = split_key(rest)?;
        let seed: [u8; 32] = data
            .try_into()
            .map_err(|_| NoteError::BadKey("private key must be 32 bytes"))?;
        let signer = Self::new(name, SigningKey::from_bytes(&seed))?;
        if signer.id != id {
            return Err(NoteError::BadKey("key id does not match key"));
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// Sign `text` (which must end in a newline) and return the whole note.
    pub fn sign(&self, text: &str) -> String {
        debug_assert!(text.ends_with('\n'));
        let sig = self.key.sign(text.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.id);
        blob.extend_from_slice(&sig.to_bytes());
        format!("{text}\n{SIG_PREFIX}{} {}\n", self.name, B64.encode(blob))
    }
}

fn split_key(s: &str) -> Result<(&str, [u8; 4], Vec<u8>), NoteError> {
    let mut parts = s.splitn(3, '+');
    let name = parts.next().ok_or(NoteError::BadKey("missing name"))?;
    let id_hex = parts.next().ok_or(NoteError::BadKey("missing key id"))?;
    let data_b64 = parts.next().ok_or(NoteError::BadKey("missing key data"))?;
    if !valid_name(name) {
        return Err(NoteError::BadKey("bad key name"));
    }
    let id: [u8; 4] = hex::decode(id_hex)
        .ok()
        .and_then(|v| v.try_into().ok())
        .filter(|_| {
            id_hex.len() == 8
                && id_hex
                    .chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        })
        .ok_or(NoteError::BadKey("key id must be 8 lowercase hex digits"))?;
    let data = B64
        .decode(data_b64)
        .map_err(|_| NoteError::BadKey("key data is not standard base64"))?;
    match data.split_first() {
        Some((&ALG_ED25519, key)) => Ok((name, id, key.to_vec())),
        _ => Err(NoteError::BadKey(
            "only Ed25519 (type 0x01) keys are supported",
        )),
    }
}

/// A note verifier: `<name>+<hex key id>+<base64(0x01 ‖ public key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl NoteVerifier {
    pub fn parse(s: &str) -> Result<Self, NoteError> {
        let (name, id, data) = split_key(s.trim())?;
        let public: [u8; 32] = data
            .try_into()
            .map_err(|_| NoteError::BadKey("public key must be 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&public)
            .map_err(|_| NoteError::BadKey("not an Ed25519 public key"))?;
        if key_id(name, &public) != id {
            return Err(NoteError::BadKey("key id does not match key"));
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

    /// Check that `note` carries a valid signature by this key; return its text.
    /// Signatures by other keys are ignored, as C2SP signed-note allows.
    pub fn verify<'a>(&self, note: &'a str) -> Result<&'a str, NoteError> {
        let split = note
            .rfind("\n\n")
            .ok_or(NoteError::Malformed("no blank line before signatures"))?;
        let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(NoteError::Malformed(
                "signature block must end in a newline",
            ));
        }
        for line in sigs.lines() {
            let rest = line.strip_prefix(SIG_PREFIX).ok_or(NoteError::Malformed(
                "signature line must start with an em dash",
            ))?;
            let (name, b64) = rest.split_once(' ').ok_or(NoteError::Malformed(
                "signature line needs a name and a signature",
            ))?;
            if name != self.name {
                continue;
            }
            let blob = B64
                .decode(b64)
                .map_err(|_| NoteError::Malformed("signature is not standard base64"))?;
            if blob.len() != 68 || blob[..4] != self.id {
                continue;
            }
            let sig = Signature::from_slice(&blob[4..])
                .map_err(|_| NoteError::Malformed("bad signature bytes"))?;
            if self.key.verify(text.as_bytes(), &sig).is_ok() {
                return Ok(text);
            }
        }
        Err(NoteError::Unverified(self.name.clone()))
    }
}

impl std::fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut data = vec![ALG_ED25519];
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

/// A C2SP tlog-checkpoint body: origin, tree size and root hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parse a checkpoint body (extension lines after the root are allowed and ignored).
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let mut lines = text.split_inclusive('\n');
        let mut next = |what: &'static str| -> Result<&str, NoteError> {
            let line = lines.next().ok_or(NoteError::BadCheckpoint(what))?;
            line.strip_suffix('\n')
                .ok_or(NoteError::BadCheckpoint(what))
        };
        let origin = next("missing origin line")?;
        if origin.is_empty() {
            return Err(NoteError::BadCheckpoint("empty origin"));
        }
        let size_s = next("missing tree size line")?;
        if size_s.is_empty()
            || !size_s.bytes().all(|b| b.is_ascii_digit())
            || (size_s.len() > 1 && size_s.starts_with('0'))
        {
            return Err(NoteError::BadCheckpoint(
                "tree size must be a decimal number without leading zeros",
            ));
        }
        let size = size_s
            .parse()
            .map_err(|_| NoteError::BadCheckpoint("tree size out of range"))?;
        let root: Hash = B64
            .decode(next("missing root hash line")?)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(NoteError::BadCheckpoint(
                "root hash must be 32 bytes of standard base64",
            ))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    /// Verify a signed checkpoint note and parse its body; the origin must be the key's name.
    pub fn open(note: &str, verifier: &NoteVerifier) -> Result<Self, NoteError> {
        let cp = Self::parse(verifier.verify(note)?)?;
        if cp.origin != verifier.name() {
            return Err(NoteError::BadCheckpoint(
                "origin is not the verifier key's name",
            ));
        }
        Ok(cp)
    }
}
