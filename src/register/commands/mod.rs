//! The register's commands: the rule checks the writer runs before it appends (the
//! review gate, the decision gate, idempotency, four eyes) and the drafts they return.
//! A command reads projections (through `Staging`) and reports, never another command;
//! it returns drafts, and the log projects them.

pub mod blind;
pub mod boundaries;
pub mod decisions;
pub mod erasure;
pub mod incidents;
pub mod models;
pub mod outcomes;
pub mod systems;
