//! `nightdesk status`: what a running nightdesk is doing, read from its store beside it
//! (opened shared, like `approve`): each source's last good poll, lag and last error,
//! the outbox backlog by state, held approvals, quarantined rules and the leases on
//! scheduled work with their holders.
//!
//! It only reads; it never changes what the daemon does. Everything it prints is in
//! the store already and secret-free (error texts are the sources' Display).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{CliError, store_target};
use crate::clock::{Clock, SystemClock};
use crate::store::{self, Lease, RuleQuarantine, SourceHealth, StateCount, Store, StoreError};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum StatusFormat {
    Text,
    Json,
}

/// One source's line.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    #[serde(flatten)]
    pub health: SourceHealth,
    /// The stored watermark: everything updated before it has been read.
    pub watermark: Option<DateTime<Utc>>,
    /// How far the watermark is behind now, in seconds.
    pub lag_seconds: Option<i64>,
}

/// A lease with what it means now.
#[derive(Debug, Clone, Serialize)]
pub struct LeaseStatus {
    pub name: String,
    pub holder: String,
    pub live: bool,
    pub expires_at: DateTime<Utc>,
    /// Seconds until it expires (negative: expired that long ago).
    pub expires_in_seconds: i64,
    pub fence: i64,
}

/// Everything `status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    pub at: DateTime<Utc>,
    pub sources: Vec<SourceStatus>,
    pub outbox: Vec<StateCount>,
    pub held: i64,
    pub oldest_held: Option<DateTime<Utc>>,
    pub quarantined: Vec<RuleQuarantine>,
    pub leases: Vec<LeaseStatus>,
}

/// Read the status from `store` as it stands at `now`.
pub async fn report(store: &dyn Store, now: DateTime<Utc>) -> Result<StatusReport, StoreError> {
    let checkpoints = store.checkpoints().await?;
    let sources = store
        .source_health()
        .await?
        .into_iter()
        .map(|health| {
            let watermark = checkpoints
                .iter()
                .find(|(key, ..)| *key == health.source)
                .map(|(_, watermark, _)| *watermark);
            SourceStatus {
                lag_seconds: watermark.map(|w| (now - w).num_seconds()),
                watermark,
                health,
            }
        })
        .collect();
    let outbox = store.outbox_states().await?;
    let held = outbox.iter().find(|c| c.state == "held");
    let leases = store
        .leases()
        .await?
        .into_iter()
        .map(|lease: Lease| LeaseStatus {
            live: lease.is_live(now),
            expires_in_seconds: (lease.expires_at - now).num_seconds(),
            name: lease.name,
            holder: lease.holder,
            expires_at: lease.expires_at,
            fence: lease.fence,
        })
        .collect();
    Ok(StatusReport {
        at: now,
        sources,
        held: held.map_or(0, |c| c.count),
        oldest_held: held.map(|c| c.oldest),
        outbox,
        quarantined: store.quarantines().await?,
        leases,
    })
}

pub(super) async fn status(
    config_path: &Path,
    db: Option<PathBuf>,
    format: StatusFormat,
) -> Result<ExitCode, CliError> {
    let target = store_target(config_path, db)?;
    let store = store::open_shared(&target).await?;
    let report = report(store.as_ref(), SystemClock.now()).await?;
    match format {
        StatusFormat::Text => print!("{}", render_text(&report)),
        StatusFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| CliError::Usage(e.to_string()))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `1d 2h`, `3h 4m`, `5m 6s`, `7s`: the two largest units are enough to read a lag.
fn span(seconds: i64) -> String {
    let sign = if seconds < 0 { "-" } else { "" };
    let s = seconds.unsigned_abs();
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let text = match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, ..) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    };
    format!("{sign}{text}")
}

/// Columns padded to their widest cell, two spaces apart, indented by two.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("  {}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

pub fn render_text(report: &StatusReport) -> String {
    let now = report.at;
    let mut out = format!("nightdesk status at {}\n\nSources\n", time(now));
    if report.sources.is_empty() {
        out.push_str("  none polled yet\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .sources
            .iter()
            .map(|s| {
                let h = &s.health;
                vec![
                    h.source.clone(),
                    h.last_good_at.map_or("never".to_owned(), time),
                    h.last_good_at
                        .map_or("-".to_owned(), |t| span((now - t).num_seconds())),
                    s.lag_seconds.map_or("-".to_owned(), span),
                    h.consecutive_failures.to_string(),
                    match (&h.last_error, h.last_error_at) {
                        (Some(e), Some(at)) => format!("{} ({e})", time(at)),
                        (Some(e), None) => e.clone(),
                        _ => "-".to_owned(),
                    },
                ]
            })
            .collect();
        out.push_str(&table(
            &[
                "SOURCE",
                "LAST GOOD POLL",
                "AGO",
                "LAG",
                "FAILURES",
                "LAST ERROR",
            ],
            &rows,
        ));
    }

    out.push_str("\nOutbox\n");
    if report.outbox.is_empty() {
        out.push_str("  empty\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .outbox
            .iter()
            .map(|c| {
                vec![
                    c.state.clone(),
                    c.count.to_string(),
                    span((now - c.oldest).num_seconds()),
                ]
            })
            .collect();
        out.push_str(&table(&["STATE", "ACTIONS", "OLDEST CHANGE"], &rows));
    }

    match report.oldest_held {
        Some(oldest) if report.held > 0 => out.push_str(&format!(
            "\nHeld for approval: {} (oldest since {}, {} ago)\n",
            report.held,
            time(oldest),
            span((now - oldest).num_seconds())
        )),
        _ => out.push_str("\nHeld for approval: none\n"),
    }

    out.push_str("\nQuarantined rules\n");
    if report.quarantined.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .quarantined
            .iter()
            .map(|q| {
                vec![
                    q.rule.clone(),
                    q.version.clone(),
                    q.instance.clone(),
                    time(q.since),
                    q.error.clone(),
                ]
            })
            .collect();
        out.push_str(&table(
            &["RULE", "VERSION", "INSTANCE", "SINCE", "ERROR"],
            &rows,
        ));
    }

    out.push_str("\nLeases\n");
    if report.leases.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .leases
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.holder.clone(),
                    if l.live { "live" } else { "expired" }.to_owned(),
                    if l.live {
                        span(l.expires_in_seconds)
                    } else {
                        "-".to_owned()
                    },
                ]
            })
            .collect();
        out.push_str(&table(&["NAME", "HOLDER", "STATE", "EXPIRES IN"], &rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_the_two_largest_units() {
        assert_eq!(span(7), "7s");
        assert_eq!(span(65), "1m 5s");
        assert_eq!(span(3 * 3600 + 4 * 60 + 5), "3h 4m");
        assert_eq!(span(2 * 86_400 + 3600), "2d 1h");
        assert_eq!(span(-65), "-1m 5s");
    }

    #[test]
    fn tables_align_on_the_widest_cell() {
        let text = table(
            &["A", "B"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(text, "  A          B\n  long cell  x\n  s          y\n");
    }
}
