//! `tobiume-gateway` command line: `serve`, `convert ssmix2`, `import ssmix2`, `synth ssmix2`, `register json`,
//! `register receipt-csv`, `dev-token`, `audit verify|report|purge`.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tobiume_gateway::config::Config;
use tobiume_gateway::hl7v2::Charset;
use tobiume_gateway::import::{import_ssmix2, ImportOptions};
use tobiume_gateway::mapping::ssmix2::convert::{convert_patient, ConvertOptions, FileStatus, IdentityMode, Summary};
use tobiume_gateway::auth::dev::{DevKey, DevTokenRequest, DEMO_FACILITY_ID};
use tobiume_gateway::auth::{AuthError, AuthMode, Authenticator};
use tobiume_gateway::{api, search, ssmix2, store};

#[derive(Parser)]
#[command(name = "tobiume-gateway", version, about = "FHIR R4 (JP Core) gateway for Japanese regional health information networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server (`/fhir`); with an empty embedded store it imports synthetic demo patients.
    Serve {
        /// Listen address [env: TOBIUME_LISTEN] (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Database URL: sqlite://FILE?mode=rwc or postgres://… [env: TOBIUME_DATABASE].
        #[arg(long)]
        database: Option<String>,
        /// TOML configuration file (see README "Configuration").
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Convert SS-MIX2 data to FHIR R4 NDJSON.
    Convert {
        #[command(subcommand)]
        source: ConvertSource,
    },
    /// Import SS-MIX2 data into the store (idempotent, resumable).
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Liveness probe for containers: GET /health on the local server; exit 0 when it answers 200.
    Health {
        /// Address of the server [env: TOBIUME_LISTEN] (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Generate synthetic SS-MIX2 data (templated from a real sample) for demos and benchmarks.
    Synth {
        #[command(subcommand)]
        source: SynthSource,
    },
    /// Register patients' basic information (患者基本情報): the simple registration JSON, or a
    /// receipt-derived CSV of diagnoses and drugs merged into existing registrations.
    Register {
        #[command(subcommand)]
        source: RegisterSource,
    },
    /// Mint an access token signed by the development key (for `serve` with TOBIUME_AUTH=dev): prints the
    /// JWT (issuer tobiume-dev, audience tobiume-dev) on stdout. The key file is generated if absent.
    DevToken {
        /// Dev signing key, PKCS#8 PEM [env: TOBIUME_DEV_KEY] (default tobiume-dev-key.pem).
        #[arg(long)]
        key: Option<PathBuf>,
        /// Space-separated SMART scopes, e.g. "user/*.cruds" or "patient/*.rs".
        #[arg(long)]
        scope: String,
        /// The caller's facility: logical id of an Organization.
        #[arg(long)]
        facility: Option<String>,
        /// Patient context (logical id) for patient/ scopes.
        #[arg(long)]
        patient: Option<String>,
        /// Purpose of use (v3-ActReason code: TREAT, ETREAT, BTG …).
        #[arg(long)]
        purpose: Option<String>,
        /// Reason stated for an emergency override.
        #[arg(long)]
        reason: Option<String>,
        /// Network roles, comma-separated: emergency, secretariat.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Subject (sub).
        #[arg(long, default_value = "dev-user")]
        subject: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
    },
    /// Validate FHIR resources (JSON, one resource or Bundle per file; `.ndjson`: one per line) against
    /// the R4 base definitions and their meta.profile / --profile (JSON schema first, then the profile
    /// validator over profiles/). Prints one OperationOutcome per resource (stdout, JSON lines: {"file",
    /// "line"?, "valid", "outcome"}), then a summary on stderr. Exit 0 = all valid, 1 = some invalid or
    /// unreadable, 2 = the profiles could not be loaded.
    Validate {
        /// Files to validate.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also validate against this profile (canonical URL; repeatable).
        #[arg(long)]
        profile: Vec<String>,
    },
    /// Print the OpenAPI 3.0 description of the FHIR REST API (JSON on stdout), generated from the
    /// router's interactions and the search parameters; for API tools and fuzzers (schemathesis).
    Openapi {
        /// FHIR base URL written into `servers` (default http://127.0.0.1:8080/fhir).
        #[arg(long, default_value = "http://127.0.0.1:8080/fhir")]
        base_url: String,
    },
    /// The tamper-evident audit trail: verify the hash chain, report break-the-glass accesses, purge
    /// records past retention.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain; exit 0 intact, 1 broken (names the first broken record), 2 unreadable.
    Verify {
        /// Database URL [env: TOBIUME_DATABASE].
        #[arg(long)]
        database: Option<String>,
    },
    /// Secretariat report: one JSON line per emergency override (break-the-glass) since --since.
    Report {
        /// List emergency overrides (DICOM 110127) — the report this command produces.
        #[arg(long, required = true)]
        break_the_glass: bool,
        /// Start date or instant (default: 30 days ago).
        #[arg(long)]
        since: Option<String>,
        /// Database URL [env: TOBIUME_DATABASE].
        #[arg(long)]
        database: Option<String>,
    },
    /// Delete records older than the retention period, leaving a checkpoint so the chain still verifies.
    Purge {
        /// Retention in days [env: TOBIUME_AUDIT_RETENTION_DAYS] (default 1826 = 5 years).
        #[arg(long)]
        retention_days: Option<u32>,
        /// Database URL [env: TOBIUME_DATABASE].
        #[arg(long)]
        database: Option<String>,
    },
}

#[derive(Subcommand)]
enum RegisterSource {
    /// One simple registration JSON file (conformance/registration.schema.json) → the store, like
    /// POST /fhir/Patient/$register (de-duplicated; one transaction). Prints a JSON summary line.
    /// Exit 0 = registered, 1 = invalid file or store failure (issues with JSON paths on stderr).
    Json {
        /// The registration JSON file.
        file: PathBuf,
        /// Database URL [env: TOBIUME_DATABASE] (default sqlite://tobiume.db?mode=rwc).
        #[arg(long)]
        database: Option<String>,
    },
    /// A receipt CSV (card_id / name_kana / birth_date / kind 病名|薬剤 / code_system / code / name /
    /// start_date / source; UTF-8 or Shift_JIS) merged into existing registrations; no patient is
    /// created. One JSON line per rejected row on stderr, then a summary line.
    /// Exit 0 = every row applied or already present, 2 = some rows failed, 1 = unreadable file/header
    /// or store failure.
    ReceiptCsv {
        /// The CSV file.
        file: PathBuf,
        /// Database URL [env: TOBIUME_DATABASE] (default sqlite://tobiume.db?mode=rwc).
        #[arg(long)]
        database: Option<String>,
        /// Item date of the new items, YYYY-MM-DD (default: today in Japan).
        #[arg(long)]
        date: Option<String>,
    },
}

#[derive(clap::Args, Clone)]
struct SourceArgs {
    /// SS-MIX2 storage root, one patient's directory inside a root, or one file.
    path: PathBuf,
    /// What to do when a file's PID disagrees with its storage directory.
    #[arg(long, value_enum, default_value_t = Identity::Lenient)]
    identity: Identity,
    /// Charset override (auto = trust MSH-18): auto, iso-2022-jp, utf-8, shift_jis.
    #[arg(long, default_value = "auto")]
    charset: String,
    /// 10-digit 医療機関コード of the source facility (prefixes ids; JP Core identifier systems).
    #[arg(long)]
    facility: Option<String>,
}

#[derive(Subcommand)]
enum ConvertSource {
    /// SS-MIX2 standardized storage → NDJSON (one FHIR resource per line).
    Ssmix2 {
        #[command(flatten)]
        args: SourceArgs,
        /// Write NDJSON here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ImportSource {
    /// SS-MIX2 standardized storage → the store.
    Ssmix2 {
        #[command(flatten)]
        args: SourceArgs,
        /// Database URL [env: TOBIUME_DATABASE] (default sqlite://tobiume.db?mode=rwc).
        #[arg(long)]
        database: Option<String>,
        /// Directory for failed files and their JSON report (default ./quarantine).
        #[arg(long, default_value = "quarantine")]
        quarantine: PathBuf,
        /// Files per database transaction.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Conversion worker threads [env: TOBIUME_IMPORT_JOBS] (default: the available cores).
        #[arg(long)]
        jobs: Option<usize>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
}

#[derive(Subcommand)]
enum SynthSource {
    /// Write a synthetic SS-MIX2 storage tree.
    Ssmix2 {
        /// Output storage root.
        out: PathBuf,
        /// Number of patients (each gets one file per data type of the real sample).
        #[arg(long, default_value_t = 100)]
        patients: usize,
        /// PRNG seed (same seed → same data).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Index of the first patient: `--first 20000 --patients 20000` writes patients 20000..39999 of the
        /// same seed (a large corpus generated and imported in chunks, bench/server.sh).
        #[arg(long, default_value_t = 0)]
        first: usize,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Identity {
    Lenient,
    Strict,
}

fn convert_options(a: &SourceArgs) -> Result<ConvertOptions, String> {
    let charset = Charset::from_name(&a.charset).ok_or_else(|| format!("unknown charset {:?}", a.charset))?;
    if let Some(f) = &a.facility {
        if f.len() != 10 || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err("--facility must be a 10-digit 医療機関コード".into());
        }
    }
    Ok(ConvertOptions {
        charset,
        identity: match a.identity {
            Identity::Lenient => IdentityMode::Lenient,
            Identity::Strict => IdentityMode::Strict,
        },
        facility_code: a.facility.clone(),
        hash_content: false,
    })
}

/// `serve` only, glibc: SQLite allocates its page caches with the C `malloc`, not the Rust allocator. In
/// WAL mode every commit (one per audit group commit, i.e. hundreds per second under read load) makes each
/// read connection drop its page cache on its next statement; glibc then trims the freed heap top back to
/// the kernel and the next read faults the same memory in again, zeroed — page faults and `sysmalloc`
/// under `pcache1Alloc` in the read profile. A 64 MiB trim threshold keeps that memory for reuse (same-run
/// A/B, 5,000 patients: 69.7 → 53.5 µs server CPU per read, RSS +4 MB); the caches stay bounded by their
/// `cache_size`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_c_heap() {
    // SAFETY: mallopt only sets a malloc tuning parameter; called before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_c_heap() {}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (`include/mimalloc.h` of the v3 sources bundled
/// by libmimalloc-sys, whose Rust bindings expose options only with a feature this build does not enable;
/// the test `mimalloc_purge_delay_option_index` checks the index against v3's documented default).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    #[cfg(test)]
    fn mi_option_get(option: std::ffi::c_int) -> std::ffi::c_long;
}

/// `serve` only: mimalloc (the Rust global allocator, `lib.rs`) returns the pages it frees to the kernel at
/// once instead of after its default delay of 1,000 ms (`mi_option_purge_delay`, mimalloc v3). mimalloc
/// purges lazily, when the freeing thread next calls into it: the start-up garbage — the profile
/// validator's package load and warm-up (`validation::warm_up_in_background`, a thread that then exits),
/// the JSON schema, the CapabilityStatement — was never purged, so an idle server kept ≈25 MB of freed
/// heap and the start-up peak (VmHWM) reached ≈255 MB while the load replaced freed pages by fresh ones.
/// Measured on an empty store: VmHWM 258 → 152 MB, VmRSS after start 176 → 151 MB (anonymous 149 →
/// 124 MB); under search load (5,000 patients, same store, alternated) RSS max 187/196 → 170/178 MB with
/// server CPU per search unchanged within the noise. Freed pages of a busy thread are reused from its page
/// queues before any purge, so request handling does not pay a system call per request.
fn purge_freed_heap_at_once() {
    // SAFETY: mi_option_set only stores an option value; mimalloc reads it on its next purge decision.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Convert { source: ConvertSource::Ssmix2 { args, out } } => convert(&args, out),
        Command::Synth { source: SynthSource::Ssmix2 { out, patients, seed, first } } => {
            match ssmix2::synth::generate_range(&out, first, patients, seed) {
                Ok(s) => {
                    eprintln!("wrote {} patients, {} files to {}", s.patients, s.files, out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Import { source: ImportSource::Ssmix2 { args, database, quarantine, batch, jobs, quiet } } => {
            runtime().block_on(import(args, database, quarantine, batch, jobs.unwrap_or(0), quiet))
        }
        Command::Serve { listen, database, config } => {
            keep_freed_c_heap();
            purge_freed_heap_at_once();
            runtime().block_on(serve(listen, database, config))
        }
        Command::Health { listen } => health(listen),
        Command::Register { source } => runtime().block_on(register(source)),
        Command::Validate { files, profile } => validate_files(&files, &profile),
        Command::Audit { action } => runtime().block_on(audit(action)),
        Command::Openapi { base_url } => {
            let doc = tobiume_gateway::api::openapi::openapi(&tobiume_gateway::search::Registry::standard(), &base_url);
            use std::io::Write as _;
            // A closed pipe (`| head`) is not an error worth a panic.
            match writeln!(std::io::stdout().lock(), "{doc:#}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::DevToken { key, scope, facility, patient, purpose, reason, roles, subject, expires_in } => {
            let req = DevTokenRequest {
                subject,
                scope,
                facility,
                patient,
                purpose_of_use: purpose,
                reason,
                roles: roles.into_iter().map(|r| r.trim().to_string()).filter(|r| !r.is_empty()).collect(),
                expires_in,
                ..DevTokenRequest::default()
            };
            dev_token(key, &req)
        }
    }
}

/// `dev-token`: see the subcommand's doc. Exit 0 = token printed, 1 = key unusable.
fn dev_token(key: Option<PathBuf>, req: &DevTokenRequest) -> ExitCode {
    let path = match key {
        Some(k) => k,
        None => match load_config(None) {
            Ok(c) => c.auth.dev_key,
            Err(code) => return code,
        },
    };
    if let Some(bad) = req.roles.iter().find(|r| !matches!(r.as_str(), "emergency" | "secretariat")) {
        eprintln!("error: unknown role {bad:?} (known: emergency, secretariat)");
        return ExitCode::from(1);
    }
    let key = match DevKey::load_or_generate(&path) {
        Ok((k, generated)) => {
            if generated {
                eprintln!("generated dev key {}", path.display());
            }
            k
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    match key.mint(req) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot sign the token: {e}");
            ExitCode::from(1)
        }
    }
}

/// Whether `listen` (`host:port`) is a loopback address (127.0.0.0/8, ::1, `localhost`).
fn is_loopback(listen: &str) -> bool {
    if let Ok(a) = listen.parse::<std::net::SocketAddr>() {
        return a.ip().is_loopback();
    }
    listen.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

/// The authenticator of `serve` from the configuration (see README "Authentication"), plus the dev key
/// in dev mode. Prints why it cannot start.
fn build_authenticator(cfg: &Config, base: &str) -> Result<(Arc<Authenticator>, Option<DevKey>), ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    };
    match cfg.auth.mode {
        AuthMode::None => {
            if !is_loopback(&cfg.listen) {
                return Err(fail(&AuthError::NoneNotLoopback(cfg.listen.clone())));
            }
            eprintln!("################################################################################");
            eprintln!("# WARNING: TOBIUME_AUTH=none — AUTHENTICATION IS DISABLED.                      #");
            eprintln!("# Every request is served without a token, scope or consent check.              #");
            eprintln!("# Allowed only on a loopback address; never use this with real patient data.   #");
            eprintln!("################################################################################");
            tracing::warn!("authentication disabled (TOBIUME_AUTH=none)");
            Ok((Arc::new(Authenticator::disabled()), None))
        }
        AuthMode::Dev => {
            let (key, generated) = DevKey::load_or_generate(&cfg.auth.dev_key).map_err(|e| fail(&AuthError::DevKey(e)))?;
            eprintln!(
                "auth: dev mode — trusting tokens signed by {} ({}; issuer {}), mint more with `tobiume-gateway dev-token --key {} --scope …`",
                cfg.auth.dev_key.display(),
                if generated { "generated now" } else { "existing key" },
                tobiume_gateway::auth::dev::DEV_ISSUER,
                cfg.auth.dev_key.display(),
            );
            let auth = Authenticator::from_settings_with_dev_key(&cfg.auth, base, Some(&key)).map_err(|e| fail(&e))?;
            Ok((Arc::new(auth), Some(key)))
        }
        AuthMode::Jwt => {
            let auth = Authenticator::from_settings(&cfg.auth, base).map_err(|e| fail(&e))?;
            eprintln!("auth: JWT access tokens from {}", auth.issuers().join(", "));
            Ok((Arc::new(auth), None))
        }
    }
}

/// `validate FILE… [--profile URL]`: see the subcommand's doc. Output lines carry no resource content,
/// only the OperationOutcome (diagnostics never echo names or birth dates).
fn validate_files(files: &[PathBuf], profiles: &[String]) -> ExitCode {
    use std::io::Write;
    if let Err(e) = tobiume_gateway::validation::global() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let (mut valid, mut invalid) = (0usize, 0usize);
    let mut out = std::io::stdout().lock();
    let mut report = |file: &PathBuf, line: Option<usize>, v: Result<serde_json::Value, String>| {
        let (ok, outcome) = match v {
            Ok(res) => {
                let issues = tobiume_gateway::validation::validate(&res, profiles);
                (tobiume_gateway::validation::is_valid(&issues), tobiume_gateway::validation::operation_outcome(&issues))
            }
            Err(e) => (
                false,
                serde_json::json!({"resourceType": "OperationOutcome", "issue": [
                    {"severity": "fatal", "code": "structure", "diagnostics": e}]}),
            ),
        };
        if ok { valid += 1 } else { invalid += 1 }
        let mut rec = serde_json::json!({"file": file.display().to_string(), "valid": ok, "outcome": outcome});
        if let Some(l) = line {
            rec["line"] = serde_json::json!(l);
        }
        let _ = writeln!(out, "{rec}");
    };
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                report(f, None, Err(format!("cannot read file: {e}")));
                continue;
            }
        };
        if f.extension().is_some_and(|x| x == "ndjson") {
            for (i, l) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                report(f, Some(i + 1), serde_json::from_str(l).map_err(|e| format!("invalid JSON: {e}")));
            }
        } else {
            let t = text.strip_prefix('\u{feff}').unwrap_or(&text);
            report(f, None, serde_json::from_str(t).map_err(|e| format!("invalid JSON: {e}")));
        }
    }
    eprintln!("{{\"valid\":{valid},\"invalid\":{invalid}}}");
    if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime")
}

/// `convert ssmix2`: NDJSON to stdout/--out, one JSON error object per failed file on stderr, then a
/// summary line. Exit 0 = all converted, 2 = some failed, 1 = PATH unreadable.
fn convert(args: &SourceArgs, out: Option<PathBuf>) -> ExitCode {
    let opts = match convert_options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    if !args.path.exists() {
        eprintln!("{}", serde_json::json!({"error": "cannot read PATH", "path": args.path}));
        return ExitCode::from(1);
    }
    let sink: Box<dyn Write> = match &out {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", p.display());
                return ExitCode::from(1);
            }
        },
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 16, sink);
    let mut summary = Summary::default();
    let stderr = std::io::stderr();
    let mut walk = ssmix2::walk_patients(&args.path);
    for patient in walk.by_ref() {
        match patient {
            Err(e) => {
                summary.files += 1;
                summary.failed += 1;
                let _ = writeln!(stderr.lock(), "{}", serde_json::json!({"file": e.path(), "error": e.to_string(), "location": "file name"}));
            }
            Ok(p) => {
                for r in convert_patient(&p, &opts) {
                    summary.add(&r);
                    match &r.status {
                        FileStatus::Converted => {
                            for res in &r.resources {
                                if serde_json::to_writer(&mut w, res).is_err() || w.write_all(b"\n").is_err() {
                                    eprintln!("error: cannot write output");
                                    return ExitCode::from(1);
                                }
                            }
                            for warn in &r.warnings {
                                let _ = writeln!(
                                    stderr.lock(),
                                    "{}",
                                    serde_json::json!({"file": r.path, "data_type": r.data_type, "warning": warn})
                                );
                            }
                        }
                        FileStatus::Failed(err) => {
                            let _ = writeln!(stderr.lock(), "{}", serde_json::to_string(err).unwrap_or_default());
                        }
                        FileStatus::Superseded | FileStatus::Deleted | FileStatus::Unchanged => {}
                    }
                }
            }
        }
    }
    if w.flush().is_err() {
        eprintln!("error: cannot write output");
        return ExitCode::from(1);
    }
    if summary.files == 0 && walk.level().is_none() {
        eprintln!("{}", serde_json::json!({"error": "cannot read PATH as an SS-MIX2 storage", "path": args.path}));
        return ExitCode::from(1);
    }
    eprintln!(
        "summary: files={} converted={} superseded={} deleted={} failed={} warnings={} resources={}",
        summary.files, summary.converted, summary.superseded, summary.deleted, summary.failed, summary.warnings, summary.resources
    );
    if summary.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

async fn import(
    args: SourceArgs,
    database: Option<String>,
    quarantine: PathBuf,
    batch: usize,
    jobs: usize,
    quiet: bool,
) -> ExitCode {
    let opts = match convert_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let cfg = match load_config(None) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let url = database.unwrap_or(cfg.database);
    let store = match store::Store::connect_with_registry(&url, Arc::new(search::Registry::standard())).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open database: {e}");
            return ExitCode::from(1);
        }
    };
    let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} files ({per_sec}) {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let iopts = ImportOptions { convert: opts, quarantine: Some(quarantine.clone()), batch_files: batch.max(1), jobs };
    let started = std::time::Instant::now();
    let result = import_ssmix2(&store, &args.path, &iopts, |s| {
        bar.set_position(s.files);
        if s.failed > 0 {
            bar.set_message(format!("{} failed", s.failed));
        }
    })
    .await;
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            let c = &r.conversion;
            eprintln!(
                "summary: files={} converted={} superseded={} deleted={} failed={} warnings={} skipped_unchanged={} created={} updated={} unchanged={} deleted_resources={} files_per_s={:.0}",
                c.files, c.converted, c.superseded, c.deleted, c.failed, c.warnings, r.unchanged_files,
                r.store.created, r.store.updated, r.store.unchanged, r.store.deleted, c.files as f64 / secs
            );
            if let Some(d) = r.index_build {
                // the bulk load's deferred search indexes, rebuilt at the end (part of the time above)
                eprintln!("index build: {:.1} s", d.as_secs_f64());
            }
            if c.failed > 0 {
                eprintln!("failed files were copied to {} (report.ndjson)", quarantine.display());
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(listen: Option<String>, database: Option<String>, config: Option<PathBuf>) -> ExitCode {
    let mut cfg = match load_config(config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(l) = listen {
        cfg.listen = l;
    }
    if let Some(d) = database {
        cfg.database = d;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
    let base = cfg.base_url();
    let (auth, dev_key) = match build_authenticator(&cfg, &base) {
        Ok(a) => a,
        Err(code) => return code,
    };
    {
        let auth = auth.clone();
        tokio::spawn(async move { auth.warm_up().await });
    }

    let registry = Arc::new(search::Registry::standard());
    let store = match store::Store::connect_with_registry(&cfg.database, registry.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open database: {e}");
            return ExitCode::from(1);
        }
    };
    match store.repair_bulk_load().await {
        Ok(true) => tracing::warn!("an interrupted import left search indexes missing; rebuilt them"),
        Ok(false) => {}
        Err(e) => eprintln!("warning: could not rebuild the search indexes of an interrupted import: {e}"),
    }
    if let Err(e) = demo_data(&store, &cfg).await {
        eprintln!("warning: demo data not loaded: {e}");
    }
    let listener = match tokio::net::TcpListener::bind(&cfg.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", cfg.listen);
            return ExitCode::from(1);
        }
    };
    let api_cfg = api::ApiConfig { base_url: base.clone(), max_body_bytes: cfg.max_body_bytes, auth, ..api::ApiConfig::default() };
    let state_store = Arc::new(store);
    let state = api::AppState::new(state_store.clone(), registry, api_cfg);
    let app = api::router(state);
    eprintln!("tobiume-gateway listening on http://{} (FHIR base {base})", cfg.listen);
    let token = dev_key.as_ref().and_then(|k| {
        let req = DevTokenRequest {
            scope: "user/*.cruds".into(),
            facility: Some(DEMO_FACILITY_ID.into()),
            purpose_of_use: Some("TREAT".into()),
            expires_in: 24 * 3600,
            ..DevTokenRequest::default()
        };
        k.mint(&req).ok()
    });
    print_examples(&state_store, &base, cfg.auth.mode, token.as_deref()).await;
    // Graceful shutdown on SIGINT (Ctrl-C) and SIGTERM (docker stop, systemd, Kubernetes).
    let shutdown = async {
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    match axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: server failed: {e}");
            ExitCode::from(1)
        }
    }
}

/// Demo mode: an empty store gets `demo_patients` synthetic SS-MIX2 patients (generated by the
/// gateway itself, no external files) imported at start.
async fn demo_data(store: &store::Store, cfg: &Config) -> Result<(), String> {
    use tobiume_gateway::store::ResourceStore;
    if cfg.demo_patients == 0 {
        return Ok(());
    }
    let reg = store.registry().clone();
    let q = search::query::parse(&reg, "Patient", &[("_count".into(), "1".into())]).map_err(|e| e.to_string())?;
    if !store.search_ids(&q, 1).await.map_err(|e| e.to_string())?.is_empty() {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("tobiume-demo-{}", std::process::id()));
    let stats = ssmix2::synth::generate(&dir, cfg.demo_patients, 2026).map_err(|e| e.to_string())?;
    let opts = ImportOptions { quarantine: None, ..ImportOptions::default() };
    let r = import_ssmix2(store, &dir, &opts, |_| {}).await.map_err(|e| e.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    // The (fictitious) hospital the demo patients attend: the facility of the demo token (dev mode).
    let org = serde_json::json!({
        "resourceType": "Organization",
        "id": DEMO_FACILITY_ID,
        "identifier": [{"system": "http://jpfhir.jp/fhir/core/IdSystem/insurance-medical-institution-no", "value": "4019999999"}],
        "active": true,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]}],
        "name": "とびうめデモ病院（合成データ）"
    });
    store.update_raw("Organization", DEMO_FACILITY_ID, &org.to_string(), None).await.map_err(|e| e.to_string())?;
    eprintln!(
        "demo data: {} synthetic patients, {} SS-MIX2 files → {} resources",
        stats.patients, stats.files, r.store.created
    );
    // Consents so the demo facility sees the demo patients (tobiume_gateway::consent::demo).
    let c = tobiume_gateway::consent::demo::seed(store, cfg.demo_patients).await.map_err(|e| e.to_string())?;
    eprintln!(
        "demo consents: {} blanket, 1 per-facility for Organization/{DEMO_FACILITY_ID}, 1 withdrawn (that patient answers 403)",
        c.blanket
    );
    Ok(())
}

/// Prints example `curl` calls; in dev mode with a demo token (scope `user/*.cruds`, facility
/// [`DEMO_FACILITY_ID`], 24 h).
///
/// Concrete values (id, kana name, birth date) come only from a **synthetic demo patient** — the
/// patient of a demo Consent, which `demo_data` writes only into an empty store — never from a patient
/// of an import: the console output is a log, and logs carry no PHI. Otherwise the examples show
/// placeholders.
async fn print_examples(store: &store::Store, base: &str, mode: AuthMode, token: Option<&str>) {
    let auth = match (mode, token) {
        (AuthMode::None, _) => "",
        (_, Some(t)) => {
            eprintln!("demo token (dev key; scope user/*.cruds, facility Organization/{DEMO_FACILITY_ID}, 24 h):");
            eprintln!("  export TOKEN={t}");
            " -H \"Authorization: Bearer $TOKEN\""
        }
        (_, None) => {
            eprintln!("requests need an access token from the configured issuer: export TOKEN=…");
            " -H \"Authorization: Bearer $TOKEN\""
        }
    };
    eprintln!("try:");
    eprintln!("  curl -s {base}/metadata | head -c 300");
    let demo = demo_example_patient(store).await;
    let (id, kana, birth) = match &demo {
        Some(p) => {
            let kana = p["name"]
                .as_array()
                .and_then(|n| n.iter().find(|n| n["extension"][0]["valueCode"] == "SYL"))
                .and_then(|n| n["family"].as_str())
                .unwrap_or_default();
            (p["id"].as_str().unwrap_or_default().to_string(), pct(kana), p["birthDate"].as_str().unwrap_or_default().to_string())
        }
        None => ("{id}".to_string(), "{kana family name}".to_string(), "{YYYY-MM-DD}".to_string()),
    };
    eprintln!("  curl -s{auth} '{base}/Patient?name={kana}&birthdate={birth}'   # kana family name + birth date");
    eprintln!("  curl -s{auth} '{base}/Patient/{id}'");
    eprintln!("  curl -s{auth} '{base}/Patient/{id}/$summary?mode=emergency'");
    eprintln!("  curl -s{auth} '{base}/Condition?patient={id}'");
    eprintln!("  curl -s{auth} '{base}/AllergyIntolerance?patient={id}'");
    eprintln!("  curl -s{auth} '{base}/MedicationRequest?patient={id}'");
    eprintln!("  curl -s{auth} '{base}/Observation?patient={id}&category=laboratory&_sort=-date'");
}

/// The Patient of the first active demo Consent (`consent::demo`), i.e. a synthetic demo patient, if the
/// store holds demo data.
async fn demo_example_patient(store: &store::Store) -> Option<serde_json::Value> {
    use tobiume_gateway::store::ResourceStore;
    let reg = store.registry().clone();
    let params = [
        ("organization".to_string(), format!("Organization/{DEMO_FACILITY_ID}")),
        ("status".to_string(), "active".to_string()),
        ("_count".to_string(), "1".to_string()),
    ];
    let q = search::query::parse(&reg, "Consent", &params).ok()?;
    let page = store.search(&q).await.ok()?;
    let consent: serde_json::Value = serde_json::from_str(&page.matches.first()?.json).ok()?;
    if !consent["id"].as_str()?.starts_with("demo-consent-") {
        return None;
    }
    let id = consent["patient"]["reference"].as_str()?.strip_prefix("Patient/")?.to_string();
    serde_json::from_str(&store.read("Patient", &id).await.ok()?.json).ok()
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// `health`: a dependency-free HTTP/1.1 GET /health against the local server (for container health
/// checks). Exit 0 on status 200, 1 otherwise.
fn health(listen: Option<String>) -> ExitCode {
    use std::io::Read;
    let addr = listen
        .or_else(|| std::env::var("TOBIUME_LISTEN").ok())
        .unwrap_or_else(|| "127.0.0.1:8080".into())
        .replace("0.0.0.0", "127.0.0.1");
    let probe = || -> std::io::Result<bool> {
        let sock = addr.parse::<std::net::SocketAddr>().map_err(std::io::Error::other)?;
        let mut s = std::net::TcpStream::connect_timeout(&sock, std::time::Duration::from_secs(2))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
        write!(s, "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf)?;
        Ok(buf[..n].starts_with(b"HTTP/1.1 200"))
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}

/// `register json` / `register receipt-csv` (see [`RegisterSource`]): the same core as
/// `POST /fhir/Patient/$register`, through the API's access layer.
async fn register(source: RegisterSource) -> ExitCode {
    use tobiume_gateway::api::access::RequestContext;
    use tobiume_gateway::api::operation::register as reg;
    use tobiume_gateway::mapping::registration::{receipt, DateTime};
    let (file, database) = match &source {
        RegisterSource::Json { file, database } | RegisterSource::ReceiptCsv { file, database, .. } => {
            (file.clone(), database.clone())
        }
    };
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}", serde_json::json!({"error": format!("cannot read FILE: {}", e.kind()), "path": file}));
            return ExitCode::from(1);
        }
    };
    let cfg = match load_config(None) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let url = database.unwrap_or(cfg.database.clone());
    let registry = Arc::new(search::Registry::standard());
    let store = match store::Store::connect_with_registry(&url, registry.clone()).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: cannot open database: {e}");
            return ExitCode::from(1);
        }
    };
    let api_cfg = api::ApiConfig { base_url: cfg.base_url(), ..api::ApiConfig::default() };
    let state = api::AppState::new(Arc::new(store), registry, api_cfg);
    // The local operator runs with database access anyway: no token, no scope restriction.
    let ctx = RequestContext::local(Some(format!("cli-{}", std::process::id())));
    let print_issues = |e: &api::ApiError| {
        for i in &e.issues {
            eprintln!("{}", serde_json::json!({"error": i.diagnostics, "code": i.code, "expression": i.expression}));
        }
    };
    let code = match source {
        RegisterSource::Json { .. } => {
            let result = match reg::parse_registration(&bytes) {
                Ok(r) => reg::register(&state, &ctx, r).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(out) => {
                    let (c, u, n, d) = out.counts();
                    let status = if out.created {
                        "created"
                    } else if c + u + d == 0 {
                        "unchanged"
                    } else {
                        "updated"
                    };
                    let matched = match &out.matched {
                        reg::MatchedBy::New => serde_json::json!("new"),
                        reg::MatchedBy::CardId => serde_json::json!("card-id"),
                        reg::MatchedBy::Demographics { card_id, .. } => {
                            serde_json::json!({"demographics": card_id.as_str()})
                        }
                    };
                    println!(
                        "{}",
                        serde_json::json!({"patient": format!("Patient/{}", out.patient.id), "version": out.patient.version_id,
                            "status": status, "matched": matched, "created": c, "updated": u, "unchanged": n, "deleted": d})
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    print_issues(&e);
                    ExitCode::from(1)
                }
            }
        }
        RegisterSource::ReceiptCsv { date, .. } => {
            let date = match date {
                Some(d) => match DateTime::new(d).filter(|d| d.as_str().len() == 10) {
                    Some(d) => d,
                    None => {
                        eprintln!("error: --date must be YYYY-MM-DD");
                        return ExitCode::from(1);
                    }
                },
                None => match reg::today_jst() {
                    Some(d) => d,
                    None => {
                        eprintln!("error: cannot tell today's date; give --date");
                        return ExitCode::from(1);
                    }
                },
            };
            let (rows, mut errors) = match receipt::parse(&bytes) {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("{}", serde_json::json!({"error": e.to_string(), "path": file}));
                    return ExitCode::from(1);
                }
            };
            let parsed_rows = rows.len() + errors.len();
            match reg::apply_receipt(&state, &ctx, rows, &date).await {
                Ok(mut report) => {
                    errors.append(&mut report.errors);
                    errors.sort_by_key(|e| e.row);
                    for e in &errors {
                        eprintln!("{}", serde_json::json!({"row": e.row, "error": e.message}));
                    }
                    for w in &report.warnings {
                        eprintln!("{}", serde_json::json!({"row": w.row, "warning": w.message}));
                    }
                    eprintln!(
                        "summary: rows={parsed_rows} main_diagnoses={} history={} prescriptions={} duplicates={} patients_updated={} failed={}",
                        report.main_diagnoses, report.history, report.prescriptions, report.duplicates, report.patients_updated, errors.len()
                    );
                    if errors.is_empty() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(2)
                    }
                }
                Err(e) => {
                    print_issues(&e);
                    ExitCode::from(1)
                }
            }
        }
    };
    state.store.close().await;
    code
}

/// `audit verify|report|purge` (logic in `tobiume_gateway::audit::cli`).
async fn audit(action: AuditAction) -> ExitCode {
    use tobiume_gateway::audit::cli;
    let database = match &action {
        AuditAction::Verify { database } | AuditAction::Report { database, .. } | AuditAction::Purge { database, .. } => {
            database.clone()
        }
    };
    let Ok(cfg) = load_config(None) else { return ExitCode::from(2) };
    let store = match store::Store::connect(&database.unwrap_or(cfg.database)).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let out = match action {
        AuditAction::Verify { .. } => cli::verify_command(&store).await,
        AuditAction::Report { since, .. } => cli::report_command(&store, since.as_deref()).await,
        AuditAction::Purge { retention_days, .. } => cli::purge_command(&store, retention_days).await,
    };
    store.close().await;
    for l in &out.lines {
        println!("{l}");
    }
    ExitCode::from(out.status)
}

/// Loads the configuration (file, then `TOBIUME_*` environment); on error prints it and returns exit
/// status 1 for the caller to return.
fn load_config(file: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(file, |k| std::env::var(k).ok()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Option 15 is mimalloc v3's purge delay: its documented default (1,000 ms; v2's was 10 ms and v2
    /// numbers its options differently), and the value `purge_freed_heap_at_once` sets reads back.
    #[test]
    fn mimalloc_purge_delay_option_index() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return; // the environment overrides the default this test identifies the option by
        }
        // SAFETY: reading/writing a mimalloc option value.
        unsafe {
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), 1000);
            purge_freed_heap_at_once();
            assert_eq!(mi_option_get(MI_OPTION_PURGE_DELAY), 0);
            mi_option_set(MI_OPTION_PURGE_DELAY, 1000);
        }
    }
}
