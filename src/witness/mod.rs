//! Witnesses: C2SP tlog-witness and tlog-cosignature. `cosignature.rs` signs and checks
//! `cosignature/v1`; `policy.rs` reads the witness policy file and decides quorums;
//! `server.rs` is `veritrail witness`; `submit.rs` is the log's side, sending its
//! checkpoints to the policy's witnesses and keeping their cosignatures.

pub mod cosignature;
pub mod policy;
pub mod server;
pub mod submit;
