//! # nightdesk
//!
//! A support-automation daemon for marketplace sellers. Data flows one way:
//!
//! ```text
//! schedule ─► sources ─► store ─► rules ─► outbox ─► executors / channels
//! ```
//!
//! # Layout
//! - [`config`]: the YAML file, typed (`deny_unknown_fields`), validated with file:line:key
//!   errors, secrets as `env:`/`file:` references.
//! - [`model`]: the domain (orders, items, events, requested actions) every stage speaks.
//! - [`schedule`]: cron expressions in the usual Unix 5-field form.
//! - [`sources`]: one module per upstream; they read and normalise, never decide.
//! - [`store`]: the `Store` trait with SQLite and PostgreSQL implementations; orders,
//!   events, poll checkpoints, outbox and audit log.
//! - [`customers`]: one customer across channels (the index keys, the match and its
//!   confidence) for the ghost-order rule.
//! - [`rules`]: the hardened Rhai engine and the rule files; rules ask for actions as data;
//!   templates, the compliance linter, `check`, fixtures (`nightdesk test`).
//! - [`outbox`]: claiming with leases and fencing, the executor loop with its safety
//!   classes, alert grouping and quiet hours, approvals, the morning summary.
//! - [`executors`]: one module per upstream that acts (Amazon Messaging and Feeds;
//!   Shopify, eBay and Walmart refunds and cancellations; replies to buyer mail).
//! - [`channels`]: where alerts go: Slack, Teams, Discord, Google Chat, a signed
//!   webhook, e-mail.
//! - [`audit`]: an order's timeline as evidence (`nightdesk audit`).
//! - [`daemon`]: wires the stages together for `run`, `demo` and the tests; leases so
//!   several instances share the scheduled work; alerts about itself; `replay` and
//!   `explain` read what the stages recorded.
//! - [`server`]: `/healthz`, `/readyz`, `/metrics` and the approval API.
//! - [`service`]: running as a systemd service: the supervisor that reloads the daemon
//!   on SIGHUP, readiness, watchdog and stopping notifications.
//! - [`sandbox`]: local fakes of the upstream APIs, written from their published contracts.
//! - [`cli`]: the `nightdesk` command line.
//! - [`clock`], [`http`], [`telemetry`]: injected time, the shared HTTP client with retry
//!   classification, and named telemetry events.
#![forbid(unsafe_code)]

pub mod audit;
pub mod channels;
pub mod cli;
pub mod clock;
pub mod config;
pub mod customers;
pub mod daemon;
pub mod executors;
pub mod http;
pub mod model;
pub mod outbox;
pub mod rules;
pub mod sandbox;
pub mod schedule;
pub mod server;
pub mod service;
pub(crate) mod smtp;
pub mod sources;
pub mod store;
pub mod telemetry;
