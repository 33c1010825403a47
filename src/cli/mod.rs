//! The `nightdesk` command line: `run`, `demo`, `sandbox`, `check`, `test`, `replay`,
//! `explain`, `approve`, `reject`, `audit`, `status`, `track`, `mail parse`. Glue only:
//! every command parses its arguments, builds the library's pieces and reports; the
//! work is done by the daemon, the sandbox and the rule engine.

mod mail;
pub mod status;
mod track;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigErrors, SecretResolver, StoreTarget};
use crate::daemon::{
    BuildError, CycleReport, Daemon, DaemonError, DaemonOptions, Endpoints, ReplayError,
};
use crate::http::RetryPolicy;
use crate::rules::RuleEngine;
use crate::sandbox::{Sandbox, SandboxError, SandboxOptions, Scenario};
use crate::service::{Notifier, Supervisor, SupervisorOptions};
use crate::store::{self, StoreError};

#[derive(Debug, Parser)]
#[command(
    name = "nightdesk",
    version,
    about = "Support automation for marketplace sellers."
)]
pub struct Cli {
    /// Log as JSON lines (the default for `run`; human text otherwise).
    #[arg(long, global = true)]
    pub json_logs: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        /// One cycle (poll, rules, sweep, actions), then exit.
        #[arg(long)]
        once: bool,
    },
    /// Start the built-in sandbox and run the daemon against it, with no account and no
    /// network.
    Demo {
        #[arg(long, default_value = "config/demo.yaml")]
        config: PathBuf,
        /// The demo's SQLite file (kept between runs: a second run delivers nothing new).
        #[arg(long, default_value = "nightdesk-demo.db")]
        db: PathBuf,
        #[arg(long)]
        once: bool,
    },
    /// Serve the local fakes of the upstream APIs alone.
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:8700")]
        listen: String,
        /// Scenario file (default: the shipped scenarios/default.yaml).
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Append every request received to this file as JSON lines.
        #[arg(long)]
        journal: Option<PathBuf>,
    },
    /// Run the rule fixtures (`rules/*.test.yaml`): given this state, expect these actions.
    Test {
        /// A rules folder or one fixture file.
        #[arg(default_value = "rules")]
        path: PathBuf,
    },
    /// Run today's rules over stored history and print what they would do. Writes
    /// nothing: the store is opened read-only.
    Replay {
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        /// How far back: 7d, 36h, or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// The SQLite file (default: the config's store).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Show why nightdesk did (or did not do) something about an order: each rule's
    /// decisions, what became of each action, and the outbox's record of it.
    Explain {
        /// The order id, e.g. 113-4829301-5520617.
        order_id: String,
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        /// The SQLite file (default: the config's store).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Approve a held action (or an `unknown` one you checked had not happened): it is
    /// performed at the daemon's next pass. Works beside a running daemon.
    Approve {
        /// The action's id, as the held alert or `nightdesk audit` shows it.
        id: i64,
        /// Who decides (recorded in the audit log); default: $USER.
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        /// The SQLite file (default: the config's store).
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Reject a held or unknown action: it is never performed.
    Reject {
        id: i64,
        #[arg(long)]
        by: Option<String>,
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// Show what a running nightdesk is doing: each source's last good poll, lag and
    /// last error, the outbox backlog, held approvals, quarantined rules and leases.
    /// Works beside a running daemon.
    Status {
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        /// The SQLite file (default: the config's store).
        #[arg(long)]
        db: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text")]
        format: status::StatusFormat,
    },
    /// Print an order's timeline (status history, messages, tracking, refunds and
    /// cancellations with their outcomes, approvals) as evidence for a claim.
    Audit {
        order_id: String,
        #[arg(long, value_enum, default_value = "text")]
        format: AuditFormat,
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
        #[arg(long)]
        db: Option<PathBuf>,
    },
    /// What nightdesk sees for a parcel: the detected carrier, the carrier's answer as
    /// nightdesk normalises it (status, reason, raw code, events), and what the store holds.
    Track {
        /// The tracking number.
        number: String,
        /// ups, fedex, usps, dhl or dpd (default: detected from the number).
        #[arg(long)]
        carrier: Option<String>,
        /// Only recognise the number (carrier, check digit); no network.
        #[arg(long)]
        detect_only: bool,
        #[arg(long, default_value = "config/nightdesk.yaml")]
        config: PathBuf,
    },
    /// Buyer mail tools.
    #[command(subcommand)]
    Mail(MailCommand),
    /// Check that the config is valid and every rule compiles.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Rules folder to check (default: the config's, or ./rules).
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Print what nightdesk understands of one mail: marketplace, relay address, order id
    /// or tracking number, language, intent, and whether it must not be answered.
    Parse {
        /// The mail, as a `.eml` file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The seller's own address (mail from it is our own reply); repeatable.
        #[arg(long = "own")]
        own: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum AuditFormat {
    Text,
    Json,
    Html,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Daemon(#[from] DaemonError),
    #[error("sandbox: {0}")]
    Sandbox(#[from] SandboxError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Replay(#[from] ReplayError),
    #[error("{0}")]
    Usage(String),
}

/// Run a parsed command.
pub async fn execute(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Run { config, once } => run(&config, once).await,
        Command::Demo { config, db, once } => demo(&config, &db, once).await,
        Command::Sandbox {
            listen,
            scenario,
            journal,
        } => sandbox(&listen, scenario, journal).await,
        Command::Track {
            number,
            carrier,
            detect_only,
            config,
        } => track::track(&number, carrier.as_deref(), detect_only, &config).await,
        Command::Mail(MailCommand::Parse { file, json, own }) => mail::parse(&file, json, &own),
        Command::Check { config, rules } => Ok(check(config.as_deref(), rules.as_deref())),
        Command::Test { path } => Ok(test(&path)),
        Command::Replay { config, since, db } => replay(&config, &since, db).await,
        Command::Explain {
            order_id,
            config,
            db,
        } => explain(&order_id, &config, db).await,
        Command::Approve { id, by, config, db } => {
            decide(id, crate::store::Decide::Approve, by, &config, db).await
        }
        Command::Reject { id, by, config, db } => {
            decide(id, crate::store::Decide::Reject, by, &config, db).await
        }
        Command::Audit {
            order_id,
            format,
            config,
            db,
        } => audit(&order_id, format, &config, db).await,
        Command::Status { config, db, format } => status::status(&config, db, format).await,
    }
}

fn store_target(config_path: &Path, db: Option<PathBuf>) -> Result<StoreTarget, CliError> {
    Ok(match db {
        Some(db) => StoreTarget::Sqlite(db),
        None => Config::load(config_path)?.store,
    })
}

async fn decide(
    id: i64,
    decision: crate::store::Decide,
    by: Option<String>,
    config_path: &Path,
    db: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let target = store_target(config_path, db)?;
    let store = store::open_shared(&target).await?;
    let who = by
        .or_else(|| std::env::var("USER").ok())
        .filter(|w| !w.trim().is_empty())
        .unwrap_or_else(|| "cli".to_owned());
    let row =
        crate::outbox::approvals::decide(store.as_ref(), id, decision, &who, SystemClock.now_utc())
            .await?;
    let verb = match decision {
        crate::store::Decide::Approve => "approved: it is performed at the daemon's next pass",
        crate::store::Decide::Reject => "rejected: it will not be performed",
    };
    println!(
        "Action #{} ({} by rule {} on {}) {verb}. Recorded as decided by {who}.",
        row.id, row.kind, row.rule, row.subject
    );
    Ok(ExitCode::SUCCESS)
}

async fn audit(
    order_id: &str,
    format: AuditFormat,
    config_path: &Path,
    db: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let target = store_target(config_path, db)?;
    let store = store::open_read_only(&target).await?;
    let timeline =
        crate::audit::timeline(store.as_ref(), crate::model::SalesChannel::Amazon, order_id)
            .await?;
    let text = match format {
        AuditFormat::Text => timeline.render_text(),
        AuditFormat::Json => timeline
            .render_json()
            .map_err(|e| CliError::Usage(e.to_string()))?,
        AuditFormat::Html => timeline
            .render_html()
            .map_err(|e| CliError::Usage(e.to_string()))?,
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Cancelled on SIGTERM or Ctrl-C.
fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(term) => term,
                Err(e) => {
                    tracing::error!(error = %e, "Cannot listen for SIGTERM; Ctrl-C still works.");
                    let _ = ctrl_c.await;
                    trigger.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        trigger.cancel();
    });
    token
}

fn instance_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    format!(
        "{}-{}",
        if host.is_empty() { "nightdesk" } else { &host },
        std::process::id()
    )
}

async fn run(config_path: &Path, once: bool) -> Result<ExitCode, CliError> {
    let config = Config::load(config_path)?;
    let store = store::open(&config.store).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let listen = config.server_listen;
    if once {
        let daemon = Daemon::build(DaemonOptions {
            config,
            store,
            clock,
            secrets: SecretResolver::from_env(),
            endpoints: Endpoints::default(),
            retry: RetryPolicy::default(),
            instance: instance_name(),
        })?;
        let report = daemon.run_cycle().await?;
        print_cycle(&report);
        return Ok(cycle_exit(&report));
    }
    // Before anything runs: SIGHUP's default action would kill the process.
    let mut signals = ServiceSignals::install()?;
    let mut supervisor = Supervisor::start(
        SupervisorOptions {
            config_path: config_path.to_owned(),
            store,
            clock,
            secrets: SecretResolver::from_env(),
            endpoints: Endpoints::default(),
            retry: RetryPolicy::default(),
            instance: instance_name(),
            notifier: Notifier::from_env(),
        },
        config,
    )?;
    // The HTTP server outlives reloads: it stops only at shutdown.
    let shutdown = CancellationToken::new();
    if let Some(addr) = listen {
        let listener = TcpListener::bind(addr).await?;
        let served = crate::server::Served::from(supervisor.current());
        tracing::info!(%addr, approvals = served.approvals.is_some(), "Serving /healthz, /readyz, /metrics and the approval API.");
        let token = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::server::serve(listener, served, token).await {
                tracing::error!(error = %e, "Health server stopped.");
            }
        });
    }
    supervisor.ready();
    let watchdog = CancellationToken::new();
    supervisor.spawn_watchdog(watchdog.clone());
    let ended = loop {
        let signal = tokio::select! {
            signal = signals.next() => signal,
            ended = supervisor.ended() => break Some(ended),
        };
        match signal {
            ServiceSignal::Stop(name) => {
                tracing::info!(signal = name, "Shutdown requested.");
                break None;
            }
            ServiceSignal::Reload => {
                // Problems are logged by the supervisor; the last good daemon keeps running.
                let _ = supervisor.reload().await;
            }
        }
    };
    watchdog.cancel();
    shutdown.cancel();
    // Further signals change nothing: the stop stays bounded as it is.
    tokio::spawn(async move {
        loop {
            let signal = signals.next().await;
            tracing::info!(
                ?signal,
                "Already stopping: actions in flight finish within the 30 s bound."
            );
        }
    });
    supervisor.shutdown().await?;
    match ended {
        None => Ok(ExitCode::SUCCESS),
        Some(result) => {
            result?;
            tracing::error!(
                "The daemon stopped by itself; exiting so the service manager restarts it."
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What a signal asks of a running service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceSignal {
    /// SIGTERM or SIGINT: stop gracefully.
    Stop(&'static str),
    /// SIGHUP: reload the config and rules.
    Reload,
}

/// The signals `run` answers. Installed once, so none is lost between two waits.
struct ServiceSignals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hangup: tokio::signal::unix::Signal,
}

impl ServiceSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn next(&mut self) -> ServiceSignal {
        tokio::select! {
            _ = self.term.recv() => ServiceSignal::Stop("SIGTERM"),
            _ = self.interrupt.recv() => ServiceSignal::Stop("SIGINT"),
            _ = self.hangup.recv() => ServiceSignal::Reload,
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> ServiceSignal {
        let _ = tokio::signal::ctrl_c().await;
        ServiceSignal::Stop("Ctrl-C")
    }
}

async fn demo(config_path: &Path, db: &Path, once: bool) -> Result<ExitCode, CliError> {
    if !config_path.exists() {
        return Err(CliError::Usage(format!(
            "{} not found: run the demo from the nightdesk checkout, or pass --config",
            config_path.display()
        )));
    }
    let clock: SharedClock = Arc::new(SystemClock);
    let scenario = crate::sandbox::default_scenario()?;
    let credentials = scenario.amazon.credentials.clone();
    let buyer_mail = scenario.buyer_mail.clone();
    let order_count = scenario.amazon.orders.len();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let sandbox = Sandbox::start(listener, SandboxOptions::new(scenario, clock.clone())).await?;
    // Process feeds at once, so `--once` sees refunds and cancellations through.
    sandbox.set_feed_processing_delay(std::time::Duration::ZERO);
    let base = sandbox.base_url();
    println!("Sandbox: {base} (default scenario, {order_count} orders)");

    let mut config = Config::load(config_path)?;
    config.store = StoreTarget::Sqlite(db.to_owned());
    println!("Store:   SQLite {}", db.display());
    // The relay's buyer mails go into a Maildir beside the database; replies go to the
    // sandbox's SMTP receiver.
    let smtp =
        crate::sandbox::smtp::SmtpReceiver::start(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .await?;
    let maildir = db.with_file_name(format!(
        "{}-mail",
        db.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("nightdesk-demo")
    ));
    for mailbox in config.mail.iter_mut().flat_map(|m| m.mailboxes.iter_mut()) {
        if let crate::config::MailSource::Maildir(path) = &mut mailbox.source {
            path.clone_from(&maildir);
            let delivered = crate::sandbox::buyer_mail::deliver(
                &buyer_mail,
                &mailbox.address,
                &maildir,
                clock.now(),
            )
            .map_err(CliError::Usage)?;
            println!(
                "Mailbox: {} ({delivered} new buyer mail(s) from the relay), replies via {}",
                maildir.display(),
                smtp.url()
            );
        }
    }
    let sandbox_url = |path: &str| {
        Url::parse(&format!("{base}{path}")).map_err(|e| CliError::Usage(e.to_string()))
    };
    let endpoints = Endpoints {
        amazon: Some(sandbox_url("/")?),
        lwa: Some(sandbox_url("/auth/o2/token")?),
        carriers: Some(sandbox_url("/")?),
        marketplaces: Some(sandbox_url("/")?),
    };
    // The demo config names env: references; answer them here instead of the environment.
    let secrets = SecretResolver::from_env()
        .with_override(
            "NIGHTDESK_DEMO_LWA_CLIENT_SECRET",
            credentials.client_secret,
        )
        .with_override(
            "NIGHTDESK_DEMO_LWA_REFRESH_TOKEN",
            credentials.refresh_token,
        )
        .with_override(
            "NIGHTDESK_DEMO_UPS_SECRET",
            "nightdesk-sandbox-ups-client-secret",
        )
        .with_override(
            "NIGHTDESK_DEMO_FEDEX_SECRET",
            "nightdesk-sandbox-fedex-secret-key",
        )
        .with_override("NIGHTDESK_DEMO_USPS_SECRET", "sandbox-usps-client-secret")
        .with_override("NIGHTDESK_DEMO_DHL_KEY", "sandbox-dhl-api-key")
        .with_override("NIGHTDESK_DEMO_DPD_PASSWORD", "sandbox-dpd-password")
        .with_override("NIGHTDESK_DEMO_SMTP_URL", smtp.url())
        .with_override("NIGHTDESK_DEMO_EBAY_SECRET", "sandbox-ebay-client-secret")
        .with_override(
            "NIGHTDESK_DEMO_EBAY_REFRESH_TOKEN",
            "sandbox-ebay-refresh-token",
        )
        .with_override(
            "NIGHTDESK_DEMO_WALMART_SECRET",
            "sandbox-walmart-client-secret",
        )
        .with_override(
            "NIGHTDESK_DEMO_SHOPIFY_TOKEN",
            crate::sandbox::marketplaces::shopify::SANDBOX_ACCESS_TOKEN,
        )
        .with_override(
            "NIGHTDESK_DEMO_SLACK_WEBHOOK",
            format!("{base}/hooks/slack/services/T0DEMO/B0DEMO/demo"),
        );
    let store = store::open(&config.store).await?;
    let daemon = Daemon::build(DaemonOptions {
        config,
        store,
        clock,
        secrets,
        endpoints,
        retry: RetryPolicy::default(),
        instance: instance_name(),
    })?;

    let exit = if once {
        let mut report = daemon.run_cycle().await?;
        // Feeds submitted in this cycle are looked at again within seconds: follow
        // them (at most 15 s) so the demo shows how they ended.
        for _ in 0..15 {
            let soon = daemon
                .store()
                .next_due()
                .await?
                .is_some_and(|at| at <= SystemClock.now_utc() + chrono::Duration::seconds(2));
            if !soon {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            let more = daemon
                .execute_due(&|| false)
                .await
                .map_err(DaemonError::from)?;
            report.executed.add(&more);
        }
        print_cycle(&report);
        for row in daemon
            .store()
            .outbox()
            .await?
            .iter()
            .filter(|r| r.kind != "alert")
        {
            let note = match row.state.as_str() {
                "held" => format!(
                    "{} {}",
                    row.last_error.as_deref().unwrap_or("waiting for approval"),
                    crate::outbox::approvals::how_to_decide(row.id)
                        .replace(
                            "nightdesk approve",
                            &format!("nightdesk approve --db {}", db.display())
                        )
                        .replace(
                            "nightdesk reject",
                            &format!("nightdesk reject --db {}", db.display())
                        )
                ),
                "done" => "done".to_owned(),
                other => format!("{other}: {}", row.last_error.as_deref().unwrap_or("")),
            };
            println!(
                "Action:  #{} {} by {} on {}: {note}",
                row.id, row.kind, row.rule, row.subject
            );
        }
        for feed in sandbox.feeds() {
            println!(
                "Sandbox feed {} {}: {:?}",
                feed.feed_id, feed.feed_type, feed.status
            );
        }
        for refund in sandbox.refunds(None) {
            println!(
                "Sandbox refund: order {} item {} principal {} {} ({})",
                refund.order_id, refund.item_code, refund.principal, refund.currency, refund.reason
            );
        }
        for message in sandbox.messages(None) {
            println!(
                "Sandbox buyer message {} for order {}:",
                message.message_type, message.order_id
            );
            for line in message.text.lines().filter(|l| !l.trim().is_empty()) {
                println!("    | {line}");
            }
        }
        print_replies(&smtp.received());
        cycle_exit(&report)
    } else {
        println!("Running until Ctrl-C ...");
        Arc::new(daemon).run(shutdown_on_signals()).await?;
        ExitCode::SUCCESS
    };
    let posts = sandbox.chat_posts("slack");
    if posts.is_empty() {
        println!(
            "Chat messages received by the sandbox's Slack webhook: none (nothing new to deliver)."
        );
    } else {
        println!(
            "Chat messages received by the sandbox's Slack webhook ({}):",
            posts.len()
        );
        for post in posts {
            println!("  - {}", post["text"].as_str().unwrap_or("(no text)"));
            // A grouped message: show the alerts it carries.
            let blocks = post["blocks"].as_array().cloned().unwrap_or_default();
            if blocks.first().is_some_and(|b| b["type"] == "header") {
                for section in blocks.iter().filter(|b| b["type"] == "section") {
                    let text = section["text"]["text"].as_str().unwrap_or_default();
                    println!("      · {}", text.replace('\n', ": "));
                }
            }
        }
    }
    sandbox.shutdown().await;
    smtp.shutdown().await;
    Ok(exit)
}

/// The replies the sandbox's SMTP receiver got, as the buyer would read them.
fn print_replies(received: &[crate::sandbox::smtp::ReceivedMail]) {
    if received.is_empty() {
        println!("Replies received by the sandbox's SMTP server: none.");
        return;
    }
    println!(
        "Replies received by the sandbox's SMTP server ({}):",
        received.len()
    );
    for mail in received {
        let Ok(parsed) = crate::sources::mail::parse(&mail.data) else {
            println!("  - an unreadable mail from {}", mail.mail_from);
            continue;
        };
        let language = parsed_language(&mail.data).unwrap_or_else(|| "?".to_owned());
        println!(
            "  - to {} [{language}]: {}",
            mail.rcpt_to.join(", "),
            parsed.subject
        );
        for line in parsed.text.lines().filter(|l| !l.trim().is_empty()) {
            println!("    | {line}");
        }
    }
}

/// The Content-Language header of a raw mail.
fn parsed_language(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let headers = text.split("\r\n\r\n").next()?;
    headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-language")
            .then(|| value.trim().to_owned())
    })
}

fn print_cycle(report: &CycleReport) {
    for (source, result) in &report.polls {
        match result {
            Ok(poll) => println!(
                "Poll {source}: fetched {} order(s), stored {} new or changed, {} unchanged, {} event(s)",
                poll.fetched, poll.ingest.stored, poll.ingest.unchanged, poll.ingest.events
            ),
            Err(error) => println!("Poll {source}: FAILED: {error}"),
        }
    }
    if let Some(t) = &report.tracking {
        println!(
            "Track:   asked the carriers about {} parcel(s): {} known, {} not found yet, {} event(s)",
            t.asked, t.found, t.not_found, t.shipments.events
        );
        for (carrier, error) in &t.failures {
            println!("Track {carrier}: FAILED: {error}");
        }
    }
    let mail = &report.mail;
    if mail.new + mail.duplicates > 0 || report.sla_at_risk > 0 {
        println!(
            "Mail:    {} new buyer mail(s), {} to answer, {} never to be answered (auto-replies, notifications, our own), {} read before; {} at risk of the 24-hour limit",
            mail.new,
            mail.events,
            mail.new - mail.events,
            mail.duplicates,
            report.sla_at_risk
        );
    }
    println!(
        "Rules:   {} event(s) seen, {} new action(s) planned, {} rule failure(s)",
        report.events_seen, report.actions_planned, report.rule_failures
    );
    let x = &report.executed;
    println!(
        "Actions: {} done, {} to retry, {} failed, {} unknown, {} held, {} stale",
        x.done, x.retry, x.failed, x.unknown, x.held, x.stale
    );
}

/// `--once` fails when a poll or an action failed, so cron wrappers notice.
fn cycle_exit(report: &CycleReport) -> ExitCode {
    let failed = report.polls.iter().any(|(_, r)| r.is_err()) || report.executed.failed > 0;
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn sandbox(
    listen: &str,
    scenario: Option<PathBuf>,
    journal: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let scenario = match &scenario {
        Some(path) => Scenario::load(path)?,
        None => crate::sandbox::default_scenario()?,
    };
    let listener = TcpListener::bind(listen).await?;
    let clock: SharedClock = Arc::new(SystemClock);
    let mut options = SandboxOptions::new(scenario, clock);
    options.journal_path = journal;
    let sandbox = Sandbox::start(listener, options).await?;
    println!("Sandbox serving on {} (Ctrl-C to stop)", sandbox.base_url());
    println!("  LWA:       POST {}/auth/o2/token", sandbox.base_url());
    println!("  Orders v0: GET  {}/orders/v0/orders", sandbox.base_url());
    println!("  Slack:     POST {}/hooks/slack/...", sandbox.base_url());
    println!("  Journal:   GET  {}/_sandbox/journal", sandbox.base_url());
    shutdown_on_signals().cancelled().await;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Validate the config, compile every rule and template, lint the templates; print
/// every problem.
pub fn check(config: Option<&Path>, rules: Option<&Path>) -> ExitCode {
    let mut ok = true;
    let mut limits = crate::config::RuleLimits::default();
    let mut rules_dir = rules.map(Path::to_path_buf);
    if let Some(path) = config {
        match Config::load(path) {
            Ok(config) => {
                println!("{}: config ok", path.display());
                limits = config.rules.limits;
                rules_dir.get_or_insert(config.rules.dir);
            }
            Err(errors) => {
                eprint!("{errors}");
                ok = false;
            }
        }
    }
    let dir = rules_dir.unwrap_or_else(|| PathBuf::from("rules"));
    let (report, ..) = crate::rules::check::check_dir(&RuleEngine::new(limits), &dir);
    for line in &report.ok {
        println!("{line}");
    }
    for problem in &report.problems {
        eprintln!("{problem}");
    }
    ok &= report.problems.is_empty();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Run rule fixtures; every case is listed, failures with what differed.
pub fn test(path: &Path) -> ExitCode {
    let dir = if path.is_file() {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        path.to_owned()
    };
    let engine = RuleEngine::new(crate::config::RuleLimits::default());
    let rules = match engine.load_dir(&dir) {
        Ok(rules) => rules,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    match crate::rules::fixtures::run(&engine, &rules, path) {
        Ok(report) => {
            print!("{}", report.render());
            if report.cases.is_empty() {
                eprintln!("no fixtures under {}", path.display());
                return ExitCode::FAILURE;
            }
            if report.failed() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn replay(
    config_path: &Path,
    since: &str,
    db: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let mut config = Config::load(config_path)?;
    if let Some(db) = db {
        config.store = StoreTarget::Sqlite(db);
    }
    let now = SystemClock.now_utc();
    let since = crate::rules::fixtures::parse_time(since, now).map_err(CliError::Usage)?;
    let store = store::open_read_only(&config.store).await?;
    let report = crate::daemon::replay(&config, store.as_ref(), now, since).await?;
    println!("Replay since {since} (dry: nothing is sent or written)");
    println!(
        "{} event(s), {} open order(s) swept",
        report.events, report.orders_swept
    );
    for line in &report.lines {
        let state = if line.already_planned {
            "already in the outbox"
        } else {
            "NEW"
        };
        println!(
            "  {} {:<22} {:<16} {:<40} {} [{state}]",
            line.at.format("%Y-%m-%d %H:%M"),
            line.trigger,
            line.rule,
            line.subject,
            line.action
        );
    }
    for failure in &report.failures {
        println!("  rule failure: {failure}");
    }
    let new = report.lines.iter().filter(|l| !l.already_planned).count();
    println!(
        "{} action(s) would be requested: {new} new, {} already in the outbox",
        report.lines.len(),
        report.lines.len() - new
    );
    Ok(ExitCode::SUCCESS)
}

async fn explain(
    order_id: &str,
    config_path: &Path,
    db: Option<PathBuf>,
) -> Result<ExitCode, CliError> {
    let target = match db {
        Some(db) => StoreTarget::Sqlite(db),
        None => Config::load(config_path)?.store,
    };
    let store = store::open_read_only(&target).await?;
    let explanation =
        crate::daemon::explain(store.as_ref(), crate::model::SalesChannel::Amazon, order_id)
            .await?;
    print!("{}", explanation.render());
    Ok(ExitCode::SUCCESS)
}
