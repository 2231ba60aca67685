//! Audit bundles: everything an auditor needs to check one decision offline, with
//! nothing but the log's public key — the decision entry, its model version's
//! registration, the reviews of that version up to the decision, the tests those
//! reviews relied on, the deployment, the register revision in force, each as raw
//! bytes with an inclusion proof against one signed checkpoint, the openings of its
//! personal fields, and a readable summary that [`verify`] checks against the entries.

pub mod monitor;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::AppError;
use crate::log::entry::{self, cbor_to_json, RawEntry};
use crate::log::merkle::{self, Hash};
use crate::log::note::{Checkpoint, NoteVerifier};
use crate::log::{Ledger, Published};
use crate::register::projections;
use crate::register::rfc3339;
use crate::storage::Store;

pub const FORMAT: &str = "veritrail-audit-bundle/1";

/// One entry of a bundle, with its proof.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct BundleEntry {
    /// `decision`, `model_version`, `review`, `test`, `deployment`, `retirement`,
    /// `register_revision`, `next_register_revision`, and the decision's ground truth:
    /// `outcome`, `contest`, `contest_resolution`.
    pub role: String,
    pub index: u64,
    pub leaf_hash: String,
    /// The entry's bytes as stored and hashed, standard base64.
    pub raw: String,
    /// RFC 9162 inclusion proof against the bundle's checkpoint, lowercase hex.
    pub inclusion_proof: Vec<String>,
}

/// A committed field opened: its value and salt.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct OpeningView {
    pub value: Value,
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Default)]
pub struct Openings {
    /// Absent when erased.
    pub subject_ref: Option<OpeningView>,
    /// Absent when erased or never given.
    pub inputs: Option<OpeningView>,
    /// The inputs' digest. Absent when erased, or when the decision was written before
    /// the digest was committed (its entry holds it in the clear).
    #[serde(default)]
    pub input_sha256: Option<OpeningView>,
    /// The free texts written about the decision's subject (an outcome's `note`, a
    /// contest's `grounds`), each with the entry whose commitment it opens; erased ones
    /// are absent.
    #[serde(default)]
    pub texts: Vec<TextOpening>,
}

/// The opening of the text committed in entry `entry`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TextOpening {
    pub entry: u64,
    pub value: Value,
    pub salt: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ReviewSummary {
    pub index: u64,
    pub reviewer: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct TestSummary {
    pub index: u64,
    pub evaluator: String,
    pub kind: String,
    pub passed: bool,
}

/// What the bundle claims, in words an auditor reads; `verify` checks each claim.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Summary {
    pub system_id: String,
    pub decision_id: String,
    pub decision_index: u64,
    pub occurred_at: String,
    pub recorded_at: String,
    pub model_version: String,
    pub output: Value,
    pub version_registered_index: u64,
    pub version_registered_by: String,
    pub substantial_modification: bool,
    pub reviews: Vec<ReviewSummary>,
    pub approved_by: String,
    pub approval_index: u64,
    pub tests: Vec<TestSummary>,
    pub deployment_index: u64,
    pub retirement_index: Option<u64>,
    pub register_revision: u64,
    pub register_revision_index: u64,
    pub risk_class: String,
    pub compliance_owner: String,
    pub human_review: Option<Value>,
    /// `opened` or `erased`.
    pub subject_ref: String,
    /// `opened`, `erased` or `absent`.
    pub inputs: String,
    /// `opened`, `erased`, or `uncommitted` (written before the digest was committed:
    /// the entry holds it in the clear).
    #[serde(default)]
    pub input_sha256: String,
}

/// What a bundle's ground-truth entries are: the decision's outcomes, its contests,
/// and their resolutions.
const GROUND_TRUTH: [(&str, &str, &str); 3] = [
    (
        "outcome",
        crate::register::projections::outcomes::OUTCOME,
        "note",
    ),
    (
        "contest",
        crate::register::projections::outcomes::CONTESTED,
        "grounds",
    ),
    (
        "contest_resolution",
        crate::register::projections::outcomes::RESOLVED,
        "",
    ),
];

/// The audit bundle of one decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct Bundle {
    pub format: String,
    pub verifier_key: String,
    /// The signed checkpoint every proof is against.
    pub checkpoint: String,
    pub tree_size: u64,
    pub entries: Vec<BundleEntry>,
    pub openings: Openings,
    pub summary: Summary,
    /// The decision entry's proof in the C2SP tlog-proof form (`c2sp.org/tlog-proof@v1`,
    /// its index, the inclusion proof in base64, a blank line, the checkpoint), for
    /// third-party tools that check one entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tlog_proof: Option<String>,
}

/// The C2SP tlog-proof text of entry `index` with `proof` (hex) against `checkpoint`.
pub fn tlog_proof(index: u64, proof: &[String], checkpoint: &str) -> String {
    let mut out = format!("c2sp.org/tlog-proof@v1\nindex {index}\n");
    for h in proof {
        out.push_str(&B64.encode(hex::decode(h).unwrap_or_default()));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(checkpoint);
    out
}

fn json_of(bytes: &[u8]) -> Result<(RawEntry, Value), AppError> {
    let e: RawEntry = entry::decode(bytes).map_err(AppError::internal)?;
    let body = cbor_to_json(&e.body);
    Ok((e, body))
}

/// The checkpoint a bundle is proven against.
struct Checkpointed {
    size: u64,
    note: String,
}

/// Build the bundle of a decision from a running ledger, against the newest checkpoint
/// that met the witness policy's quorum and covers its entries (with no such checkpoint,
/// or no policy, the newest signed one).
pub fn build<E>(
    ledger: &Ledger<E>,
    system_id: &str,
    decision_id: &str,
    policy: Option<&crate::witness::policy::Policy>,
) -> Result<Bundle, AppError> {
    let store = &**ledger.store();
    let sys = projections::systems::read(store, system_id)?;
    let d_index = projections::decisions::find(store, system_id, decision_id)?;
    let latest = ledger.latest();
    if d_index >= latest.size {
        return Err(AppError::new(
            crate::error::ErrorCode::DecisionNotFound,
            format!("decision {decision_id:?} is not yet recorded"),
        ));
    }
    let decided = read_decision(ledger, system_id, decision_id, d_index)?;
    let mut prov = provenance(ledger, &decided)?;
    let last = prov.roles.iter().map(|(_, i)| *i).max().unwrap_or(d_index);
    let latest = checkpoint_for(store, policy, last, latest)?;
    let texts = ground_truth_roles(store, system_id, d_index, latest.size, &mut prov.roles)?;
    let (entries, facts) = prove(ledger, &prov.roles, latest.size)?;
    let approval = facts.approval()?;
    let openings = openings(store, d_index, texts)?;
    let summary = summary(&sys, decided, &prov, facts, approval, &openings);
    let tlog = entries
        .iter()
        .find(|e: &&BundleEntry| e.role == "decision")
        .map(|e| tlog_proof(e.index, &e.inclusion_proof, &latest.note));
    Ok(Bundle {
        format: FORMAT.into(),
        verifier_key: ledger.verifier().to_string(),
        checkpoint: latest.note,
        tree_size: latest.size,
        entries,
        openings,
        summary,
        tlog_proof: tlog,
    })
}

/// The decision a bundle is of: its ids, its entry, and its model version as registered.
struct Decided<'a> {
    system_id: &'a str,
    decision_id: &'a str,
    index: u64,
    entry: RawEntry,
    body: Value,
    version: String,
    rec: projections::models::VersionRecord,
}

/// The entries a bundle proves, by role, and where the summary's deployment and
/// register revision are.
struct Provenance {
    roles: Vec<(&'static str, u64)>,
    deployed: u64,
    /// The index of the register revision in force at the decision.
    revision_index: u64,
}

/// What the summary reads from the bundle's entries.
#[derive(Default)]
struct Facts {
    reviews: Vec<ReviewSummary>,
    tests: Vec<TestSummary>,
    version_registered_by: String,
    substantial: bool,
    revision_number: u64,
}

/// Entry `i` as stored; it must exist.
fn stored<E>(ledger: &Ledger<E>, i: u64) -> Result<Vec<u8>, AppError> {
    ledger
        .entry(i)?
        .ok_or_else(|| AppError::internal(format!("entry {i} missing")))
}

/// Read the decision entry at `d_index` and the record of its model version.
fn read_decision<'a, E>(
    ledger: &Ledger<E>,
    system_id: &'a str,
    decision_id: &'a str,
    d_index: u64,
) -> Result<Decided<'a>, AppError> {
    let d_bytes = stored(ledger, d_index)?;
    let (entry, body) = json_of(&d_bytes)?;
    let version = body["model_version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let rec = projections::models::read(&**ledger.store(), system_id, &version)?;
    Ok(Decided {
        system_id,
        decision_id,
        index: d_index,
        entry,
        body,
        version,
        rec,
    })
}

/// Gather the entries the decision rests on: itself, its version's registration, the
/// reviews before it and the tests they cite, the deployment (and any retirement), and
/// the register revision in force (and the next one).
fn provenance<E>(ledger: &Ledger<E>, d: &Decided<'_>) -> Result<Provenance, AppError> {
    let (d_index, rec) = (d.index, &d.rec);
    let mut roles: Vec<(&'static str, u64)> = vec![
        ("decision", d_index),
        ("model_version", rec.registered_index),
    ];
    let reviews: Vec<&projections::models::ReviewRef> =
        rec.reviews.iter().filter(|r| r.id < d_index).collect();
    let mut tests = Vec::new();
    for r in &reviews {
        roles.push(("review", r.id));
        let (_, body) = json_of(&stored(ledger, r.id)?)?;
        for t in body["evidence"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
        {
            if !tests.contains(&t) {
                tests.push(t);
            }
        }
    }
    for t in &tests {
        roles.push(("test", *t));
    }
    let deployed = rec
        .deployed_index
        .ok_or_else(|| AppError::internal("a decision's version has no deployment"))?;
    roles.push(("deployment", deployed));
    if let Some(r) = rec.retired_index {
        roles.push(("retirement", r));
    }
    let revs = projections::systems::revisions(&**ledger.store(), d.system_id)?;
    let pos = revs
        .iter()
        .rposition(|r| r.index < d_index)
        .ok_or_else(|| AppError::internal("no register revision before the decision"))?;
    roles.push(("register_revision", revs[pos].index));
    if let Some(next) = revs.get(pos + 1) {
        roles.push(("next_register_revision", next.index));
    }
    Ok(Provenance {
        roles,
        deployed,
        revision_index: revs[pos].index,
    })
}

/// Choose the checkpoint to prove against: with a policy that asks for witnesses, the
/// newest that met the quorum and covers entry `last`, cosigned; else `latest`.
fn checkpoint_for(
    store: &dyn Store,
    policy: Option<&crate::witness::policy::Policy>,
    last: u64,
    latest: Published,
) -> Result<Checkpointed, AppError> {
    Ok(match policy.filter(|p| p.requires_witnesses()) {
        Some(_) => match crate::witness::submit::quorum_size(store)? {
            Some((size, _)) if size > last => {
                crate::witness::submit::cosigned_note(store, size)?.map(|note| (size, note))
            }
            _ => None,
        },
        None => None,
    }
    .map_or(
        Checkpointed {
            size: latest.size,
            note: latest.note,
        },
        |(size, note)| Checkpointed { size, note },
    ))
}

/// Add the decision's outcomes, contests and resolutions, as far as the checkpoint of
/// `size` reaches, to `roles`; returns the entries whose texts the bundle opens.
fn ground_truth_roles(
    store: &dyn Store,
    system_id: &str,
    d_index: u64,
    size: u64,
    roles: &mut Vec<(&'static str, u64)>,
) -> Result<Vec<u64>, AppError> {
    let mut texts = Vec::new();
    if let Some(truth) = crate::register::projections::outcomes::truth(store, system_id, d_index)? {
        for &o in truth.outcomes.iter().filter(|i| **i < size) {
            roles.push(("outcome", o));
            texts.push(o);
        }
        for &c in truth.contests.iter().filter(|i| **i < size) {
            roles.push(("contest", c));
            texts.push(c);
            let row = crate::register::projections::outcomes::contest(store, system_id, c)?;
            if let Some((r, ..)) = row.resolved.filter(|r| r.0 < size) {
                roles.push(("contest_resolution", r));
            }
        }
    }
    Ok(texts)
}

/// Prove each role's entry against the checkpoint of `size`, reading what the summary
/// needs from it on the way.
fn prove<E>(
    ledger: &Ledger<E>,
    roles: &[(&'static str, u64)],
    size: u64,
) -> Result<(Vec<BundleEntry>, Facts), AppError> {
    let mut entries = Vec::new();
    let mut facts = Facts::default();
    for &(role, index) in roles {
        let bytes = stored(ledger, index)?;
        let (_, proof_hashes) = ledger
            .inclusion(index, Some(size))
            .map(|(_, l, p)| (l, p))?;
        let (e, body) = json_of(&bytes)?;
        facts.take_from(role, index, &e, &body);
        entries.push(BundleEntry {
            role: role.to_owned(),
            index,
            leaf_hash: hex::encode(merkle::leaf_hash(&bytes)),
            raw: B64.encode(&bytes),
            inclusion_proof: proof_hashes.iter().map(hex::encode).collect(),
        });
    }
    Ok((entries, facts))
}

impl Facts {
    /// Take what the summary says of the entry of `role` at `index`.
    fn take_from(&mut self, role: &str, index: u64, e: &RawEntry, body: &Value) {
        match role {
            "model_version" => {
                self.version_registered_by = e.actor.clone();
                self.substantial = body["substantial_modification"].as_bool().unwrap_or(false);
            }
            "review" => self.reviews.push(ReviewSummary {
                index,
                reviewer: e.actor.clone(),
                outcome: body["outcome"].as_str().unwrap_or_default().to_owned(),
            }),
            "test" => self.tests.push(TestSummary {
                index,
                evaluator: body["evaluator"].as_str().unwrap_or_default().to_owned(),
                kind: body["kind"].as_str().unwrap_or_default().to_owned(),
                passed: body["passed"].as_bool().unwrap_or(false),
            }),
            "register_revision" => self.revision_number = body["revision"].as_u64().unwrap_or(0),
            _ => {}
        }
    }

    /// The approval the decision rests on: the latest review before it.
    fn approval(&self) -> Result<ReviewSummary, AppError> {
        self.reviews
            .last()
            .cloned()
            .ok_or_else(|| AppError::internal("no review before the decision"))
    }
}

/// Open the decision's personal fields and the texts of the entries `texts` from the
/// vault (erased ones are absent).
fn openings(store: &dyn Store, d_index: u64, texts: Vec<u64>) -> Result<Openings, AppError> {
    let open = projections::decisions::opening(store, d_index)?;
    let view = |o: &projections::vault::Opening| OpeningView {
        value: o.json(),
        salt: hex::encode(&o.salt),
    };
    Ok(Openings {
        subject_ref: open.as_ref().map(|o| view(&o.subject)),
        inputs: open.as_ref().and_then(|o| o.inputs.as_ref()).map(view),
        input_sha256: open
            .as_ref()
            .and_then(|o| o.input_sha256.as_ref())
            .map(view),
        texts: texts
            .into_iter()
            .filter_map(|entry| {
                crate::register::projections::outcomes::text_opening(store, d_index, entry)
                    .transpose()
                    .map(|o| {
                        o.map(|o| TextOpening {
                            entry,
                            value: o.json(),
                            salt: hex::encode(&o.salt),
                        })
                    })
            })
            .collect::<Result<Vec<_>, _>>()?,
    })
}

/// Write the summary's claims from the decision, its provenance, the proven entries
/// and the openings.
fn summary(
    sys: &projections::systems::SystemRecord,
    d: Decided<'_>,
    prov: &Provenance,
    facts: Facts,
    approval: ReviewSummary,
    openings: &Openings,
) -> Summary {
    let d_body = &d.body;
    let digest_state = if d_body["input_sha256_commitment"].is_null() {
        "uncommitted"
    } else if openings.input_sha256.is_some() {
        "opened"
    } else {
        "erased"
    };
    let inputs_state = if d_body["inputs"].is_null() {
        "absent"
    } else if openings.inputs.is_some() {
        "opened"
    } else {
        "erased"
    };
    Summary {
        system_id: d.system_id.to_owned(),
        decision_id: d.decision_id.to_owned(),
        decision_index: d.index,
        occurred_at: rfc3339(d_body["occurred_at"].as_u64().unwrap_or(0)),
        recorded_at: rfc3339(d.entry.time),
        model_version: d.version,
        output: serde_json::from_str(d_body["output"].as_str().unwrap_or("null"))
            .unwrap_or(Value::Null),
        version_registered_index: d.rec.registered_index,
        version_registered_by: facts.version_registered_by,
        substantial_modification: facts.substantial,
        reviews: facts.reviews,
        approved_by: approval.reviewer,
        approval_index: approval.index,
        tests: facts.tests,
        deployment_index: prov.deployed,
        retirement_index: d.rec.retired_index,
        register_revision: facts.revision_number,
        register_revision_index: prov.revision_index,
        risk_class: format!("{:?}", sys.spec.risk_class).to_lowercase(),
        compliance_owner: format!("{} <{}>", sys.spec.owner.name, sys.spec.owner.email),
        human_review: (!d_body["human_review"].is_null()).then(|| d_body["human_review"].clone()),
        subject_ref: if openings.subject_ref.is_some() {
            "opened"
        } else {
            "erased"
        }
        .into(),
        inputs: inputs_state.into(),
        input_sha256: digest_state.into(),
    }
}

/// The outcome of checking a bundle: every check, and whether all passed.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub checks: Vec<(String, Result<(), String>)>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }

    pub fn failures(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
            .collect()
    }

    fn check(&mut self, name: impl Into<String>, r: Result<(), String>) {
        self.checks.push((name.into(), r));
    }
}

fn hash_of(h: &str) -> Result<Hash, String> {
    hex::decode(h)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| format!("{h:?} is not a 32-byte hex hash"))
}

fn ensure(cond: bool, msg: impl Into<String>) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(msg.into())
    }
}

/// Check a bundle offline with nothing but the verifier key. Every failed check is named.
pub fn verify(bundle: &Bundle, key: &NoteVerifier) -> Report {
    let mut rep = Report { checks: Vec::new() };
    let Some(cp) = check_envelope(bundle, key, &mut rep) else {
        return rep;
    };
    let entries = Verified(check_entries(bundle, &cp, &mut rep));
    let Some((_, de, db)) = entries.one("decision") else {
        rep.check("decision", Err("no verified decision entry".into()));
        return rep;
    };
    let s = &bundle.summary;
    check_decision(s, de, db, &mut rep);
    let (d_index, version) = (de.index, &db["model_version"]);
    let reviews = check_version_and_reviews(s, &entries, d_index, version, &mut rep);
    check_tests(&entries, &reviews, version, &mut rep);
    check_in_service(&entries, d_index, version, &mut rep);
    check_register_revision(s, &entries, d_index, &mut rep);
    check_openings(bundle, db, &mut rep);
    check_ground_truth(bundle, &entries, de.index, &mut rep);
    if let Some(t) = &bundle.tlog_proof {
        let want = tlog_proof(
            de.index,
            &bundle
                .entries
                .iter()
                .find(|e| e.role == "decision")
                .map(|e| e.inclusion_proof.clone())
                .unwrap_or_default(),
            &bundle.checkpoint,
        );
        rep.check(
            "tlog-proof",
            (*t == want).then_some(()).ok_or_else(|| {
                "the tlog-proof is not the decision's proof against the bundle's checkpoint"
                    .to_owned()
            }),
        );
    }
    rep
}

/// [`verify`], and the bundle's checkpoint must meet the witness policy's quorum.
pub fn verify_witnessed(
    bundle: &Bundle,
    key: &NoteVerifier,
    policy: &crate::witness::policy::Policy,
) -> Report {
    let mut rep = verify(bundle, key);
    rep.check(
        "witness quorum",
        policy.check(&bundle.checkpoint).map(|_| ()),
    );
    rep
}

/// An entry of the bundle that verified: its place in the bundle, decoded, as JSON.
type Decoded<'a> = (&'a BundleEntry, RawEntry, Value);

/// The bundle's verified entries, by role.
struct Verified<'a>(Vec<Decoded<'a>>);

impl<'a> Verified<'a> {
    fn one(&self, role: &str) -> Option<&Decoded<'a>> {
        self.0.iter().find(|(b, _, _)| b.role == role)
    }

    fn all(&self, role: &str) -> Vec<&Decoded<'a>> {
        self.0.iter().filter(|(b, _, _)| b.role == role).collect()
    }
}

/// The format, the key named, and the signed checkpoint (none: nothing else can be checked).
fn check_envelope(bundle: &Bundle, key: &NoteVerifier, rep: &mut Report) -> Option<Checkpoint> {
    rep.check(
        "format",
        ensure(
            bundle.format == FORMAT,
            format!("unknown format {:?}", bundle.format),
        ),
    );
    rep.check(
        "verifier key",
        ensure(
            bundle.verifier_key == key.to_string(),
            "the bundle names another key than the one given (only the given key is trusted)",
        ),
    );
    let cp = match Checkpoint::open(&bundle.checkpoint, key) {
        Ok(cp) => {
            rep.check("checkpoint signature", Ok(()));
            cp
        }
        Err(e) => {
            rep.check("checkpoint signature", Err(e.to_string()));
            return None;
        }
    };
    rep.check(
        "checkpoint size",
        ensure(
            cp.size == bundle.tree_size,
            "tree_size differs from the signed checkpoint",
        ),
    );
    Some(cp)
}

/// Entries: bytes hash to the leaf, the leaf is in the signed tree, the entry is what it says.
fn check_entries<'a>(bundle: &'a Bundle, cp: &Checkpoint, rep: &mut Report) -> Vec<Decoded<'a>> {
    let s = &bundle.summary;
    let mut decoded: Vec<(&BundleEntry, RawEntry, Value)> = Vec::new();
    for be in &bundle.entries {
        let name = format!("entry {} ({})", be.index, be.role);
        let r = (|| -> Result<(RawEntry, Value), String> {
            let raw = B64
                .decode(&be.raw)
                .map_err(|_| "raw is not base64".to_string())?;
            let leaf = merkle::leaf_hash(&raw);
            ensure(
                hex::encode(leaf) == be.leaf_hash,
                "bytes do not hash to leaf_hash",
            )?;
            let proof = be
                .inclusion_proof
                .iter()
                .map(|h| hash_of(h))
                .collect::<Result<Vec<_>, _>>()?;
            merkle::verify_inclusion(be.index, cp.size, &leaf, &proof, &cp.root)
                .map_err(|e| format!("inclusion proof: {e}"))?;
            let (e, body) = json_of(&raw).map_err(|e| e.to_string())?;
            ensure(e.index == be.index, format!("entry says index {}", e.index))?;
            ensure(
                e.system.as_deref() == Some(s.system_id.as_str()),
                "entry belongs to another system",
            )?;
            Ok((e, body))
        })();
        match r {
            Ok((e, body)) => {
                rep.check(name, Ok(()));
                decoded.push((be, e, body));
            }
            Err(e) => rep.check(name, Err(e)),
        }
    }
    decoded
}

/// The decision entry is the one the summary names.
fn check_decision(s: &Summary, de: &RawEntry, db: &Value, rep: &mut Report) {
    rep.check(
        "decision is what the summary says",
        ensure(
            de.kind == crate::register::DECISION_RECORDED
                && db["decision_id"] == s.decision_id.as_str()
                && de.index == s.decision_index
                && db["model_version"] == s.model_version.as_str(),
            "decision entry disagrees with the summary (id, index or model version)",
        ),
    );
}

/// The version's registration, and its reviews: all of this version, all before the
/// decision; the latest approves it, by someone else. Returns the reviews.
fn check_version_and_reviews<'b, 'a>(
    s: &Summary,
    entries: &'b Verified<'a>,
    d_index: u64,
    version: &Value,
    rep: &mut Report,
) -> Vec<&'b Decoded<'a>> {
    let registrant = match entries.one("model_version") {
        Some((_, e, b)) => {
            rep.check(
                "model version registration",
                ensure(
                    e.kind == crate::register::VERSION_REGISTERED
                        && b["version"] == *version
                        && e.index < d_index
                        && e.actor == s.version_registered_by,
                    "not the registration of the decision's version before it",
                ),
            );
            e.actor.clone()
        }
        None => {
            rep.check("model version registration", Err("missing".into()));
            String::new()
        }
    };
    // Reviews: all of this version, all before the decision; the latest approves it, by someone else.
    let reviews = entries.all("review");
    rep.check(
        "reviews are of this version and before the decision",
        ensure(
            !reviews.is_empty()
                && reviews.iter().all(|(_, e, b)| {
                    e.kind == crate::register::REVIEW_RECORDED
                        && b["version"] == *version
                        && e.index < d_index
                }),
            "a review is missing, of another version, or after the decision",
        ),
    );
    if let Some((_, e, b)) = reviews.iter().max_by_key(|(_, e, _)| e.index) {
        rep.check(
            "the latest review before the decision approved the version",
            ensure(
                b["outcome"] == "approved",
                format!("latest review {} says {}", e.index, b["outcome"]),
            ),
        );
        rep.check(
            "four eyes: the approver did not register the version",
            ensure(
                e.actor != registrant,
                format!("{} registered and approved it", e.actor),
            ),
        );
        rep.check(
            "summary names the approval",
            ensure(
                s.approval_index == e.index && s.approved_by == e.actor,
                "summary's approval differs from the entries",
            ),
        );
    }
    reviews
}

/// Tests: of this version, and cited as evidence by an included review.
fn check_tests(
    entries: &Verified<'_>,
    reviews: &[&Decoded<'_>],
    version: &Value,
    rep: &mut Report,
) {
    let cited: Vec<u64> = reviews
        .iter()
        .flat_map(|(_, _, b)| b["evidence"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_u64())
        .collect();
    for (be, e, b) in entries.all("test") {
        rep.check(
            format!("test {} is evidence for this version", be.index),
            ensure(
                e.kind == crate::register::TEST_RECORDED
                    && b["version"] == *version
                    && cited.contains(&e.index),
                "not a cited test of this version",
            ),
        );
    }
    for t in &cited {
        rep.check(
            format!("cited test {t} is in the bundle"),
            ensure(
                entries.all("test").iter().any(|(_, e, _)| e.index == *t),
                "missing",
            ),
        );
    }
}

/// In service at the decision: deployed before it, not retired before it.
fn check_in_service(entries: &Verified<'_>, d_index: u64, version: &Value, rep: &mut Report) {
    match entries.one("deployment") {
        Some((_, e, b)) => rep.check(
            "the version was deployed before the decision",
            ensure(
                e.kind == crate::register::VERSION_DEPLOYED
                    && b["version"] == *version
                    && e.index < d_index,
                "deployment is of another version or after the decision",
            ),
        ),
        None => rep.check(
            "the version was deployed before the decision",
            Err("no deployment entry".into()),
        ),
    }
    if let Some((_, e, b)) = entries.one("retirement") {
        rep.check(
            "the version was not retired before the decision",
            ensure(
                e.kind == crate::register::VERSION_RETIRED
                    && b["version"] == *version
                    && e.index > d_index,
                "retired before the decision",
            ),
        );
    }
}

/// The register revision in force at the decision.
fn check_register_revision(s: &Summary, entries: &Verified<'_>, d_index: u64, rep: &mut Report) {
    match entries.one("register_revision") {
        Some((_, e, b)) => {
            let rev = b["revision"].as_u64().unwrap_or(0);
            rep.check(
                "register revision precedes the decision",
                ensure(
                    (e.kind == crate::register::SYSTEM_REGISTERED
                        || e.kind == crate::register::SYSTEM_REVISED)
                        && e.index < d_index
                        && rev == s.register_revision,
                    "not a register revision before the decision, or not the one the summary names",
                ),
            );
            if let Some((_, ne, nb)) = entries.one("next_register_revision") {
                rep.check(
                    "register revision was the one in force",
                    ensure(
                        nb["revision"].as_u64() == Some(rev + 1) && ne.index > d_index,
                        "a later revision came before the decision",
                    ),
                );
            }
        }
        None => rep.check(
            "register revision precedes the decision",
            Err("missing".into()),
        ),
    }
}

/// The decision's outcomes, contests and resolutions: each of this decision, after it;
/// a resolution resolves an included contest; each text opening opens its entry's
/// commitment.
fn check_ground_truth(bundle: &Bundle, entries: &Verified<'_>, d_index: u64, rep: &mut Report) {
    let s = &bundle.summary;
    for (role, kind, _) in GROUND_TRUTH {
        for (be, e, b) in entries.all(role) {
            rep.check(
                format!("{role} {} is of this decision", be.index),
                ensure(
                    e.kind == kind
                        && b["decision"].as_u64() == Some(d_index)
                        && b["decision_id"] == s.decision_id.as_str()
                        && e.index > d_index,
                    "names another decision, is not a ground-truth entry, or precedes the decision",
                ),
            );
        }
    }
    let contests: Vec<u64> = entries
        .all("contest")
        .iter()
        .map(|(_, e, _)| e.index)
        .collect();
    for (be, _, b) in entries.all("contest_resolution") {
        rep.check(
            format!(
                "contest_resolution {} resolves an included contest",
                be.index
            ),
            ensure(
                b["contest"].as_u64().is_some_and(|c| contests.contains(&c)),
                "its contest is not in the bundle",
            ),
        );
    }
    for t in &bundle.openings.texts {
        let field = entries
            .0
            .iter()
            .find(|(_, e, _)| e.index == t.entry)
            .and_then(|(be, _, b)| {
                GROUND_TRUTH
                    .iter()
                    .find(|(role, _, field)| *role == be.role && !field.is_empty())
                    .and_then(|(_, _, field)| b[*field].as_str().and_then(|h| hash_of(h).ok()))
            });
        let opened = hex::decode(&t.salt)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .and_then(|salt| projections::vault::commit(&salt, &t.value).ok());
        rep.check(
            format!("the text of entry {} opens its commitment", t.entry),
            ensure(
                field.is_some() && opened == field,
                "value and salt do not open the note or grounds of an included entry",
            ),
        );
    }
}

/// The openings of the personal fields open the decision's commitments (or are erased).
fn check_openings(bundle: &Bundle, db: &Value, rep: &mut Report) {
    let s = &bundle.summary;
    let commitment = |field: &str| db[field].as_str().and_then(|h| hash_of(h).ok());
    let check_open = |o: &OpeningView, c: Option<Hash>| -> Result<(), String> {
        let salt: [u8; 32] = hex::decode(&o.salt)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or("salt is not 32 hex bytes")?;
        let got = projections::vault::commit(&salt, &o.value).map_err(|e| e.to_string())?;
        ensure(Some(got) == c, "value and salt do not open the commitment")
    };
    match &bundle.openings.subject_ref {
        Some(o) => rep.check(
            "subject_ref opens its commitment",
            check_open(o, commitment("subject")),
        ),
        None => rep.check(
            "subject_ref erased (not a failure)",
            ensure(
                s.subject_ref == "erased",
                "summary says opened but no opening is given",
            ),
        ),
    }
    match &bundle.openings.inputs {
        Some(o) => rep.check(
            "inputs open their commitment",
            check_open(o, commitment("inputs")),
        ),
        None => rep.check(
            "inputs erased or absent (not a failure)",
            ensure(
                s.inputs != "opened",
                "summary says opened but no opening is given",
            ),
        ),
    }
    match &bundle.openings.input_sha256 {
        Some(o) => rep.check(
            "input_sha256 opens its commitment",
            check_open(o, commitment("input_sha256_commitment")),
        ),
        None => rep.check(
            "input_sha256 erased or uncommitted (not a failure)",
            match s.input_sha256.as_str() {
                "opened" => Err("summary says opened but no opening is given".into()),
                "uncommitted" if commitment("input_sha256_commitment").is_some() => {
                    Err("summary says uncommitted but the entry holds a commitment".into())
                }
                _ => Ok(()),
            },
        ),
    }
}
