//! Opaque access tokens: OAuth 2.0 Token Introspection (RFC 7662; IHE IUA ITI-102) with the `oauth2`
//! crate, over the gateway's own `reqwest` client (the crate's bundled reqwest is a different major).
//!
//! A Bearer token that is not a JWT is sent to the introspection endpoint of each issuer that has one
//! (client authentication: HTTP Basic with the issuer's `client_id` / `client_secret`). An `active`
//! answer is checked like a JWT (`iss` when present, `aud` when present, `exp`/`nbf` with leeway) and its
//! members are mapped like JWT claims (`authenticator` module doc). The answer is cached for at most
//! `introspection_cache_seconds` (default 60) so that a revocation at the IdP takes effect within that time.

use oauth2::basic::{BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType};
use oauth2::{
    AccessToken, AuthType, Client, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields, IntrospectionUrl,
    StandardRevocableToken, StandardTokenIntrospectionResponse, TokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::authenticator::TokenError;

/// Members of an introspection response beyond RFC 7662's (SMART / Tobiume / IUA claims).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ExtraClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patient: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    facility: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tobiume_roles: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    purpose_of_use: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    azp: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    extensions: Option<Value>,
}

impl ExtraTokenFields for ExtraClaims {}

type Response = StandardTokenIntrospectionResponse<ExtraClaims, BasicTokenType>;
type IntrospectionClient = Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Response,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

/// An introspection endpoint with its client credentials.
pub struct Introspector {
    client: IntrospectionClient,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

impl Introspector {
    /// `endpoint` with client authentication `client_id` / `client_secret` (HTTP Basic).
    /// Errors: invalid URL.
    pub fn new(endpoint: &str, client_id: &str, client_secret: Option<&str>, http: reqwest::Client) -> Result<Introspector, String> {
        let url = IntrospectionUrl::new(endpoint.to_string()).map_err(|e| format!("introspection endpoint {endpoint}: {e}"))?;
        let mut client = Client::new(ClientId::new(client_id.to_string())).set_introspection_url(url).set_auth_type(AuthType::BasicAuth);
        if let Some(s) = client_secret {
            client = client.set_client_secret(ClientSecret::new(s.to_string()));
        }
        Ok(Introspector { client, http })
    }

    /// Introspect `token`. Returns the response's members as JSON (RFC 7662 names: `active`, `scope`,
    /// `client_id`, `sub`, `exp`, `iss`, `aud`, `jti`, plus the extra claims).
    /// Errors: [`TokenError::Inactive`] for `active: false`, [`TokenError::Introspection`] when the
    /// endpoint cannot be asked.
    pub async fn introspect(&self, token: &str) -> Result<Value, TokenError> {
        let http = self.http.clone();
        let call = move |req: oauth2::HttpRequest| {
            let http = http.clone();
            async move {
                let req = reqwest::Request::try_from(req).map_err(|e| HttpError(e.without_url().to_string()))?;
                let resp = http.execute(req).await.map_err(|e| HttpError(e.without_url().to_string()))?;
                let mut b = oauth2::http::Response::builder().status(resp.status().as_u16());
                for (k, v) in resp.headers() {
                    b = b.header(k.as_str(), v.as_bytes());
                }
                let body = resp.bytes().await.map_err(|e| HttpError(e.without_url().to_string()))?.to_vec();
                b.body(body).map_err(|e| HttpError(e.to_string()))
            }
        };
        let access_token = AccessToken::new(token.to_string());
        let resp = self.client.introspect(&access_token).request_async(&call).await.map_err(|e| {
            // Only the kind: a response body could echo token content.
            let kind = match e {
                oauth2::RequestTokenError::ServerResponse(_) => "error response",
                oauth2::RequestTokenError::Request(_) => "request failed",
                oauth2::RequestTokenError::Parse(..) => "unparseable response",
                oauth2::RequestTokenError::Other(_) => "unexpected response",
            };
            tracing::warn!(kind, "token introspection failed");
            TokenError::Introspection
        })?;
        if !resp.active() {
            return Err(TokenError::Inactive);
        }
        serde_json::to_value(&resp).map_err(|_| TokenError::Introspection)
    }
}
