//! Shared helpers for the `api_*` integration tests: an in-process router over a fresh store on either
//! backend — a temp-file SQLite database or a fresh database on the throwaway PostgreSQL server of
//! `common/pg.rs` (one server per test binary, `CREATE DATABASE` per test) — and a one-shot request helper.
//!
//! Every test body takes a [`Db`] and is instantiated for both backends with [`both_db!`]:
//!
//! ```ignore
//! #[macro_use]
//! #[path = "common/api_support.rs"]
//! mod support;
//! use support::Db;
//!
//! both_db!(my_test);
//! async fn my_test(db: Db) { let a = support::app(db).await; … }
//! ```
//!
//! generates `my_test::sqlite` and `my_test::postgres`. The PostgreSQL variant skips (loudly, see
//! `common/pg.rs`) only when PostgreSQL binaries are missing locally; under `CI=true` it must run.
//!
//! Authentication: the app runs in `dev` mode with an in-memory dev key of this test process
//! ([`test_key`]); [`App::send`] adds `Authorization: Bearer` with the app's token — by default one with
//! [`ALL_ACCESS_SCOPE`] (a backend service with full access) — unless the request names its own
//! `authorization` header. [`token`] mints other tokens; [`App::send_as`] sends with a given one (or none).
#![allow(dead_code)]

#[path = "pg.rs"]
pub mod pg;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tobiume_gateway::api::{router, ApiConfig, AppState};
use tobiume_gateway::auth::dev::{DevKey, DevTokenRequest};
use tobiume_gateway::auth::{AuthMode, AuthSettings, Authenticator};
use tobiume_gateway::search::Registry;
use tobiume_gateway::store::Store;
use tower::ServiceExt;

/// Which store backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Instantiates `async fn $name(db: Db)` as two tests, `$name::sqlite` and `$name::postgres`.
/// The PostgreSQL test returns early (after `common/pg.rs` printed why) only when the server is unavailable
/// outside CI.
macro_rules! both_db {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::support::Db::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if super::support::postgres_available().await {
                    super::$name(super::support::Db::Postgres).await;
                }
            }
        }
    };
}

/// Whether the shared PostgreSQL test server runs (starting it on first call). Panics under `CI=true` when it
/// cannot start (see `common/pg.rs`).
pub async fn postgres_available() -> bool {
    tokio::task::spawn_blocking(|| pg::shared().is_some()).await.expect("pg::shared")
}

/// What keeps a test database alive: the temp dir of an SQLite file (removed on drop). A PostgreSQL
/// database lives as long as the per-binary server.
pub struct DbGuard {
    /// Temp dir: holds the SQLite file, free for other test files (quarantine, …) on both backends.
    pub dir: tempfile::TempDir,
    /// The database URL.
    pub url: String,
}

/// A fresh, empty database on `db`: its URL and the guard keeping it alive.
pub async fn database(db: Db) -> DbGuard {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match db {
        Db::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display()),
        Db::Postgres => pg::fresh_database_url().await.expect("PostgreSQL test server (check postgres_available first)"),
    };
    DbGuard { dir, url }
}

/// A fresh store on `db` indexing with the standard registry.
pub async fn store(db: Db) -> (Store, Arc<Registry>, DbGuard) {
    let guard = database(db).await;
    let registry = Arc::new(Registry::standard());
    let store = Store::connect_with_registry(&guard.url, registry.clone()).await.expect("store");
    (store, registry, guard)
}

/// Scope of the default test token: full access as a backend service (no facility, no patient context).
pub const ALL_ACCESS_SCOPE: &str = "system/*.cruds";

/// The dev key of this test process (generated once, in memory).
pub fn test_key() -> &'static DevKey {
    static KEY: std::sync::OnceLock<DevKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| DevKey::generate().expect("dev key"))
}

/// An authenticator in `dev` mode trusting [`test_key`].
pub fn test_authenticator() -> Arc<Authenticator> {
    let settings = AuthSettings { mode: AuthMode::Dev, ..AuthSettings::default() };
    Arc::new(Authenticator::from_settings_with_dev_key(&settings, "http://localhost:8080/fhir", Some(test_key())).expect("authenticator"))
}

/// A token signed by [`test_key`].
pub fn token(req: DevTokenRequest) -> String {
    test_key().mint(&req).expect("mint")
}

/// A token with `scope` only.
pub fn token_for(scope: &str) -> String {
    token(DevTokenRequest { scope: scope.into(), ..DevTokenRequest::default() })
}

/// A running app: the router, its store and what keeps the database alive.
pub struct App {
    pub router: Router,
    pub store: Arc<Store>,
    pub db: DbGuard,
    /// The Bearer token [`App::send`] uses (`None`: no Authorization header).
    pub token: Option<String>,
}

/// Build the app on a fresh database of `db`.
pub async fn app(db: Db) -> App {
    app_with(db, ApiConfig::default()).await
}

/// Build the app on a fresh database of `db` with a config.
pub async fn app_with(db: Db, config: ApiConfig) -> App {
    let (store, registry, guard) = store(db).await;
    App::new(store, registry, config, guard)
}

impl App {
    /// The app over an existing store, authenticating with [`test_authenticator`] (dev mode) and
    /// sending the [`ALL_ACCESS_SCOPE`] token.
    pub fn new(store: Store, registry: Arc<Registry>, config: ApiConfig, db: DbGuard) -> App {
        let config = ApiConfig { auth: test_authenticator(), ..config };
        Self::new_with_auth(store, registry, config, db)
    }

    /// The app with the authenticator of `config` as given (e.g. `Authenticator::disabled()`).
    pub fn new_with_auth(store: Store, registry: Arc<Registry>, config: ApiConfig, db: DbGuard) -> App {
        let store = Arc::new(store);
        let state = AppState::new(store.clone(), registry, config);
        App { router: router(state), store, db, token: Some(token_for(ALL_ACCESS_SCOPE)) }
    }
}

/// A response: status, headers, body text.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Resp {
    /// Body as JSON (panics with the body text when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Assert an OperationOutcome with this status.
    pub fn assert_outcome(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert!(self.header("content-type").unwrap_or("").starts_with("application/fhir+json"), "{:?}", self.headers);
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", self.body);
        assert!(v["issue"].as_array().is_some_and(|a| !a.is_empty()));
        v
    }
}

impl App {
    /// Send one request with the app's token (unless `headers` has an `authorization`).
    pub async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
        let own = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        self.send_as(if own { None } else { self.token.as_deref() }, method, uri, headers, body).await
    }

    /// Send one request with `Authorization: Bearer <token>` (none for `None`).
    pub async fn send_as(
        &self,
        token: Option<&str>,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut b = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(uri);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body.into()).unwrap();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        Resp { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }
    /// GET.
    pub async fn get(&self, uri: &str) -> Resp {
        self.send("GET", uri, &[], Body::empty()).await
    }
    /// Send a FHIR JSON body.
    pub async fn json(&self, method: &str, uri: &str, body: &str) -> Resp {
        self.send(method, uri, &[("content-type", "application/fhir+json")], body.to_string()).await
    }
}
