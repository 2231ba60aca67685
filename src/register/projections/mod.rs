//! The register's projections: each entry kind's projector and the rows it keeps, their
//! keys, and the readers of those rows. A projector reads only its entry and earlier
//! projections; nothing here imports a command or a report.

pub mod activity;
pub mod blind;
pub mod boundaries;
pub mod decisions;
pub mod erasure;
pub mod evidence;
pub mod findings;
pub mod incidents;
pub mod keys;
pub mod models;
pub mod outcomes;
pub mod systems;
pub mod trail;
pub mod vault;
pub mod windows;

use crate::error::AppError;
use crate::log::Projects;
use crate::register::{
    DECISION_RECORDED, REGISTER_REVIEWED, REVIEW_RECORDED, SYSTEM_REGISTERED, SYSTEM_REVISED,
    TEST_RECORDED, VERSION_DEPLOYED, VERSION_REGISTERED, VERSION_RETIRED,
};

/// Every entry kind this module writes.
pub const KINDS: &[&str] = &[
    SYSTEM_REGISTERED,
    SYSTEM_REVISED,
    REGISTER_REVIEWED,
    VERSION_REGISTERED,
    REVIEW_RECORDED,
    TEST_RECORDED,
    VERSION_DEPLOYED,
    VERSION_RETIRED,
    DECISION_RECORDED,
    erasure::SUBJECT_ERASED,
    erasure::RETENTION_EXPIRED,
    findings::OPENED,
    findings::RESOLVED,
    incidents::DECLARED,
    incidents::REPORTED,
    outcomes::OUTCOME,
    outcomes::CONTESTED,
    outcomes::RESOLVED,
    blind::RECORDED,
    boundaries::EVENT,
];

/// The register's projectors, by the entry kinds each derives rows from.
pub const PROJECTS: &[Projects<AppError>] = &[
    Projects {
        kinds: &[SYSTEM_REGISTERED, SYSTEM_REVISED, REGISTER_REVIEWED],
        projector: systems::project,
    },
    Projects {
        kinds: &[
            VERSION_REGISTERED,
            REVIEW_RECORDED,
            TEST_RECORDED,
            VERSION_DEPLOYED,
            VERSION_RETIRED,
        ],
        projector: models::project,
    },
    Projects {
        kinds: &[DECISION_RECORDED],
        projector: decisions::project,
    },
    Projects {
        kinds: &[outcomes::OUTCOME, outcomes::CONTESTED, outcomes::RESOLVED],
        projector: outcomes::project,
    },
    Projects {
        kinds: &[blind::RECORDED],
        projector: blind::project,
    },
    Projects {
        kinds: &[boundaries::EVENT],
        projector: boundaries::project,
    },
    Projects {
        kinds: &[findings::OPENED, findings::RESOLVED],
        projector: findings::project,
    },
    Projects {
        kinds: &[incidents::DECLARED, incidents::REPORTED],
        projector: incidents::project,
    },
];
