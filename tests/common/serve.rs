//! A real `tobiume-gateway serve` child process for black-box tests: SQLite file in a temp dir, a free
//! 127.0.0.1 port, `TOBIUME_AUTH=dev` with the dev key in the same dir, stdout+stderr captured to a log
//! file. Killed (SIGKILL) and reaped on drop; on panic the tail of the log is printed.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT` (the FHIR base is `{base}/fhir`).
    pub base: String,
    /// The captured stdout+stderr.
    pub log: PathBuf,
    /// The dev key the server trusts.
    pub key: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- last lines of {} ---", self.log.display());
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// Starts `serve` (database `dir/NAME.db`, log `dir/NAME.log`, extra environment `envs`, which may
    /// override the defaults `TOBIUME_DEMO_PATIENTS=0`, `TOBIUME_LOG=info`) and waits up to 3 minutes for
    /// `/health`.
    pub fn start(name: &str, dir: &Path, envs: &[(&str, &str)]) -> Server {
        let key = dir.join("tobiume-dev-key.pem");
        for attempt in 0..3 {
            let port = free_port();
            let log = dir.join(format!("{name}-{attempt}.log"));
            let out = std::fs::File::create(&log).unwrap();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"));
            cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--database"])
                .arg(format!("sqlite://{}?mode=rwc", dir.join(format!("{name}.db")).display()))
                .env("TOBIUME_DEMO_PATIENTS", "0")
                .env("TOBIUME_LOG", "info")
                .env("TOBIUME_AUTH", "dev")
                .env("TOBIUME_DEV_KEY", &key)
                .env("NO_COLOR", "1")
                .env_remove("TOBIUME_BASE_URL")
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            for (k, v) in envs {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn tobiume-gateway serve");
            let mut server = Server { child, base: format!("http://127.0.0.1:{port}"), log, key: key.clone() };
            let deadline = Instant::now() + Duration::from_secs(180);
            loop {
                if let Some(status) = server.child.try_wait().unwrap() {
                    let text = server.log_text();
                    if text.contains("cannot listen") || text.contains("in use") {
                        break; // port taken between probe and bind: next attempt
                    }
                    panic!("serve exited with {status}:\n{text}");
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && healthy(port) {
                    return server;
                }
                assert!(Instant::now() < deadline, "serve did not become ready:\n{}", server.log_text());
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!("could not start serve on a free port");
    }

    /// A dev token for this server's key (`dev-token --scope SCOPE ARGS…`).
    pub fn token(&self, scope: &str, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"))
            .args(["dev-token", "--scope", scope, "--key"])
            .arg(&self.key)
            .args(args)
            .output()
            .expect("run dev-token");
        assert!(out.status.success(), "dev-token: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// `true` while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `tobiume-gateway health --listen 127.0.0.1:PORT` (the container probe: exit 0 on `GET /health` 200).
fn healthy(port: u16) -> bool {
    Command::new(env!("CARGO_BIN_EXE_tobiume-gateway"))
        .args(["health", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
