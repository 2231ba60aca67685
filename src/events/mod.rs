//! Events: log entries as CloudEvents 1.0 (JSON), for the live feed (`GET /v1/events`)
//! and webhooks. An event is a view of one entry: its id is the entry's index, its data
//! the entry's JSON view with its index and leaf hash. Entries hold no personal value in
//! the clear (only commitments), and the one field that once did (a decision's
//! `input_sha256`, before it was committed) is left out, so no event carries one.
//!
//! Knows the log's entries and JSON views; imports nothing of `api/` or the register.

use serde_json::{json, Value};

use crate::error::AppError;
use crate::log::{entry, merkle};

pub mod delivery;
pub mod subscriptions;
pub mod targets;

/// The CloudEvents `type` of an entry kind.
pub fn event_type(kind: &str) -> String {
    format!("veritrail.{kind}")
}

/// Which entry kinds a reader wants: exact kinds, `prefix.*` wildcards, or `*` (all).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeFilter {
    exact: Vec<String>,
    prefixes: Vec<String>,
    all: bool,
}

/// Every entry kind the service writes: what a new filter's patterns must name.
pub fn known_kinds() -> impl Iterator<Item = &'static str> {
    crate::register::projections::KINDS.iter().copied().chain([
        crate::tokens::KIND_CREATED,
        crate::tokens::KIND_REVOKED,
        subscriptions::CREATED,
        subscriptions::DELETED,
    ])
}

/// Most patterns one filter holds.
pub const MAX_PATTERNS: usize = 64;

impl TypeFilter {
    /// Everything.
    pub fn all() -> Self {
        Self {
            all: true,
            ..Default::default()
        }
    }

    /// Parse `patterns` (entry kinds such as `decision.recorded`, `finding.*` or `*`);
    /// an empty list means every kind. Errors name `field` (and the pattern's position).
    pub fn parse(field: &str, patterns: &[String]) -> Result<Self, AppError> {
        if patterns.len() > MAX_PATTERNS {
            return Err(AppError::invalid(
                field,
                format!("at most {MAX_PATTERNS} patterns"),
            ));
        }
        let mut f = Self {
            all: patterns.is_empty(),
            ..Default::default()
        };
        for (i, p) in patterns.iter().enumerate() {
            let bad = || {
                AppError::invalid(
                    format!("{field}[{i}]"),
                    format!("{p:?} is not an entry kind (such as decision.recorded), a prefix with .* (finding.*) or *"),
                )
            };
            let kindlike = |s: &str| {
                !s.is_empty()
                    && s.len() <= 64
                    && s.split('.').all(|part| {
                        !part.is_empty()
                            && part
                                .bytes()
                                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                    })
            };
            if p == "*" {
                f.all = true;
            } else if let Some(prefix) = p.strip_suffix(".*") {
                if !kindlike(prefix) {
                    return Err(bad());
                }
                f.prefixes.push(format!("{prefix}."));
            } else if kindlike(p) {
                f.exact.push(p.clone());
            } else {
                return Err(bad());
            }
        }
        Ok(f)
    }

    /// Parse the patterns of a new filter (a feed's query, a subscription being
    /// created): as [`Self::parse`], and each pattern must name at least one entry kind
    /// the service writes, so a typo is refused rather than silently matching nothing.
    /// Stored subscriptions are read with [`Self::parse`], as they were accepted.
    pub fn parse_new(field: &str, patterns: &[String]) -> Result<Self, AppError> {
        let f = Self::parse(field, patterns)?;
        for (i, p) in patterns.iter().enumerate() {
            let one = Self::parse(field, std::slice::from_ref(p))?;
            if !known_kinds().any(|k| one.matches(k)) {
                return Err(AppError::invalid(
                    format!("{field}[{i}]"),
                    format!("{p:?} names no entry kind the service writes"),
                ));
            }
        }
        Ok(f)
    }

    pub fn matches(&self, kind: &str) -> bool {
        self.all
            || self.exact.iter().any(|k| k == kind)
            || self.prefixes.iter().any(|p| kind.starts_with(p.as_str()))
    }
}

/// The CloudEvent of the entry `bytes` (at `index`) of the log named `origin`, with its
/// kind (for filtering) and its system.
pub struct Event {
    pub index: u64,
    pub kind: String,
    pub system: Option<String>,
    pub json: Value,
}

impl Event {
    pub fn of(origin: &str, index: u64, bytes: &[u8]) -> Result<Self, AppError> {
        let mut data = entry::entry_json(bytes).map_err(AppError::internal)?;
        if data["kind"] == "decision.recorded" {
            // Entries written before the inputs' digest was committed hold it in the
            // clear: it is personal, so it stays out of every event.
            if let Some(body) = data["body"].as_object_mut() {
                body.remove("input_sha256");
            }
        }
        data["leaf_hash"] = json!(hex::encode(merkle::leaf_hash(bytes)));
        let kind = data["kind"].as_str().unwrap_or_default().to_owned();
        let system = data["system"].as_str().map(str::to_owned);
        let time = data["time"].as_u64().unwrap_or(0);
        let mut json = json!({
            "specversion": "1.0",
            "id": index.to_string(),
            "source": origin,
            "type": event_type(&kind),
            "time": crate::fields::rfc3339(time),
            "datacontenttype": "application/json",
            "data": data,
        });
        if let Some(s) = &system {
            json["subject"] = json!(s);
        }
        Ok(Self {
            index,
            kind,
            system,
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(p: &[&str]) -> TypeFilter {
        TypeFilter::parse(
            "types",
            &p.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap()
    }

    #[test]
    fn wildcards_match_a_kinds_prefix_only() {
        let f = filter(&["finding.*", "decision.recorded"]);
        assert!(f.matches("finding.opened") && f.matches("finding.resolved"));
        assert!(f.matches("decision.recorded"));
        assert!(!f.matches("findings.x") && !f.matches("decision.recordedx"));
        assert!(filter(&[]).matches("anything") && filter(&["*"]).matches("x.y"));
    }

    #[test]
    fn a_pattern_that_is_no_kind_is_refused_by_position() {
        for bad in ["", "Finding.*", "a..b", "*.x", "a b", "finding.**"] {
            let e = TypeFilter::parse("types", &["ok.kind".into(), bad.into()]).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("types[1]"), "{bad:?}");
        }
    }
}
