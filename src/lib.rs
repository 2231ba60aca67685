//! Veritrail: a compliance register and immutable, verifiable decision ledger for
//! production AI systems. See ARCHITECTURE.md for the map.

pub mod ledger;
