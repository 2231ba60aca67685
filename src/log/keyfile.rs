//! The log's signing key on disk: PKCS#8 PEM, mode 0600, created at first start.
//! A key file that group or others can read is refused: the key is the log's identity.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

use anyhow::Context as _;
use std::path::Path;

use ed25519_dalek::pkcs8::{spki::der::pem::LineEnding, DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error(
        "key file {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
    )]
    TooOpen { path: String, mode: u32 },
    #[error("key file {path}: {reason}")]
    Invalid { path: String, reason: String },
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Write `contents` to a new file with mode 0600 (failing if it exists), durably.
pub fn write_secret_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Refuse a secret file that group or others can access.
pub fn check_private(path: &Path) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.display().to_string(),
        source,
    };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.display().to_string(),
            mode,
        });
    }
    Ok(())
}

/// Load the key at `path`, or create it there when absent. Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), KeyFileError> {
    let p = path.display().to_string();
    if path.exists() {
        check_private(path)?;
        let pem = fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: p.clone(),
            source,
        })?;
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyFileError::Invalid {
            path: p,
            reason: e.to_string(),
        })?;
        return Ok((key, false));
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = to_pem(&key).map_err(|reason| KeyFileError::Invalid {
        path: p.clone(),
        reason,
    })?;
    write_secret_file(path, pem.as_bytes())
        .map_err(|source| KeyFileError::Io { path: p, source })?;
    Ok((key, true))
}

/// The key as a PKCS#8 v1 PEM document (RFC 8410: the private key only, no public key
/// beside it), the form OpenSSL's `pkey` and Python's `cryptography` read, so an
/// operator can inspect, back up and move the log's key with the usual tools. Files
/// written as v2 (with the public key) by earlier versions still load.
pub fn to_pem(
    key: &SigningKey,
) -> Result<ed25519_dalek::pkcs8::spki::der::zeroize::Zeroizing<String>, String> {
    ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(LineEnding::LF)
    .map_err(|e| e.to_string())
}

/// Parse a PKCS#8 PEM key given directly (e.g. from an environment variable shared by several nodes).
pub fn from_pem(pem: &str) -> Result<SigningKey, KeyFileError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyFileError::Invalid {
        path: "(environment)".into(),
        reason: e.to_string(),
    })
}

/// The data dir is the owner's alone, on every start: 0700, created so or made so; a
/// dir that cannot be made private is refused. (What the process creates in it is
/// private by [`private_files`].)
pub fn private_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    private_files();
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("creating {}", path.display()))?;
    }
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "the data dir {} is open to others (mode {:o}) and cannot be made private (0700): fix its owner or mode",
                    path.display(),
                    mode & 0o777
                )
            },
        )?;
        tracing::warn!(path = %path.display(), was = format!("{:o}", mode & 0o777), "made the data dir private (0700)");
    }
    Ok(())
}

/// Everything this process creates is its owner's alone (umask 077: files 0600,
/// folders 0700, sled's own included). The binary sets it before any command runs.
pub fn private_files() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}
