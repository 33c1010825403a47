//! The morning summary: what nightdesk did in the last 24 hours and what waits for a
//! person, sent at the configured cron time: actions by rule and outcome, held
//! approvals (with how to decide), failures, unknowns, and sources that stopped
//! polling. Read-only over the store; the daemon plans it as one alert.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::approvals::how_to_decide;
use crate::schedule::Schedule;
use crate::store::{OutboxRow, Store, StoreError};

/// The rule name summaries are sent under (their own alert group).
pub const RULE: &str = "nightdesk-summary";

/// A source the summary checks: its key and poll schedule.
pub struct SourceSchedule<'a> {
    pub key: &'a str,
    pub schedule: &'a Schedule,
}

/// How many of each list the summary shows in full.
const SHOWN: usize = 10;

pub async fn morning_summary(
    store: &dyn Store,
    sources: &[SourceSchedule<'_>],
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    let since = now - Duration::hours(24);
    let rows = store.outbox_changed_since(since).await?;
    let mut by_rule: BTreeMap<(&str, &str), BTreeMap<&str, usize>> = BTreeMap::new();
    for row in rows
        .iter()
        .filter(|r| r.updated_at >= since && r.rule != RULE)
    {
        *by_rule
            .entry((row.rule.as_str(), row.kind.as_str()))
            .or_default()
            .entry(row.state.as_str())
            .or_default() += 1;
    }
    let mut text = format!(
        "nightdesk morning summary ({} to {} UTC)\n",
        since.format("%Y-%m-%d %H:%M"),
        now.format("%Y-%m-%d %H:%M")
    );
    text.push_str("\nActions in the last 24 h, by rule:\n");
    if by_rule.is_empty() {
        text.push_str("  none\n");
    }
    for ((rule, kind), states) in &by_rule {
        let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        text.push_str(&format!("  {rule} {kind}: {}\n", states.join(", ")));
    }
    let list = |title: &str, rows: Vec<&OutboxRow>, text: &mut String, with_decision: bool| {
        text.push_str(&format!("\n{title} ({}):\n", rows.len()));
        if rows.is_empty() {
            text.push_str("  none\n");
        }
        for row in rows.iter().take(SHOWN) {
            text.push_str(&format!(
                "  #{} {} by {} on {}: {}\n",
                row.id,
                row.kind,
                row.rule,
                row.subject,
                row.last_error.as_deref().unwrap_or("")
            ));
            if with_decision {
                text.push_str(&format!("    {}\n", how_to_decide(row.id)));
            }
        }
        if rows.len() > SHOWN {
            text.push_str(&format!("  … and {} more\n", rows.len() - SHOWN));
        }
    };
    let held: Vec<&OutboxRow> = rows.iter().filter(|r| r.state == "held").collect();
    list("Waiting for approval", held, &mut text, true);
    let unknown: Vec<&OutboxRow> = rows.iter().filter(|r| r.state == "unknown").collect();
    list(
        "Outcome unknown (check, then approve or reject)",
        unknown,
        &mut text,
        true,
    );
    let failed: Vec<&OutboxRow> = rows
        .iter()
        .filter(|r| r.state == "failed" && r.updated_at >= since)
        .collect();
    list("Failed", failed, &mut text, false);

    let checkpoints = store.checkpoints().await?;
    let mut stopped = Vec::new();
    for source in sources {
        let last = checkpoints
            .iter()
            .find(|(key, _, _)| key == source.key)
            .map(|(_, _, updated)| *updated);
        // Stopped: no successful poll within three of its intervals.
        let interval = source
            .schedule
            .next_after(now)
            .and_then(|a| Some(source.schedule.next_after(a)? - a))
            .unwrap_or(Duration::hours(1));
        match last {
            None => stopped.push(format!("  {}: never polled successfully\n", source.key)),
            Some(at) if now - at > interval * 3 => stopped.push(format!(
                "  {}: last successful poll {}\n",
                source.key,
                at.format("%Y-%m-%d %H:%M UTC")
            )),
            Some(_) => {}
        }
    }
    text.push_str(&format!(
        "\nSources that stopped polling ({}):\n",
        stopped.len()
    ));
    if stopped.is_empty() {
        text.push_str("  none\n");
    }
    for line in stopped {
        text.push_str(&line);
    }
    Ok(text)
}
