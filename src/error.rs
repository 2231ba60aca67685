//! One table of errors. Every failure a caller can see is an [`AppError`]; its
//! [`ErrorCode`] decides the HTTP status, the stable RFC 9457 problem `type` and the
//! title, in one place (`ErrorCode::spec`). Handlers and the domain never pick a status.

use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes. The problem `type` is `urn:veritrail:problem:<code>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    // Requests the service cannot take as they are.
    InvalidBody,
    InvalidField,
    InvalidQuery,
    InvalidPath,
    UnsupportedMediaType,
    PayloadTooLarge,
    EntryTooLarge,
    NotFound,
    MethodNotAllowed,
    // Who asks.
    Unauthenticated,
    Forbidden,
    // The state of things.
    AlreadyExists,
    Conflict,
    ProhibitedSystem,
    SystemNotFound,
    SystemRetired,
    SystemNotRegistered,
    ModelVersionNotRegistered,
    ModelVersionNotFound,
    ModelVersionNotDeployed,
    ModelVersionRejected,
    ModelVersionNotApproved,
    ModelVersionRetired,
    SelfApproval,
    ReviewNotAllowed,
    RequiredTestsMissing,
    RequiredTestsFailing,
    EvidenceAfterReview,
    LastAdmin,
    DecisionConflict,
    DecisionNotFound,
    IncidentNotFound,
    OutcomeConflict,
    ContestNotFound,
    BlindCaseNotFound,
    SubscriptionNotFound,
    LegalHold,
    SubjectNotFound,
    // The service itself.
    Unavailable,
    StorageFull,
    StorageFailed,
    Internal,
}

/// The row of the table: status, code and title of one [`ErrorCode`].
pub struct ErrorSpec {
    pub status: u16,
    pub code: &'static str,
    pub title: &'static str,
}

impl ErrorCode {
    pub const fn spec(self) -> ErrorSpec {
        use ErrorCode::*;
        let (status, code, title) = match self {
            InvalidBody => (400, "invalid-body", "The request body is not valid"),
            InvalidField => (400, "invalid-field", "A field has an invalid value"),
            InvalidQuery => (400, "invalid-query", "A query parameter is not valid"),
            InvalidPath => (400, "invalid-path", "A path parameter is not valid"),
            UnsupportedMediaType => (
                415,
                "unsupported-media-type",
                "The request body must be application/json",
            ),
            PayloadTooLarge => (413, "payload-too-large", "The request body is too large"),
            EntryTooLarge => (
                400,
                "entry-too-large",
                "What this would record exceeds the 64 KiB an entry may hold",
            ),
            NotFound => (404, "not-found", "Not found"),
            MethodNotAllowed => (405, "method-not-allowed", "Method not allowed"),
            Unauthenticated => (401, "unauthenticated", "A valid bearer token is required"),
            Forbidden => (403, "forbidden", "This token's role may not do this"),
            AlreadyExists => (409, "already-exists", "It already exists"),
            Conflict => (
                409,
                "conflict",
                "The request conflicts with what is recorded",
            ),
            ProhibitedSystem => (
                422,
                "prohibited-system",
                "EU AI Act Art. 5: a prohibited AI practice cannot be registered for use",
            ),
            SystemNotFound => (404, "system-not-found", "No such AI system in the register"),
            SystemRetired => (409, "system-retired", "The AI system is retired"),
            SystemNotRegistered => (
                409,
                "system-not-registered",
                "No such AI system in the register: nothing is recorded against it",
            ),
            ModelVersionNotRegistered => (
                409,
                "model-version-not-registered",
                "No such model version: nothing is recorded against it",
            ),
            ModelVersionNotFound => (404, "model-version-not-found", "No such model version"),
            ModelVersionNotDeployed => (
                409,
                "model-version-not-deployed",
                "The model version is not in service",
            ),
            ModelVersionRejected => (
                409,
                "model-version-rejected",
                "The model version was rejected by its compliance review",
            ),
            ModelVersionNotApproved => (
                409,
                "model-version-not-approved",
                "The model version's latest compliance review does not approve it",
            ),
            ModelVersionRetired => (409, "model-version-retired", "The model version is retired"),
            SelfApproval => (
                409,
                "self-approval",
                "Four eyes: the reviewer registered this version",
            ),
            ReviewNotAllowed => (
                409,
                "review-not-allowed",
                "The model version cannot be reviewed in its current state",
            ),
            RequiredTestsMissing => (
                409,
                "required-tests-missing",
                "Tests the system's policy requires are not recorded for this version",
            ),
            RequiredTestsFailing => (
                409,
                "required-tests-failing",
                "Tests the system's policy requires did not pass for this version",
            ),
            EvidenceAfterReview => (
                409,
                "evidence-after-review",
                "A test was recorded for this version after its approving review: the evidence that stands needs a new review",
            ),
            LastAdmin => (
                409,
                "last-admin",
                "This is the last admin token: revoking it would end token administration",
            ),
            DecisionConflict => (
                409,
                "decision-conflict",
                "A different decision was recorded under this decision_id",
            ),
            DecisionNotFound => (404, "decision-not-found", "No such decision"),
            IncidentNotFound => (404, "incident-not-found", "No such incident"),
            OutcomeConflict => (
                409,
                "outcome-conflict",
                "This decision's outcome is recorded otherwise: send correction: true to supersede it",
            ),
            ContestNotFound => (404, "contest-not-found", "No such contest"),
            BlindCaseNotFound => (404, "blind-case-not-found", "No open blind-review case for this decision"),
            SubscriptionNotFound => (404, "subscription-not-found", "No such subscription"),
            LegalHold => (409, "legal-hold", "A system holding this data is under legal hold (GDPR Art. 17(3)(b)/(e)); nothing was erased"),
            SubjectNotFound => (404, "subject-not-found", "No personal data of this subject is held"),
            Unavailable => (503, "unavailable", "The ledger is not accepting writes"),
            StorageFull => (507, "storage-full", "The ledger's storage is full"),
            StorageFailed => (503, "storage-failed", "The ledger's storage failed"),
            Internal => (500, "internal", "Internal error"),
        };
        ErrorSpec {
            status,
            code,
            title,
        }
    }

    pub fn type_uri(self) -> String {
        format!("urn:veritrail:problem:{}", self.spec().code)
    }
}

/// An error on its way to the caller.
#[derive(Debug, Clone)]
pub struct AppError {
    pub code: ErrorCode,
    pub detail: String,
    /// The offending field, as a JSON path (`decisions[3].subject_ref`), where there is one.
    pub field: Option<String>,
}

impl AppError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn field(code: ErrorCode, field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            field: Some(field.into()),
        }
    }

    /// The same error under another code (a field check reused for a query or a path).
    pub fn recoded(self, code: ErrorCode) -> Self {
        Self { code, ..self }
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::field(ErrorCode::InvalidField, field, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, detail.to_string())
    }

    /// Prefix the field path (for an item of a batch).
    pub fn within(mut self, prefix: &str) -> Self {
        self.field = Some(match self.field {
            Some(f) => format!("{prefix}.{f}"),
            None => prefix.to_owned(),
        });
        self
    }

    pub fn problem(&self) -> Problem {
        let spec = self.code.spec();
        Problem {
            type_: self.code.type_uri(),
            title: spec.title.to_owned(),
            status: spec.status,
            detail: self.detail.clone(),
            field: self.field.clone(),
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{}: {} ({field})", self.code.spec().code, self.detail),
            None => write!(f, "{}: {}", self.code.spec().code, self.detail),
        }
    }
}

impl std::error::Error for AppError {}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, ToSchema, PartialEq)]
pub struct Problem {
    /// Stable identifier of the kind of problem, `urn:veritrail:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    /// What went wrong in this case, for a human.
    pub detail: String,
    /// The offending field as a JSON path, where there is one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
}

/// What a lower layer's error means to a caller, as a code of the one table. The log and
/// the storage know nothing of HTTP; the log says which code each of its errors (and the
/// storage's) is, from its side (`log/problems.rs`), and [`AppError`]'s conversions
/// there use that, so no layer picks a status and this file imports nothing of the crate.
pub trait HasErrorCode: std::fmt::Display {
    fn error_code(&self) -> ErrorCode;
}
