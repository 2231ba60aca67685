//! Webhook subscriptions: who wants which events where. A subscription is an entry
//! (`subscription.created`, its id the entry's index; `subscription.deleted`) without
//! its secret; the secret (`whsec_` + base64 of 32 random bytes, shown once) is kept in
//! the vault beside the log (never in an entry, not rebuilt by `reindex`), where the
//! delivery task reads it to sign.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::TypeFilter;
use crate::error::{AppError, ErrorCode};
use crate::log::sequencer::Command;
use crate::log::{Applied, Draft, Drafts, Prepared, Projects, Staging};
use crate::storage::Store;

pub const CREATED: &str = "subscription.created";
pub const DELETED: &str = "subscription.deleted";

/// Most systems one subscription names.
pub const MAX_SYSTEMS: usize = 256;

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Start {
    /// `"now"`: the entries after the subscription's own.
    Now(StartNow),
    /// The entries from this index on.
    Index(u64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StartNow {
    Now,
}

/// A subscription as a caller asks for it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Where events are POSTed: an `http` or `https` URL, without user or password (the
    /// URL is in the log, readable by every log reader).
    pub url: String,
    /// Entry kinds, `prefix.*` wildcards or `*`; empty: every kind.
    #[serde(default)]
    pub types: Vec<String>,
    /// System ids; empty: every system. Entries without a system go to every
    /// subscription whose types match.
    #[serde(default)]
    pub systems: Vec<String>,
    /// `"now"` (the default) or the index of the first entry to deliver.
    #[serde(default = "now")]
    pub start: Start,
}

fn now() -> Start {
    Start::Now(StartNow::Now)
}

/// The body of `subscription.created` (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedBody {
    pub url: String,
    pub types: Vec<String>,
    pub systems: Vec<String>,
    /// The first entry to deliver.
    pub start: u64,
}

/// The body of `subscription.deleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeletedBody {
    pub subscription: u64,
}

/// A subscription as the service keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionRow {
    pub id: u64,
    pub created_by: String,
    pub created_time: u64,
    pub spec: CreatedBody,
}

impl SubscriptionRow {
    pub fn filter(&self) -> TypeFilter {
        // Read as it was accepted; a row that no longer parses matches nothing rather
        // than every event.
        TypeFilter::parse("types", &self.spec.types).unwrap_or_default()
    }

    /// Whether an entry of `kind` about `system` is for this subscription.
    pub fn wants(&self, filter: &TypeFilter, kind: &str, system: Option<&str>) -> bool {
        filter.matches(kind)
            && match system {
                None => true,
                Some(s) => self.spec.systems.is_empty() || self.spec.systems.iter().any(|x| x == s),
            }
    }
}

const ROW: &[u8] = b"sub\0";
const SECRET: &[u8] = b"w/";

fn row_key(id: u64) -> Vec<u8> {
    [ROW, &id.to_be_bytes()[..]].concat()
}

/// The vault key of a subscription's secret.
fn secret_key(id: u64) -> Vec<u8> {
    [SECRET, &id.to_be_bytes()[..]].concat()
}

/// Check a request against the operator's target rule. The body to append.
pub fn validate(
    req: SubscriptionRequest,
    targets: &super::targets::Targets,
) -> Result<(CreatedBody, Option<u64>), AppError> {
    if req.url.len() > 2048 {
        return Err(AppError::invalid("url", "at most 2048 characters"));
    }
    let url = reqwest::Url::parse(&req.url)
        .map_err(|e| AppError::invalid("url", format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(AppError::invalid("url", "must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AppError::invalid(
            "url",
            "must not hold a user or password (the URL is in the log; the signature authenticates the events)",
        ));
    }
    targets
        .check(&url)
        .map_err(|why| AppError::invalid("url", why))?;
    TypeFilter::parse_new("types", &req.types)?;
    if req.systems.len() > MAX_SYSTEMS {
        return Err(AppError::invalid(
            "systems",
            format!("at most {MAX_SYSTEMS}"),
        ));
    }
    for (i, s) in req.systems.iter().enumerate() {
        crate::fields::validate_slug(&format!("systems[{i}]"), s)?;
    }
    let start = match req.start {
        Start::Index(i) => Some(i),
        Start::Now(_) => None,
    };
    Ok((
        CreatedBody {
            url: url.to_string(),
            types: req.types,
            systems: req.systems,
            start: 0,
        },
        start,
    ))
}

/// Why the target rule now refuses a stored subscription's URL, if it does.
pub fn refused(row: &SubscriptionRow, targets: &super::targets::Targets) -> Option<String> {
    match reqwest::Url::parse(&row.spec.url) {
        Ok(url) => targets.check(&url).err(),
        Err(e) => Some(format!("not a URL: {e}")),
    }
}

/// Name, in the start-up log, each stored subscription the target rule now refuses.
pub fn warn_refused(store: &dyn Store, targets: &super::targets::Targets) -> Result<(), AppError> {
    for row in list(store)? {
        if let Some(why) = refused(&row, targets) {
            tracing::warn!(subscription = row.id, reason = %why, "a stored webhook subscription's target is refused: it stays listed, marked refused, and is not delivered to");
        }
    }
    Ok(())
}

/// A fresh secret: `whsec_` + base64 of 32 random bytes (Standard Webhooks).
pub fn fresh_secret() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut b);
    format!("whsec_{}", B64.encode(b))
}

/// The key bytes of a secret.
pub fn secret_bytes(secret: &str) -> Option<Vec<u8>> {
    B64.decode(secret.strip_prefix("whsec_")?).ok()
}

fn drafts(d: Draft) -> Result<Prepared, AppError> {
    Ok(Prepared::Append(Drafts::one(d)))
}

/// The subscriptions' projector, by the entry kinds it derives rows from.
pub const PROJECTS: &[Projects<AppError>] = &[Projects {
    kinds: &[CREATED, DELETED],
    projector: project,
}];

pub fn create_command(
    mut body: CreatedBody,
    start: Option<u64>,
    secret: String,
) -> Command<AppError> {
    Box::new(move |s| {
        let id = s.index();
        body.start = start.unwrap_or(id + 1);
        s.vault_put(secret_key(id), secret.into_bytes());
        drafts(Draft {
            kind: CREATED.into(),
            system: None,
            body: crate::register::to_value(&body)?,
        })
    })
}

pub fn delete_command(id: u64) -> Command<AppError> {
    Box::new(move |s| {
        if s.get(&row_key(id))?.is_none() {
            return Err(AppError::new(
                ErrorCode::SubscriptionNotFound,
                format!("no subscription {id}"),
            ));
        }
        s.vault_delete(secret_key(id));
        drafts(Draft {
            kind: DELETED.into(),
            system: None,
            body: crate::register::to_value(&DeletedBody { subscription: id })?,
        })
    })
}

pub(crate) fn project(e: &Applied<'_>, s: &mut Staging<'_>) -> Result<(), AppError> {
    let Applied {
        kind,
        body,
        index,
        time,
        actor,
        ..
    } = *e;
    if kind == CREATED {
        let spec: CreatedBody = crate::register::from_value(body)?;
        let row = SubscriptionRow {
            id: index,
            created_by: actor.to_owned(),
            created_time: time,
            spec,
        };
        s.put(
            row_key(index),
            serde_cbor::to_vec(&row).map_err(AppError::internal)?,
        );
    } else {
        let d: DeletedBody = crate::register::from_value(body)?;
        s.delete(row_key(d.subscription));
    }
    Ok(())
}

/// Every live subscription, oldest first.
pub fn list(store: &dyn Store) -> Result<Vec<SubscriptionRow>, AppError> {
    store
        .scan(ROW, None, false, usize::MAX)?
        .into_iter()
        .map(|(_, v)| serde_cbor::from_slice(&v).map_err(AppError::internal))
        .collect()
}

pub fn get(store: &dyn Store, id: u64) -> Result<SubscriptionRow, AppError> {
    let raw = store.get(&row_key(id))?.ok_or_else(|| {
        AppError::new(
            ErrorCode::SubscriptionNotFound,
            format!("no subscription {id}"),
        )
    })?;
    serde_cbor::from_slice(&raw).map_err(AppError::internal)
}

/// The secret of subscription `id`, if it is live.
pub fn secret(store: &dyn Store, id: u64) -> Result<Option<String>, AppError> {
    Ok(store
        .vault_get(&secret_key(id))?
        .map(|b| String::from_utf8_lossy(&b).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(types: &[&str]) -> SubscriptionRow {
        SubscriptionRow {
            id: 1,
            created_by: "admin".into(),
            created_time: 0,
            spec: CreatedBody {
                url: "https://ci.example.com/h".into(),
                types: types.iter().map(|t| t.to_string()).collect(),
                systems: Vec::new(),
                start: 0,
            },
        }
    }

    #[test]
    fn a_stored_subscription_keeps_its_patterns_and_is_never_widened() {
        // Accepted before unknown kinds were refused: still read, still exact.
        let legacy = stored(&["legacy.kind"]);
        assert!(legacy.filter().matches("legacy.kind"));
        assert!(!legacy.filter().matches("decision.recorded"));
        // A row that no longer parses at all matches nothing, not every event.
        let broken = stored(&["Not A Kind"]);
        assert!(!broken.filter().matches("decision.recorded"));
    }
}
