//! Shared helpers for the `api_*` integration tests: an in-process router over a temp-file SQLite store
//! and a one-shot request helper.
#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::Value;
use tobiume_gateway::api::{router, ApiConfig, AppState};
use tobiume_gateway::search::Registry;
use tobiume_gateway::store::Store;
use tower::ServiceExt;

/// A running app: the router and the temp dir holding its SQLite file.
pub struct App {
    pub router: Router,
    pub dir: tempfile::TempDir,
}

/// Build the app on a fresh SQLite file.
pub async fn app() -> App {
    app_with(ApiConfig::default()).await
}

/// Build the app with a config.
pub async fn app_with(config: ApiConfig) -> App {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("fhir.db").display());
    let registry = Arc::new(Registry::standard());
    let store = Store::connect_with_registry(&url, registry.clone()).await.expect("store");
    let state = AppState::new(Arc::new(store), registry, config);
    App { router: router(state), dir }
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
    /// Send one request.
    pub async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Resp {
        let mut b = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(uri);
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
