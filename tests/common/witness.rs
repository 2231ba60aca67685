//! Real `veritrail witness` processes for tests, and the `cosignature/v1` check written
//! here from C2SP tlog-cosignature (not the service's code).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use base64::Engine as _;
use ed25519_dalek::Verifier as _;
use sha2::{Digest, Sha256};

/// A running witness; killed when dropped.
pub struct WitnessProc {
    pub child: Child,
    pub url: String,
    /// Its verifier key, as it printed it.
    pub vkey: String,
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on loopback (the witness restarts on the same one: the policy names it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `veritrail witness` in `dir` on `port`, named `name`, following the logs `logs`.
pub fn start_witness(dir: &Path, name: &str, port: u16, logs: &[&str]) -> WitnessProc {
    let mut cmd = Command::new(super::BIN);
    cmd.args([
        "witness",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--name",
        name,
    ])
    .arg("--data-dir")
    .arg(dir)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for l in logs {
        cmd.args(["--log", l]);
    }
    let mut child = cmd.spawn().expect("start veritrail witness");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let vkey = lines
        .next()
        .expect("the witness printed its key")
        .unwrap()
        .trim()
        .to_owned();
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    let url = format!("http://127.0.0.1:{port}");
    // Listening once it prints its key; wait for the port to answer all the same.
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    WitnessProc { child, url, vkey }
}

/// The timestamp of a valid `cosignature/v1` by the witness key `vkey`
/// (`name+keyid+base64(0x04 ‖ key)`) on the signed checkpoint `note`, if it carries one.
pub fn cosigned(note: &str, vkey: &str) -> Option<u64> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut parts = vkey.splitn(3, '+');
    let (name, id_hex, key) = (parts.next()?, parts.next()?, parts.next()?);
    let key = b64.decode(key).ok()?;
    if key.len() != 33 || key[0] != 0x04 {
        return None;
    }
    let id = &Sha256::new()
        .chain_update(name.as_bytes())
        .chain_update(b"\n\x04")
        .chain_update(&key[1..])
        .finalize()[..4];
    if hex::encode(id) != id_hex {
        return None;
    }
    let public = ed25519_dalek::VerifyingKey::from_bytes(key[1..].try_into().ok()?).ok()?;
    let at = note.rfind("\n\n")?;
    let (text, sigs) = (&note[..at + 1], &note[at + 2..]);
    sigs.lines().find_map(|line| {
        let rest = line.strip_prefix("\u{2014} ")?;
        let (n, sig) = rest.split_once(' ')?;
        let sig = b64.decode(sig).ok()?;
        if n != name || sig.len() != 76 || &sig[..4] != id {
            return None;
        }
        let time = u64::from_be_bytes(sig[4..12].try_into().ok()?);
        let message = format!("cosignature/v1\ntime {time}\n{text}");
        let s = ed25519_dalek::Signature::from_slice(&sig[12..]).ok()?;
        public.verify(message.as_bytes(), &s).ok().map(|_| time)
    })
}

/// The tree size of a checkpoint note.
pub fn size_of(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}
