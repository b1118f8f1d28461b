//! The one configuration struct of the gateway: defaults ← TOML file (`--config FILE`) ← `TOBIUME_*`
//! environment variables ← command-line flags (later wins). Every field and its default is listed in
//! the README ("Configuration").

use serde::Deserialize;
use std::path::{Path, PathBuf};

use crate::auth::{AuthMode, AuthSettings, IssuerSettings};

/// Gateway configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listen address (`TOBIUME_LISTEN`), default `127.0.0.1:8080`.
    pub listen: String,
    /// Database URL (`TOBIUME_DATABASE`): `sqlite://FILE?mode=rwc` (default `sqlite://tobiume.db?mode=rwc`,
    /// in the working directory) or `postgres://user@host:port/db`.
    pub database: String,
    /// Public base URL of the FHIR endpoint used in links and `Location` (`TOBIUME_BASE_URL`); default
    /// `http://<listen>/fhir`.
    pub base_url: Option<String>,
    /// Synthetic demo patients imported at start when the store holds no Patient (`TOBIUME_DEMO_PATIENTS`),
    /// default 20; 0 disables the demo data.
    pub demo_patients: usize,
    /// Largest accepted request body in bytes (`TOBIUME_MAX_BODY_BYTES`), default 16 MiB.
    pub max_body_bytes: usize,
    /// Log filter in `tracing` env-filter syntax (`TOBIUME_LOG`), default `info`.
    pub log: String,
    /// Authentication (`[auth]` table; `TOBIUME_AUTH`, `TOBIUME_DEV_KEY`, `TOBIUME_AUTH_ISSUERS`).
    pub auth: AuthSettings,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            database: "sqlite://tobiume.db?mode=rwc".into(),
            base_url: None,
            demo_patients: 20,
            max_body_bytes: 16 * 1024 * 1024,
            log: "info".into(),
            auth: AuthSettings::default(),
        }
    }
}

/// Errors loading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config file {0}: {1}")]
    Read(String, std::io::Error),
    /// The file is not valid TOML for [`Config`] (unknown keys are errors).
    #[error("invalid config file {0}: {1}")]
    Parse(String, String),
    /// An environment variable has an invalid value.
    #[error("invalid value for {0}: {1}")]
    Env(&'static str, String),
}

impl Config {
    /// Loads defaults, then `file` (if any), then `TOBIUME_*` variables from `env`.
    /// Errors: [`ConfigError`].
    pub fn load(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::Read(p.display().to_string(), e))?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse(p.display().to_string(), e.to_string()))?
            }
            None => Config::default(),
        };
        if let Some(v) = env("TOBIUME_LISTEN") {
            c.listen = v;
        }
        if let Some(v) = env("TOBIUME_DATABASE") {
            c.database = v;
        }
        if let Some(v) = env("TOBIUME_BASE_URL") {
            c.base_url = Some(v);
        }
        if let Some(v) = env("TOBIUME_DEMO_PATIENTS") {
            c.demo_patients = v.parse().map_err(|_| ConfigError::Env("TOBIUME_DEMO_PATIENTS", v))?;
        }
        if let Some(v) = env("TOBIUME_MAX_BODY_BYTES") {
            c.max_body_bytes = v.parse().map_err(|_| ConfigError::Env("TOBIUME_MAX_BODY_BYTES", v))?;
        }
        if let Some(v) = env("TOBIUME_LOG") {
            c.log = v;
        }
        if let Some(v) = env("TOBIUME_AUTH") {
            c.auth.mode = AuthMode::parse(&v).ok_or(ConfigError::Env("TOBIUME_AUTH", v))?;
        }
        if let Some(v) = env("TOBIUME_DEV_KEY") {
            c.auth.dev_key = PathBuf::from(v);
        }
        if let Some(v) = env("TOBIUME_AUTH_ISSUERS").filter(|v| !v.trim().is_empty()) {
            // JSON array of issuer objects (same keys as [[auth.issuers]]), added to the file's issuers.
            let more: Vec<IssuerSettings> =
                serde_json::from_str(&v).map_err(|e| ConfigError::Env("TOBIUME_AUTH_ISSUERS", e.to_string()))?;
            c.auth.issuers.extend(more);
        }
        Ok(c)
    }

    /// The base URL, defaulting to `http://<listen>/fhir`.
    pub fn base_url(&self) -> String {
        self.base_url.clone().unwrap_or_else(|| format!("http://{}/fhir", self.listen))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_file_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "listen = \"0.0.0.0:9000\"\ndemo_patients = 3\n").unwrap();
        let c = Config::load(Some(&p), |k| (k == "TOBIUME_DEMO_PATIENTS").then(|| "5".to_string())).unwrap();
        assert_eq!(c.listen, "0.0.0.0:9000");
        assert_eq!(c.demo_patients, 5);
        assert_eq!(c.database, Config::default().database);
        std::fs::write(&p, "bogus = 1\n").unwrap();
        assert!(Config::load(Some(&p), |_| None).is_err());
    }

    #[test]
    fn auth_settings_from_file_and_env() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "[auth]\nmode = \"dev\"\nleeway_seconds = 5\n[[auth.issuers]]\nissuer = \"https://idp\"\naudience = \"https://gw/fhir\"\njwks_url = \"https://idp/jwks\"\n",
        )
        .unwrap();
        let env = |k: &str| match k {
            "TOBIUME_AUTH" => Some("JWT".to_string()),
            "TOBIUME_DEV_KEY" => Some("/tmp/k.pem".to_string()),
            "TOBIUME_AUTH_ISSUERS" => Some(r#"[{"issuer": "https://idp2", "keys": ["a.pem"], "audience": ["x", "y"]}]"#.to_string()),
            _ => None,
        };
        let c = Config::load(Some(&p), env).unwrap();
        assert_eq!(c.auth.mode, AuthMode::Jwt);
        assert_eq!(c.auth.leeway_seconds, 5);
        assert_eq!(c.auth.dev_key, PathBuf::from("/tmp/k.pem"));
        assert_eq!(c.auth.issuers.len(), 2);
        assert_eq!(c.auth.issuers[0].audience, ["https://gw/fhir"]);
        assert_eq!(c.auth.issuers[1].audience, ["x", "y"]);
        assert_eq!(c.auth.issuers[1].keys, [PathBuf::from("a.pem")]);
        assert!(Config::load(None, |k| (k == "TOBIUME_AUTH").then(|| "open".to_string())).is_err());
        assert!(Config::load(None, |k| (k == "TOBIUME_AUTH_ISSUERS").then(|| "{".to_string())).is_err());
    }
}
