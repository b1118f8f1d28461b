//! FHIR R4 RESTful API (FHIR R4 §3.1.0 "RESTful API") as an axum router mounted at `/fhir`.
//!
//! # Router structure
//!
//! | route | methods | interaction |
//! |---|---|---|
//! | `/health` | GET | liveness (not FHIR); public |
//! | `/fhir/metadata` | GET | `capabilities` (§3.1.0.5); public |
//! | `/.well-known/smart-configuration`, `/fhir/.well-known/smart-configuration` | GET | SMART App Launch 2.0 discovery; public |
//! | `/fhir` | POST | `batch` / `transaction` (§3.1.0.11) |
//! | `/fhir/_history` | GET | system `history` (§3.1.0.9) |
//! | `/fhir/{type}` | GET / POST / PUT / DELETE | `search-type` (§3.1.0.8) / `create` + conditional create (§3.1.0.6) / conditional update (§3.1.0.4.3) / conditional delete (§3.1.0.7.1) |
//! | `/fhir/Patient/$register` | POST | the simple registration JSON ([`operation::register`]) |
//! | `/fhir/Patient/$match` | POST | Patient `$match`, IHE PDQm ([`operation::match_`]) |
//! | `/fhir/Patient/{id}/$summary`, `/fhir/Patient/$summary?identifier=` | GET | emergency / multi-disciplinary patient summary, IPS-shaped document Bundle ([`operation::summary`]) |
//! | `/view/patient/{id}` | GET | reference HTML viewer of the summary ([`view`]) |
//! | `/fhir/{type}/_search` | POST | `search-type` with form body |
//! | `/fhir/{type}/_history` | GET | type `history` |
//! | `/fhir/{type}/{id}` | GET / PUT / PATCH / DELETE | `read` (§3.1.0.2) / `update` (§3.1.0.4) / `patch` (§3.1.0.5, JSON Patch) / `delete` (§3.1.0.7) |
//! | `/fhir/{type}/{id}/_history` | GET | instance `history` |
//! | `/fhir/{type}/{id}/_history/{vid}` | GET | `vread` (§3.1.0.3) |
//!
//! Anything else is a 404 `OperationOutcome`; a known route with a wrong method is 405.
//!
//! # One decision point for every read
//!
//! Handlers never call the store for reads directly: `read`, `vread`, search (incl. `_include`),
//! history, conditional-operation lookups and the reads inside batch/transaction all go through
//! [`access::read_resources`], which receives a [`access::RequestContext`] (request id, the verified
//! principal with its SMART scopes, facility and purpose of use). The SMART scope check runs there
//! (`auth::scopes`), and consent and audit hook into the same function, so they hold for every read path
//! by construction. Writes go through [`access::write`] for the same reason.
//!
//! # Layers (outermost first)
//!
//! `SetRequestId` (`X-Request-Id`, honouring an incoming one) → sensitive headers (`Authorization`,
//! `Cookie`) → `TraceLayer` (method, **route template** — never the query string, which can hold PHI —,
//! status, latency, request id) → `PropagateRequestId` → `CatchPanic` (→ 500 OperationOutcome) → audit
//! (`crate::audit::http_layer`: the request's AuditEvent is committed before the response is sent) →
//! authentication (`auth::layer`: Bearer token → principal in the request extensions, 401/403 with a
//! `auth::Denial` in the response extensions; `/health`, `/fhir/metadata` and the SMART configuration are
//! public; it also copies the principal into the audit scope) → routes. No per-route layers: each
//! `from_fn` layer costs a boxed future and a clone of the inner service per request.
//!
//! # Raw JSON
//!
//! Stored resources are served as the exact stored text (no re-serialisation on reads); writes hand the
//! raw request text to the store (`create_raw` / `update_raw` / `TxEntry` with `ResourceBody::Text`), so
//! decimal text such as `1.50` survives.

pub mod access;
mod body;
mod bundle;
pub mod capability;
mod interaction;
pub mod openapi;
pub mod operation;
pub mod outcome;
/// `$validate` (declared here until `operation/mod.rs` lists it; the file lives with the other operations).
#[path = "operation/validate.rs"]
pub mod validate_operation;
pub mod rawjson;
mod response;
pub mod summary;
pub mod view;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, State};
use axum::http::{header, HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use outcome::{ApiError, Issue};

use crate::search::Registry;
use crate::store::Store;

/// Configuration of the REST API (part of the gateway's one configuration struct).
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Absolute base URL of the FHIR endpoint as clients see it, without trailing slash; used for
    /// `fullUrl`, paging links and `CapabilityStatement.implementation.url`.
    /// Default `http://localhost:8080/fhir`.
    pub base_url: String,
    /// Largest accepted request body in bytes (HTTP 413 above). Default 16 MiB (transaction Bundles).
    pub max_body_bytes: usize,
    /// Largest number of entries returned by one history request (`_count` is clamped). Default 1000.
    pub max_history: usize,
    /// Default history page size when `_count` is absent. Default 100.
    pub default_history_count: usize,
    /// `CapabilityStatement.software.name`. Default `tobiume-gateway`.
    pub software_name: String,
    /// `CapabilityStatement.software.version`. Default the crate version.
    pub software_version: String,
    /// Profile validation of created/updated/patched resources (after the JSON-schema check, which always
    /// rejects with 422). Default [`WritePolicy::Warn`], or `$TOBIUME_VALIDATE_ON_WRITE` (`off`|`warn`|`reject`).
    pub validate_on_write: WritePolicy,
    /// Access-token verification (`auth::Authenticator`). Default: `jwt` mode without issuers, which
    /// refuses every protected request (fail closed); `serve` builds it from the configuration.
    pub auth: Arc<crate::auth::Authenticator>,
}

/// What a write does with the profile validator's findings (`validation::validate`: base definition +
/// `meta.profile`).
///
/// * `Off` — no profile validation (schema only).
/// * `Warn` (default) — the write is accepted; the response carries `X-Validation-Issues:
///   errors=N, warnings=M` and, with `Prefer: return=OperationOutcome`, the issues in its OperationOutcome
///   (FHIR R4 §3.1.0.6 "hints and warnings"). Default because a regional network must not lose clinical
///   data over a profile rule it cannot check completely (external code systems, profiles not loaded),
///   while senders still see every finding.
/// * `Reject` — any `error` issue rejects the write with 422 and the OperationOutcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WritePolicy {
    /// Schema check only.
    Off,
    /// Accept, report issues in the response.
    #[default]
    Warn,
    /// 422 on any error issue.
    Reject,
}

impl WritePolicy {
    /// Parse `off` / `warn` / `reject` (case-insensitive).
    pub fn parse(s: &str) -> Option<WritePolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(WritePolicy::Off),
            "warn" => Some(WritePolicy::Warn),
            "reject" => Some(WritePolicy::Reject),
            _ => None,
        }
    }

    /// `$TOBIUME_VALIDATE_ON_WRITE` if set and valid, else `Warn`.
    pub fn from_env() -> WritePolicy {
        std::env::var("TOBIUME_VALIDATE_ON_WRITE").ok().and_then(|v| WritePolicy::parse(&v)).unwrap_or_default()
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            base_url: "http://localhost:8080/fhir".into(),
            max_body_bytes: 16 * 1024 * 1024,
            max_history: 1000,
            default_history_count: 100,
            software_name: "tobiume-gateway".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            validate_on_write: WritePolicy::from_env(),
            auth: Arc::new(crate::auth::Authenticator::deny_all()),
        }
    }
}

/// Shared state of all handlers (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    /// The resource store (SQLite / PostgreSQL).
    pub store: Arc<Store>,
    /// SearchParameter registry (search parsing and the CapabilityStatement).
    pub registry: Arc<Registry>,
    /// API configuration.
    pub config: Arc<ApiConfig>,
    /// Consent decision point and audit appender ([`access::Security`]).
    pub security: Arc<access::Security>,
    /// The CapabilityStatement JSON, generated once.
    capability: Arc<String>,
}

impl AppState {
    /// Build the state; generates the CapabilityStatement once (from the registry and the implemented
    /// interactions), warms up the schema validator and starts loading the profile validator in the
    /// background.
    pub fn new(store: Arc<Store>, registry: Arc<Registry>, config: ApiConfig) -> AppState {
        let capability = Arc::new(capability::capability_statement(&registry, &config).to_string());
        if let Err(e) = crate::validation::schema::warm_up() {
            tracing::error!(error = %e, "FHIR schema validator unavailable");
        }
        crate::validation::warm_up_in_background();
        let security = Arc::new(access::Security::new(store.clone()));
        AppState { store, registry, config: Arc::new(config), security, capability }
    }
}

/// The complete HTTP router: `/fhir/**` (FHIR REST) and `/health`, with request-id, tracing, panic
/// catching. Serve it with `axum::serve`. Errors are all `OperationOutcome`s (see [`outcome`]).
pub fn router(state: AppState) -> Router {
    let fhir = Router::new()
        .route("/", post(bundle::batch_or_transaction))
        .route("/metadata", get(metadata))
        .route("/_history", get(interaction::history_system))
        .route(
            "/{type}",
            get(interaction::search_get)
                .post(interaction::create)
                .put(interaction::conditional_update)
                .delete(interaction::conditional_delete),
        )
        .route("/Patient/$register", post(operation::register::register_http))
        .route("/Patient/$match", post(operation::match_::patient_match))
        .route("/Patient/$summary", get(operation::summary::type_summary))
        .route("/Patient/{id}/$summary", get(operation::summary::instance_summary))
        .route("/$validate", post(validate_operation::validate_system))
        .route("/{type}/$validate", post(validate_operation::validate_type))
        .route("/{type}/{id}/$validate", post(validate_operation::validate_instance))
        .route("/{type}/{id}/$suspend", post(operation::suspend::suspend))
        .route("/{type}/{id}/$resume", post(operation::suspend::resume))
        .route("/{type}/_search", post(interaction::search_post))
        .route("/{type}/_history", get(interaction::history_type))
        .route(
            "/{type}/{id}",
            get(interaction::read)
                .put(interaction::update)
                .patch(interaction::patch)
                .delete(interaction::delete),
        )
        .route("/{type}/{id}/_history", get(interaction::history_instance))
        .route("/{type}/{id}/_history/{vid}", get(interaction::vread));

    let x_request_id = HeaderName::from_static("x-request-id");
    let auth = state.config.auth.clone();
    Router::new()
        .route("/health", get(health))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route("/fhir/.well-known/smart-configuration", get(smart_configuration))
        .route("/view/patient/{id}", get(view::patient))
        .nest("/fhir", fhir)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(auth, crate::auth::layer::authenticate))
        // One AuditEvent per request, committed before the response leaves (crate::audit); OUTSIDE the
        // authentication layer so failed authentications are audited too.
        .layer(axum::middleware::from_fn_with_state(state.clone(), crate::audit::http_layer::<AppState>))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
                .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(make_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(
                            tower_http::LatencyUnit::Micros,
                        )),
                )
                .layer(PropagateRequestIdLayer::new(x_request_id))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}

/// Span per request: method, route template (no query string, no ids of people), request id.
fn make_span(req: &Request<Body>) -> tracing::Span {
    let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str()).unwrap_or("<unmatched>");
    let id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|r| r.header_value().to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("http", method = %req.method(), route = %route, request_id = %id)
}

fn panic_response(_err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic payload may contain resource content: do not log it.
    tracing::error!("handler panicked; answered 500");
    ApiError::internal().into_response()
}

async fn health() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], r#"{"status":"ok"}"#).into_response()
}

async fn smart_configuration(State(state): State<AppState>) -> Response {
    crate::auth::layer::smart_configuration_response(&state.config.auth)
}

async fn metadata(State(state): State<AppState>) -> Response {
    response::fhir_bytes(StatusCode::OK, state.capability.as_bytes().to_vec())
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "not-supported", "HTTP method not supported on this URL")
        .into_response()
}

async fn not_found() -> Response {
    ApiError::not_found("no FHIR endpoint at this URL").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[tokio::test]
    async fn panics_become_operation_outcome_500() {
        async fn boom() -> &'static str {
            panic!("patient 山田 exploded")
        }
        let app: Router = Router::new().route("/x", get(boom)).layer(CatchPanicLayer::custom(panic_response));
        let res = app.oneshot(Request::builder().uri("/x").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(res.headers()[header::CONTENT_TYPE], outcome::FHIR_JSON);
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("OperationOutcome") && !text.contains("山田"), "{text}");
    }
}
