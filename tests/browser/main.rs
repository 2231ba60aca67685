//! The console in a real browser (Debian's chromium, headless, through chromedriver)
//! against the real binary: what an officer and an auditor do, as they would do it.
//! The harness is in `harness.rs`; one file per screen.

#[path = "../common/mod.rs"]
mod common;
mod harness;

mod docs;
mod layout;
mod review;
mod session;
mod trail;
mod verify;

use serde_json::json;

use harness::World;

/// The people of a system's story, by their tokens.
pub struct People {
    pub pipeline: String,
    pub officer: String,
    pub officer2: String,
    pub auditor: String,
}

impl World {
    pub async fn people(&self) -> People {
        People {
            pipeline: self.token("deploy-bot", "pipeline").await,
            officer: self.token("dana", "officer").await,
            officer2: self.token("olu", "officer").await,
            auditor: self.token("aud", "auditor").await,
        }
    }

    /// System `id` registered by `officer`, with version `v` registered, tested,
    /// approved by `officer2` and deployed.
    pub async fn deployed(&self, p: &People, id: &str, v: &str) {
        self.api("POST", "/v1/systems", &p.officer, common::system(id))
            .await;
        let models = format!("/v1/systems/{id}/models");
        self.api("POST", &models, &p.pipeline, common::version(v, None))
            .await;
        let t = self
            .api(
                "POST",
                &format!("{models}/{v}/tests"),
                &p.pipeline,
                common::external_test(true),
            )
            .await;
        self.api(
            "POST",
            &format!("{models}/{v}/reviews"),
            &p.officer2,
            json!({"outcome": "approved", "rationale": "ok", "evidence": [t["id"]]}),
        )
        .await;
        self.api(
            "POST",
            &format!("{models}/{v}/deployments"),
            &p.pipeline,
            json!({}),
        )
        .await;
    }

    /// Decision `decision_id` about `subject` under the deployed version `v`.
    pub async fn decide(&self, p: &People, id: &str, v: &str, decision_id: &str, subject: &str) {
        self.api(
            "POST",
            &format!("/v1/systems/{id}/decisions"),
            &p.pipeline,
            common::decision(decision_id, v, subject),
        )
        .await;
    }
}
