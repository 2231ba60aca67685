//! Veritrail: a compliance register and immutable, verifiable decision ledger for
//! production AI systems. See ARCHITECTURE.md for the map.

pub mod api;
pub mod audit;
pub mod cli;
pub mod config;
pub mod decimal;
pub mod error;
pub mod evaluators;
pub mod events;
pub mod fields;
pub mod log;
pub mod migrate;
pub mod projection;
pub mod register;
pub mod reindex;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tokens;
pub mod witness;
