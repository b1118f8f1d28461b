//! Throwaway PostgreSQL server for integration tests (the store's PostgreSQL backend).
//!
//! Starts a private cluster from the machine's binaries (`/usr/lib/postgresql/<ver>/bin/initdb` + `pg_ctl`,
//! or `$PG_BIN`), in a temp directory, on a free 127.0.0.1 port, with `fsync=off`, trust auth and the `C`
//! locale. When the tests run as root the cluster runs as the unprivileged `postgres` system user (created
//! when missing) via `runuser`. Each test gets its own fresh database ([`fresh_database_url`]).
//!
//! Availability rules: under `CI=true` a server that cannot start is a test FAILURE (panic), never a skip;
//! locally, missing binaries make the PostgreSQL half of each test skip with a loud message.
//!
//! Lifetime: a [`PgServer`] stops its cluster and removes its directory on drop. The process-wide shared
//! server ([`shared`]) lives in a `static` (never dropped), so it also starts a watchdog shell that stops the
//! cluster as soon as the test process exits.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// A running throwaway PostgreSQL cluster.
pub struct PgServer {
    /// Temp root (holds `data/`, the socket and the log).
    root: PathBuf,
    /// Directory of `pg_ctl`/`initdb`.
    bin: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    /// `Some("postgres")` when commands must run via `runuser`.
    run_as: Option<String>,
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn find_bin() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("PG_BIN") {
        let p = PathBuf::from(p);
        if p.join("initdb").exists() {
            return Some(p);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn user_ids(user: &str) -> Option<(u32, u32)> {
    let uid = Command::new("id").args(["-u", user]).output().ok()?;
    let gid = Command::new("id").args(["-g", user]).output().ok()?;
    if !uid.status.success() || !gid.status.success() {
        return None;
    }
    Some((
        String::from_utf8_lossy(&uid.stdout).trim().parse().ok()?,
        String::from_utf8_lossy(&gid.stdout).trim().parse().ok()?,
    ))
}

impl PgServer {
    fn cmd(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(u) => {
                let mut c = Command::new("runuser");
                c.args(["-u", u, "--"]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Starts a new cluster. Errors: a description of what failed (binaries missing, initdb/pg_ctl output).
    pub fn start() -> Result<PgServer, String> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = find_bin().ok_or("no PostgreSQL binaries (looked in $PG_BIN and /usr/lib/postgresql/*/bin)")?;
        let run_as = if is_root() {
            if user_ids("postgres").is_none() {
                let _ = Command::new("useradd").args(["--system", "--no-create-home", "postgres"]).status();
            }
            Some("postgres".to_string())
        } else {
            None
        };
        let root = std::env::temp_dir().join(format!(
            "tobiume-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).map_err(|e| format!("create {}: {e}", root.display()))?;
        if let Some(u) = &run_as {
            let (uid, gid) = user_ids(u).ok_or("cannot resolve the postgres system user")?;
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).map_err(|e| format!("chown: {e}"))?;
        }
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let server = PgServer { root, bin, port, run_as };
        let data = server.root.join("data");
        let out = server
            .cmd(&server.bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=400 -c shared_buffers=128MB",
            server.root.display()
        );
        let out = server
            .cmd(&server.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(server.root.join("log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(server.root.join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(server)
    }

    /// `postgres://postgres@127.0.0.1:PORT/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Stops the cluster when the process `pid` exits (for the never-dropped shared server).
    fn watchdog(&self, pid: u32) {
        let stop = format!(
            "{} {} -D {} stop -m immediate",
            if self.run_as.is_some() { "runuser -u postgres --" } else { "" },
            self.bin.join("pg_ctl").display(),
            self.root.join("data").display()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {}",
            self.root.display()
        );
        let _ = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let _ = self
            .cmd(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.root.join("data"))
            .args(["stop", "-m", "immediate"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The process-wide server, started on first use. `None` (after a loud message) when PostgreSQL is not
/// available locally; panics under `CI=true` instead.
pub fn shared() -> Option<&'static PgServer> {
    static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();
    SERVER
        .get_or_init(|| match PgServer::start() {
            Ok(s) => {
                s.watchdog(std::process::id());
                Some(s)
            }
            Err(e) => {
                if std::env::var("CI").map(|v| v == "true" || v == "1").unwrap_or(false) {
                    panic!("CI=true but the PostgreSQL test server could not start: {e}");
                }
                eprintln!(
                    "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                     !!! SKIPPING PostgreSQL store tests: server could not start: {e}\n\
                     !!! (install the `postgresql` package; under CI=true this is a failure)\n\
                     !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
                );
                None
            }
        })
        .as_ref()
}

/// Creates a fresh empty database on the shared server and returns its URL; `None` when PostgreSQL is
/// unavailable locally (see [`shared`]).
pub async fn fresh_database_url() -> Option<String> {
    use sqlx::Connection;
    static N: AtomicUsize = AtomicUsize::new(0);
    let server = tokio::task::spawn_blocking(shared).await.ok()??;
    let name = format!("t{}_{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let mut conn = sqlx::PgConnection::connect(&server.url("postgres")).await.expect("connect to test server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.expect("create db");
    let _ = conn.close().await;
    Some(server.url(&name))
}
