//! Webhook subscriptions: create (the secret shown once), list, show, delete, and the
//! recent delivery attempts. Admins see every subscription; officers and pipelines see
//! and delete their own.

use actix_web::{delete, get, post, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{Caller, Subscribers};
use super::body::Json;
use super::{ReceiptView, State};
use crate::error::{AppError, ErrorCode, Problem};
use crate::events::delivery::{self, Attempt};
use crate::events::subscriptions::{self, SubscriptionRequest, SubscriptionRow};
use crate::register::rfc3339;
use crate::tokens::Role;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(show)
        .service(remove)
        .service(deliveries);
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    /// The `subscription.created` entry's index.
    pub id: u64,
    pub url: String,
    pub types: Vec<String>,
    pub systems: Vec<String>,
    /// The first entry it delivers.
    pub start: u64,
    pub created_by: String,
    pub created_at: String,
    /// The next entry it delivers (as last stored; `start` before the first delivery).
    pub cursor: u64,
    /// Since when deliveries have failed without a success, if they have.
    pub failing_since: Option<String>,
    /// Why the address rule now refuses its target (a subscription made before the
    /// rule, or before the allow-list changed): it is kept, and not delivered to.
    pub refused: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionCreated {
    pub subscription: SubscriptionView,
    /// `whsec_` + base64 of the signing key (Standard Webhooks): shown this once.
    pub secret: String,
    pub receipt: ReceiptView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deliveries {
    /// The newest first (at most 100).
    pub deliveries: Vec<Attempt>,
}

fn view(state: &State, r: SubscriptionRow) -> Result<SubscriptionView, AppError> {
    let store = &**state.ledger.store();
    Ok(SubscriptionView {
        cursor: delivery::cursor(store, r.id)?.unwrap_or(r.spec.start),
        failing_since: delivery::failing_since(store, r.id)?.map(rfc3339),
        refused: subscriptions::refused(&r, &state.webhook_targets),
        id: r.id,
        url: r.spec.url,
        types: r.spec.types,
        systems: r.spec.systems,
        start: r.spec.start,
        created_by: r.created_by,
        created_at: rfc3339(r.created_time),
    })
}

/// The subscription `id`, if the caller may see it (admins: all; others: their own).
fn visible<A: super::auth::Access>(
    state: &State,
    caller: &Caller<A>,
    id: u64,
) -> Result<SubscriptionRow, AppError> {
    let r = subscriptions::get(&**state.ledger.store(), id)?;
    if caller.role != Role::Admin && r.created_by != caller.name {
        return Err(AppError::new(
            ErrorCode::SubscriptionNotFound,
            format!("no subscription {id}"),
        ));
    }
    Ok(r)
}

/// Subscribe a URL to events (admin, officer, pipeline): CloudEvents 1.0 JSON bodies
/// POSTed at least once, in log order, signed as Standard Webhooks do. The subscription
/// is an entry (without its secret); the secret is answered here only.
#[utoipa::path(tag = "events", security(("bearer" = [])), request_body = SubscriptionRequest, responses(
    (status = 201, body = SubscriptionCreated),
    (status = 400, body = Problem, content_type = "application/problem+json"),
))]
#[post("/v1/subscriptions")]
async fn create(
    state: State,
    caller: Caller<Subscribers>,
    body: Json<SubscriptionRequest>,
) -> Result<HttpResponse, AppError> {
    let (spec, start) = subscriptions::validate(body.0, &state.webhook_targets)?;
    let secret = subscriptions::fresh_secret();
    let receipt = state
        .ledger
        .append(
            &caller.name,
            subscriptions::create_command(spec, start, secret.clone()),
        )
        .await?;
    let row = subscriptions::get(&**state.ledger.store(), receipt.index)?;
    Ok(HttpResponse::Created().json(SubscriptionCreated {
        subscription: view(&state, row)?,
        secret,
        receipt: receipt.into(),
    }))
}

/// The subscriptions the caller may see (admins: all; others: their own).
#[utoipa::path(tag = "events", security(("bearer" = [])), responses((status = 200, body = SubscriptionList)))]
#[get("/v1/subscriptions")]
async fn list(state: State, caller: Caller<Subscribers>) -> Result<HttpResponse, AppError> {
    let subscriptions = subscriptions::list(&**state.ledger.store())?
        .into_iter()
        .filter(|r| caller.role == Role::Admin || r.created_by == caller.name)
        .map(|r| view(&state, r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(SubscriptionList { subscriptions }))
}

/// One subscription.
#[utoipa::path(tag = "events", security(("bearer" = [])), params(("subscription_id" = u64, Path, minimum = 0)), responses(
    (status = 200, body = SubscriptionView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/subscriptions/{subscription_id}")]
async fn show(
    state: State,
    caller: Caller<Subscribers>,
    id: actix_web::web::Path<u64>,
) -> Result<HttpResponse, AppError> {
    let r = visible(&state, &caller, *id)?;
    Ok(HttpResponse::Ok().json(view(&state, r)?))
}

/// End a subscription: its secret is shredded and delivery stops (an entry records it).
#[utoipa::path(tag = "events", security(("bearer" = [])), params(("subscription_id" = u64, Path, minimum = 0)), responses(
    (status = 200, body = ReceiptView),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[delete("/v1/subscriptions/{subscription_id}")]
async fn remove(
    state: State,
    caller: Caller<Subscribers>,
    id: actix_web::web::Path<u64>,
) -> Result<HttpResponse, AppError> {
    visible(&state, &caller, *id)?;
    let receipt = state
        .ledger
        .append(&caller.name, subscriptions::delete_command(*id))
        .await?;
    Ok(HttpResponse::Ok().json(ReceiptView::from(receipt)))
}

/// The recent delivery attempts of a subscription, newest first: event, attempt number,
/// time, status, latency, error.
#[utoipa::path(tag = "events", security(("bearer" = [])), params(("subscription_id" = u64, Path, minimum = 0)), responses(
    (status = 200, body = Deliveries),
    (status = 404, body = Problem, content_type = "application/problem+json"),
))]
#[get("/v1/subscriptions/{subscription_id}/deliveries")]
async fn deliveries(
    state: State,
    caller: Caller<Subscribers>,
    id: actix_web::web::Path<u64>,
) -> Result<HttpResponse, AppError> {
    visible(&state, &caller, *id)?;
    let deliveries = delivery::attempts(&**state.ledger.store(), *id)?;
    Ok(HttpResponse::Ok().json(Deliveries { deliveries }))
}
