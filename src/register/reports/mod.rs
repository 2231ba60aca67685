//! The register's reports: what the projections say about a system, computed on read
//! (compliance findings, the failure-mode report) and the reconciliation of findings
//! with the open finding entries. Reports read projections, never commands.

pub mod compliance;
pub mod failure_modes;
pub mod findings;
