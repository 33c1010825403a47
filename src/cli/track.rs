//! `nightdesk track NUMBER [--carrier NAME] [--detect-only]`: what nightdesk sees for a
//! parcel, so ops can answer "why did nightdesk say that?". The detected carrier (and
//! whether the check digit holds); then, unless `--detect-only`, the carrier's answer
//! now as nightdesk normalises it, with the raw codes and the event history; and what
//! the store holds for the number, when the store can be read.
//!
//! It writes nothing: the carrier is asked once and the store is opened read-only.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, SecretResolver};
use crate::http::RetryPolicy;
use crate::sources::carriers::detect::{self, Detection};
use crate::sources::carriers::history::ParcelHistory;
use crate::sources::carriers::{
    self, Carrier, CarrierSecrets, ParcelQuery, TrackOutcome, ZoneSource,
};
use crate::store;

use super::CliError;

pub(super) async fn track(
    number: &str,
    carrier: Option<&str>,
    detect_only: bool,
    config_path: &Path,
) -> Result<ExitCode, CliError> {
    let detections = detect::detect(number);
    print_detections(number, &detections);
    if detect_only {
        let recognised = detections.iter().any(|d| d.check_digit != Some(false));
        return Ok(if recognised {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    let carrier = match carrier {
        Some(name) => name.parse::<Carrier>().map_err(CliError::Usage)?,
        None => detect::carrier_of(number).ok_or_else(|| {
            CliError::Usage(
                "the carrier cannot be told from the number alone; pass --carrier ups|fedex|usps|dhl|dpd"
                    .to_owned(),
            )
        })?,
    };
    let config = Config::load(config_path)?;
    let account = config
        .carriers
        .as_ref()
        .and_then(|c| c.accounts.iter().find(|a| a.carrier == carrier))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{carrier} is not configured under carriers: in {}",
                config_path.display()
            ))
        })?;
    let resolver = SecretResolver::from_env();
    let mut missing = Vec::new();
    let secrets = CarrierSecrets::resolve(
        &account.credentials,
        &format!("carriers.{carrier}"),
        |key, reference| match resolver.resolve(reference) {
            Ok(secret) => Some(secret),
            Err(e) => {
                missing.push(format!("{key}: {e}"));
                None
            }
        },
    )
    .ok_or_else(|| CliError::Usage(missing.join("; ")))?;
    let clock: SharedClock = Arc::new(SystemClock);
    let connection = carriers::connect(
        account,
        secrets,
        account.base_url.clone(),
        clock.clone(),
        RetryPolicy::default(),
    )
    .map_err(|e| CliError::Usage(e.to_string()))?;
    let query = ParcelQuery::number(detections.first().map_or(number, |d| d.number.as_str()));
    let outcomes = connection
        .client
        .track(std::slice::from_ref(&query))
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    print!("{}", render_outcomes(carrier, &outcomes, clock.now()));
    print_stored(&config, &query.tracking_number).await;
    Ok(ExitCode::SUCCESS)
}

fn print_detections(number: &str, detections: &[Detection]) {
    if detections.is_empty() {
        println!("{number}: no known tracking-number format");
        return;
    }
    for d in detections {
        let carrier = d.carrier.map_or("no connector", Carrier::as_str);
        let check = match d.check_digit {
            Some(true) => "check digit holds",
            Some(false) => "check digit FAILS",
            None => "no check digit in this format",
        };
        println!("{}: {} ({carrier}), {check}", d.number, d.format);
    }
}

/// The carrier's answer as nightdesk reads it: per shipment the normalised status,
/// reason, raw code and every event oldest first.
pub fn render_outcomes(
    carrier: Carrier,
    outcomes: &[TrackOutcome],
    now: chrono::DateTime<chrono::Utc>,
) -> String {
    let mut out = String::new();
    if outcomes.is_empty() {
        out.push_str(&format!(
            "{carrier}: the answer did not mention the number\n"
        ));
    }
    for outcome in outcomes {
        match outcome {
            TrackOutcome::NotFound {
                tracking_number,
                detail,
            } => out.push_str(&format!(
                "{carrier} {tracking_number}: not found (yet): {detail}\n  nightdesk reads this as Unknown and asks again; a label usually shows within hours.\n"
            )),
            TrackOutcome::Rejected {
                tracking_number,
                detail,
            } => out.push_str(&format!("{carrier} {tracking_number}: refused: {detail}\n")),
            TrackOutcome::Found(parcel) => {
                let mut history = ParcelHistory::default();
                history.merge(parcel, now);
                out.push_str(&format!(
                    "{carrier} {}{}\n  status:   {}",
                    parcel.tracking_number,
                    parcel
                        .carrier_shipment_id
                        .as_deref()
                        .map(|id| format!(" (shipment {id})"))
                        .unwrap_or_default(),
                    history.status().as_str()
                ));
                if let Some(reason) = history.reason {
                    out.push_str(&format!(" ({})", reason.as_str()));
                }
                out.push('\n');
                if let Some(current) = &history.current {
                    out.push_str(&format!(
                        "  raw code: {}\n  text:     {}\n",
                        current.raw_code, current.text
                    ));
                }
                if let Some(eta) = history.estimated_delivery {
                    out.push_str(&format!("  estimate: {}\n", eta.to_rfc3339()));
                }
                out.push_str("  events (oldest first):\n");
                for event in &history.events {
                    let when = match (event.at.utc, event.at.zone) {
                        (Some(utc), ZoneSource::Carrier) => format!("{} UTC", utc.format("%Y-%m-%d %H:%M")),
                        (Some(utc), _) => format!("{} UTC (zone from place)", utc.format("%Y-%m-%d %H:%M")),
                        (None, _) => format!("{} local (zone unknown)", event.at.local.format("%Y-%m-%d %H:%M")),
                    };
                    out.push_str(&format!(
                        "    {when}  {:<18} {:<10} {}{}\n",
                        event.status.as_str(),
                        event.raw_code,
                        event.text,
                        event
                            .location
                            .display()
                            .map(|l| format!(" — {l}"))
                            .unwrap_or_default()
                    ));
                }
            }
        }
    }
    out
}

/// What the store holds for the number (its watch and last status), if it can be read.
async fn print_stored(config: &Config, number: &str) {
    let store = match store::open_read_only(&config.store).await {
        Ok(store) => store,
        Err(e) => {
            println!("store: not read ({e})");
            return;
        }
    };
    match store.parcel_watches(Some(number)).await {
        Ok(watches) if watches.is_empty() => println!("store: nightdesk is not tracking {number}"),
        Ok(watches) => {
            for watch in watches {
                let status = watch
                    .history
                    .as_deref()
                    .and_then(|h| serde_json::from_str::<ParcelHistory>(h).ok())
                    .map_or("not asked yet".to_owned(), |h| {
                        h.status().as_str().to_owned()
                    });
                let next = match watch.stopped_at {
                    Some(at) => format!("stopped {}", at.to_rfc3339()),
                    None => format!("next poll {}", watch.next_poll_at.to_rfc3339()),
                };
                println!(
                    "store: {} tracks it as {} {}: {status}, {next}",
                    watch.subject, watch.carrier, watch.tracking_number
                );
            }
        }
        Err(e) => println!("store: not read ({e})"),
    }
}
