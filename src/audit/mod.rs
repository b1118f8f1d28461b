//! Tamper-evident audit trail: one IHE BALP AuditEvent per interaction (federation-security.md §4.3),
//! including denials and failed authentications, appended to a hash chain in the store (§4.4,
//! `store::audit`).
//!
//! * **Reads**: [`http_layer`] wraps every route. The request runs inside a task-local [`RequestScope`]
//!   into which `api::access` records the caller, the patients and resources disclosed and the consent
//!   decisions. When the handler has answered, the layer appends the event through the group-commit
//!   [`Auditor`] and sends the response only after the database committed it; if the append fails the
//!   client gets a 500 OperationOutcome and no data. If the append reports that a consent decision of the
//!   request is outdated (the security generation moved), the request is run again.
//! * **Writes**: `api::access::write` appends the event inside the write's own database transaction
//!   (`Store::transaction_audited`).
//! * **Group commit**: the records of all concurrent requests are written in ONE transaction per batch
//!   that extends the chain, then the waiting requests are woken — one commit per batch, not per read.
//!   PostgreSQL: the [`Auditor`] task collects the batch and appends it through sqlx (head row locked
//!   `FOR UPDATE`). SQLite: the store's rusqlite appender thread collects and writes it (`BEGIN
//!   IMMEDIATE`, `store::sqlite_append`).
//! * **Record format**: a compact entry (~200–400 bytes, written directly in canonical form, see
//!   [`event::record`]) is hashed and stored; the full BALP AuditEvent is rendered from it on review
//!   ([`event::render`]). Rows written before (full AuditEvents) keep verifying.
//!
//! Review: `AuditEvent?patient=&date=&agent=&subtype=` (secretariat role only), [`verify`] (`tobiume-gateway
//! audit verify`), [`report_break_the_glass`], retention [`purge`] (default 5 years) that keeps the chain
//! verifiable with a checkpoint record.

pub mod cli;
pub mod event;
pub mod verify;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};

use crate::auth::Principal;
use crate::store::audit::AuditRecord;
use crate::store::{Store, StoreError};
pub use event::Interaction;
pub use verify::{verify, Broken, VerifyReport};

/// Audit settings (`TOBIUME_AUDIT_RETENTION_DAYS`, `TOBIUME_AUDIT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// Retention in days (default 1826 = 5 years, the 診療録 retention of 医師法24条).
    pub retention_days: u32,
    /// `false` only for benchmarks of the unaudited baseline (`TOBIUME_AUDIT=off`; the server warns
    /// loudly). Default `true`.
    pub enabled: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: std::env::var("TOBIUME_AUDIT_RETENTION_DAYS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|d| *d > 0)
                .unwrap_or(1826),
            enabled: !matches!(std::env::var("TOBIUME_AUDIT").ok().as_deref().map(str::trim), Some("off")),
        }
    }
}

/// Errors of the audit trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The record could not be written (the response must not be served).
    #[error("audit record not written: {0}")]
    Write(String),
}

/// Result of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Committed at `seq`; `generation` is the database's security generation.
    Written { seq: i64, generation: i64 },
    /// Not written: the decision generation is outdated; decide again.
    Stale { generation: i64 },
    /// Auditing is disabled (`TOBIUME_AUDIT=off`).
    Disabled,
}

struct Job {
    record: AuditRecord,
    expected: Option<i64>,
    reply: oneshot::Sender<Result<Ack, String>>,
}

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 2048;

/// The group-commit appender (one per process; the task starts on first use).
pub struct Auditor {
    store: Arc<Store>,
    config: AuditConfig,
    sender: OnceLock<mpsc::Sender<Job>>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Auditor {
    /// An appender over `store`.
    pub fn new(store: Arc<Store>, config: AuditConfig) -> Auditor {
        if !config.enabled {
            tracing::warn!("AUDIT IS DISABLED (TOBIUME_AUDIT=off): no access is recorded — benchmark use only");
        }
        Auditor { store, config, sender: OnceLock::new() }
    }

    /// The settings.
    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// The store the trail lives in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    fn sender(&self) -> &mpsc::Sender<Job> {
        self.sender.get_or_init(|| {
            let (tx, rx) = mpsc::channel(16 * 1024);
            tokio::spawn(run_appender(self.store.clone(), rx));
            tx
        })
    }

    /// Appends `record` (group commit) and waits for the commit. `expected` = the security generation
    /// the request's consent decisions were made under (`None`: none made). Must be called inside a
    /// tokio runtime. Errors: [`AuditError::Write`] — the caller must not serve its response.
    pub async fn append(&self, record: AuditRecord, expected: Option<i64>) -> Result<Ack, AuditError> {
        if !self.config.enabled {
            return Ok(Ack::Disabled);
        }
        if self.store.groups_audit_appends() {
            // SQLite: the store's appender thread batches all queued records into one transaction.
            let out = self
                .store
                .audit_append_owned(vec![record], vec![expected])
                .await
                .map_err(|e| AuditError::Write(e.to_string()))?;
            return Ok(match out.seqs.first().copied().flatten() {
                Some(seq) => Ack::Written { seq, generation: out.generation },
                None => Ack::Stale { generation: out.generation },
            });
        }
        let (reply, rx) = oneshot::channel();
        self.sender()
            .send(Job { record, expected, reply })
            .await
            .map_err(|_| AuditError::Write("audit appender stopped".into()))?;
        rx.await.map_err(|_| AuditError::Write("audit appender stopped".into()))?.map_err(AuditError::Write)
    }
}

async fn run_appender(store: Arc<Store>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Job> = Vec::with_capacity(64);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        // Let the requests that are running right now enqueue too: bigger batches, fewer commits, no
        // added latency when the server is idle.
        tokio::task::yield_now().await;
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(jobs.len());
        let mut expected = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for j in jobs.drain(..) {
            records.push(j.record);
            expected.push(j.expected);
            replies.push(j.reply);
        }
        match store.audit_append(&records, &expected).await {
            Ok(out) => {
                for (reply, seq) in replies.into_iter().zip(out.seqs) {
                    let ack = match seq {
                        Some(seq) => Ack::Written { seq, generation: out.generation },
                        None => Ack::Stale { generation: out.generation },
                    };
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(e) => {
                // No PHI: a database error message names tables and constraints only.
                tracing::error!(records = records.len(), "audit append failed: {e}");
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Per-request scope

/// What `api::access` learned during one HTTP request (task-local, see [`current`]).
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// The authenticated caller.
    pub principal: Option<Arc<Principal>>,
    /// Patients whose data was disclosed or asked for.
    pub patients: BTreeSet<String>,
    /// `Type/id` of the resources read or written (at most [`MAX_RESOURCES`]).
    pub resources: Vec<String>,
    /// The first denial (consent, suspension) of the request.
    pub denied: Option<String>,
    /// Break-the-glass was used.
    pub emergency_override: bool,
    /// Smallest and largest security generation of the request's consent decisions.
    pub generations: Option<(i64, i64)>,
    /// Writes of this request already appended their event inside their transaction.
    pub audited_in_tx: bool,
}

/// Resources listed per event (a search lists its patients and query, not every match).
pub const MAX_RESOURCES: usize = 100;

impl Collected {
    /// Records a consent decision made under `generation`.
    pub fn decided_under(&mut self, generation: i64) {
        self.generations = Some(match self.generations {
            None => (generation, generation),
            Some((lo, hi)) => (lo.min(generation), hi.max(generation)),
        });
    }

    /// Records a disclosed resource.
    pub fn resource(&mut self, r: String) {
        if self.resources.len() < MAX_RESOURCES && !self.resources.contains(&r) {
            self.resources.push(r);
        }
    }
}

/// The task-local audit scope of one HTTP request.
#[derive(Debug, Default)]
pub struct RequestScope {
    inner: Mutex<Collected>,
}

impl RequestScope {
    /// Runs `f` on the collected state.
    pub fn with<R>(&self, f: impl FnOnce(&mut Collected) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Takes the collected state out (leaving it empty).
    pub fn take(&self) -> Collected {
        std::mem::take(&mut *self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

tokio::task_local! {
    static SCOPE: Arc<RequestScope>;
}

/// Runs `fut` with `scope` as its audit scope (what [`http_layer`] does per request; also used for
/// in-process reads outside HTTP).
pub async fn scoped<F: std::future::Future>(scope: Arc<RequestScope>, fut: F) -> F::Output {
    SCOPE.scope(scope, fut).await
}

/// The audit scope of the current HTTP request, `None` outside [`http_layer`] (CLI, direct calls).
pub fn current() -> Option<Arc<RequestScope>> {
    SCOPE.try_with(|s| s.clone()).ok()
}

/// What the audit layer needs from the application state.
pub trait AuditState: Clone + Send + Sync + 'static {
    /// The appender.
    fn auditor(&self) -> &Auditor;
    /// Called with the database's security generation after every append (consent cache freshness).
    fn observe_generation(&self, generation: i64);
    /// Largest request body (bodies are buffered so a request can be re-run after a stale decision).
    fn max_body_bytes(&self) -> usize;
}

/// Paths that are public and carry no data: audited only when they fail.
fn public_path(path: &str) -> bool {
    crate::auth::layer::PUBLIC_PATHS.contains(&path)
}

/// The interaction code and action of a request, from the method and the route template.
pub fn classify(method: &Method, route: &str) -> (&'static str, &'static str) {
    let op = route.contains('$');
    match (method.as_str(), route) {
        _ if route.starts_with("/view/") => ("operation", "E"),
        (_, r) if op && r.ends_with("$suspend") => ("operation", "U"),
        (_, r) if op && r.ends_with("$resume") => ("operation", "U"),
        _ if op => ("operation", "E"),
        ("GET", "/fhir/metadata") => ("capabilities", "R"),
        ("POST", "/fhir") => ("batch", "E"),
        ("GET", "/fhir/_history") => ("history-system", "R"),
        ("GET", "/fhir/{type}") | ("POST", "/fhir/{type}/_search") => ("search-type", "E"),
        ("GET", "/fhir/{type}/_history") => ("history-type", "R"),
        ("GET", "/fhir/{type}/{id}/_history") => ("history-instance", "R"),
        ("GET", "/fhir/{type}/{id}/_history/{vid}") => ("vread", "R"),
        ("GET", "/fhir/{type}/{id}") => ("read", "R"),
        ("POST", "/fhir/{type}") => ("create", "C"),
        ("PUT", _) => ("update", "U"),
        ("PATCH", _) => ("patch", "U"),
        ("DELETE", _) => ("delete", "D"),
        ("GET", _) => ("read", "R"),
        _ => ("", "E"),
    }
}

/// Attempts of one request when its consent decisions were outdated.
const MAX_ATTEMPTS: usize = 3;

/// The audit middleware (see the module docs). Layer it OUTSIDE authentication, so that failed
/// authentications are recorded too: `router.layer(from_fn_with_state(state, http_layer::<S>))`.
pub async fn http_layer<S: AuditState>(State(state): State<S>, req: Request, next: Next) -> Response {
    // (`MatchedPath` is a shared `Arc<str>`: no copy of the route per request)
    let route = req.extensions().get::<MatchedPath>().cloned();
    let public = public_path(req.uri().path());
    // held until this request's record is appended: the SQLite appender closes its group commit once
    // every registered request is waiting on it (`Store::audit_intent`)
    let _intent = (!public).then(|| state.auditor().store().audit_intent());
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.max_body_bytes()).await {
        Ok(b) => b,
        Err(_) => {
            return crate::api::ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-costly",
                "request body larger than the configured limit",
            )
            .into_response()
        }
    };
    let template = route.as_ref().map_or("<unmatched>", MatchedPath::as_str);
    let (code, action) = classify(&parts.method, template);
    let mut last_generation = None;
    for _attempt in 0..MAX_ATTEMPTS {
        let scope = Arc::new(RequestScope::default());
        let req = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
        let resp = SCOPE.scope(scope.clone(), next.clone().run(req)).await;
        let status = resp.status().as_u16();
        let auth_failure = status == 401;
        if public && !auth_failure && status != 403 {
            return resp;
        }
        let mut c = scope.take();
        // A refusal by the authentication layer or the access decision point: its reason and caller.
        if let Some(d) = resp.extensions().get::<crate::auth::Denial>() {
            if c.denied.is_none() {
                c.denied = Some(d.reason.clone());
            }
            if c.principal.is_none() {
                c.principal = d.principal.clone();
            }
        }
        if c.audited_in_tx && c.patients.is_empty() && c.denied.is_none() && status < 400 {
            // The writes' events are already committed with the data.
            return resp;
        }
        // Decisions made under different generations: at least one is outdated.
        let (mut mixed, expected) = match c.generations {
            Some((lo, hi)) if lo != hi => (true, None),
            Some((lo, _)) => (false, Some(lo)),
            None => (false, None),
        };
        if c.audited_in_tx {
            // Never re-run a request that already committed writes.
            mixed = false;
        }
        if mixed {
            if let Ok(g) = state.auditor().store().security_generation().await {
                state.observe_generation(g);
            }
            continue;
        }
        let interaction = Interaction {
            code: code.to_string(),
            action,
            status,
            outcome_desc: c.denied.take(),
            patients: std::mem::take(&mut c.patients).into_iter().collect(),
            resources: if code.starts_with("search") { Vec::new() } else { std::mem::take(&mut c.resources) },
            query: parts.uri.query().filter(|q| !q.is_empty()).map(str::to_string),
            request_id: parts.headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
            emergency_override: c.emergency_override,
            authentication_failure: auth_failure,
            operation: template.rsplit('/').next().filter(|s| s.starts_with('$')).map(str::to_string),
        };
        let record = event::record(c.principal.as_deref(), &interaction, now_ms());
        let expected = if c.audited_in_tx { None } else { expected };
        match state.auditor().append(record, expected).await {
            Ok(Ack::Written { generation, .. }) => {
                state.observe_generation(generation);
                return resp;
            }
            Ok(Ack::Disabled) => return resp,
            Ok(Ack::Stale { generation }) => {
                state.observe_generation(generation);
                last_generation = Some(generation);
                continue;
            }
            Err(e) => {
                tracing::error!("response withheld: {e}");
                return crate::api::ApiError::internal().into_response();
            }
        }
    }
    tracing::warn!(generation = ?last_generation, "consent state kept changing; request not answered");
    crate::api::ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "transient",
        "access rules changed while answering; retry the request",
    )
    .into_response()
}

/// Now as epoch ms.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

// ------------------------------------------------------------------------------------------------
// Review: report, retention

/// One line of the break-the-glass report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BreakTheGlassEntry {
    /// AuditEvent id (chain seq).
    pub id: String,
    /// `recorded` instant.
    pub recorded: String,
    /// Patient ids.
    pub patients: Vec<String>,
    /// Agent keys (user, client, `Organization/<facility>`).
    pub agents: Vec<String>,
    /// The stated reason.
    pub reason: Option<String>,
    /// `AuditEvent.outcome`.
    pub outcome: String,
}

/// Every emergency override (subtype DCM 110127) recorded at or after `since_ms` (epoch ms), oldest
/// first: the secretariat's review list. Errors: `Database`.
pub async fn report_break_the_glass(store: &Store, since_ms: i64) -> Result<Vec<BreakTheGlassEntry>, StoreError> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let filter = crate::store::audit::AuditFilter {
            subtypes: vec![event::SUBTYPE_EMERGENCY_OVERRIDE.into()],
            recorded_ge: vec![since_ms],
            limit: 1000,
            offset,
            ascending: true,
            ..Default::default()
        };
        let (rows, _) = store.audit_search(&filter).await?;
        let n = rows.len();
        for r in rows {
            let v: serde_json::Value = serde_json::from_str(&r.event_json()).unwrap_or_default();
            let d = event::derive_index(&v);
            out.push(BreakTheGlassEntry {
                id: r.seq.to_string(),
                recorded: v.get("recorded").and_then(|x| x.as_str()).unwrap_or_default().to_string(),
                patients: d.as_ref().map(|d| d.5.clone()).unwrap_or_default(),
                agents: d.as_ref().map(|d| d.6.clone()).unwrap_or_default(),
                reason: v.pointer("/agent/0/purposeOfUse/0/text").and_then(|x| x.as_str()).map(str::to_string),
                outcome: r.outcome,
            });
        }
        if n < 1000 {
            break;
        }
        offset += n;
    }
    Ok(out)
}

/// Retention purge: deletes the records older than `retention_days` and appends the checkpoint record
/// (the chain keeps verifying). Returns the number deleted. Errors: `Database`.
pub async fn purge(store: &Store, retention_days: u32, now_ms: i64) -> Result<u64, StoreError> {
    let cutoff = now_ms - i64::from(retention_days) * 86_400_000;
    store
        .audit_purge(cutoff, |through, hash, count| {
            event::purge_checkpoint(through, hash, count, retention_days, now_ms)
        })
        .await
}
