//! The `tobiume-gateway audit …` commands (the binary parses the arguments and calls these).
//!
//! * `audit verify [--database URL]` — [`verify_command`]: prints `ok: N records (seq a..b)` and exits
//!   0, or `BROKEN: record seq N (AuditEvent/N): reason` and exits 1 (2 when the database cannot be read).
//! * `audit report --break-the-glass [--since DATE] [--database URL]` — [`report_command`]: one JSON line
//!   per emergency override (DICOM 110127) since DATE (default 30 days ago), oldest first.
//! * `audit purge [--retention-days N] [--database URL]` — [`purge_command`]: the retention purge
//!   (default `TOBIUME_AUDIT_RETENTION_DAYS`, 1826 days), keeping the chain verifiable.

use crate::store::Store;

/// Exit status and the text printed on stdout (one line per item).
pub struct CommandOutput {
    /// Process exit status.
    pub status: u8,
    /// Lines for stdout.
    pub lines: Vec<String>,
}

/// `audit verify`. Exit 0 chain intact, 1 broken (the first broken record named), 2 database error.
pub async fn verify_command(store: &Store) -> CommandOutput {
    match super::verify(store).await {
        Ok(r) => match r.broken {
            None => CommandOutput {
                status: 0,
                lines: vec![match r.range {
                    Some((a, b)) => format!("ok: {} records (seq {a}..{b}), chain intact", r.records),
                    None => "ok: 0 records".into(),
                }],
            },
            Some(b) => CommandOutput {
                status: 1,
                lines: vec![format!("BROKEN: record seq {} (AuditEvent/{}): {}", b.seq, b.seq, b.reason)],
            },
        },
        Err(e) => CommandOutput { status: 2, lines: vec![format!("error: {e}")] },
    }
}

/// `audit report --break-the-glass [--since DATE]` (`since`: RFC 3339 or `YYYY-MM-DD`, JST for a date).
/// Exit 0, 2 on a database error or a bad date.
pub async fn report_command(store: &Store, since: Option<&str>) -> CommandOutput {
    let since_ms = match since {
        Some(s) => match crate::consent::model::parse_bound(s, false) {
            Some(ms) => ms,
            None => return CommandOutput { status: 2, lines: vec!["error: --since must be a date or instant".into()] },
        },
        None => super::now_ms() - 30 * 86_400_000,
    };
    match super::report_break_the_glass(store, since_ms).await {
        Ok(entries) => CommandOutput {
            status: 0,
            lines: entries.iter().map(|e| serde_json::to_string(e).unwrap_or_default()).collect(),
        },
        Err(e) => CommandOutput { status: 2, lines: vec![format!("error: {e}")] },
    }
}

/// `audit purge [--retention-days N]`. Exit 0, 2 on a database error.
pub async fn purge_command(store: &Store, retention_days: Option<u32>) -> CommandOutput {
    let days = retention_days.unwrap_or_else(|| super::AuditConfig::default().retention_days);
    match super::purge(store, days, super::now_ms()).await {
        Ok(n) => CommandOutput { status: 0, lines: vec![format!("purged {n} audit records older than {days} days")] },
        Err(e) => CommandOutput { status: 2, lines: vec![format!("error: {e}")] },
    }
}
