//! The sandbox: local fakes of the upstream HTTP APIs — Login with Amazon, SP-API
//! Orders v0, Messaging v1 and Feeds 2021-06-30 (with the presigned document URLs),
//! and the chat receivers (Slack, Teams, Discord, Google Chat, nightdesk's signed
//! webhook) — for `nightdesk sandbox`, `nightdesk demo` and the integration tests. It
//! serves a [`Scenario`] on one listener, enforces the usage plans, journals every
//! request, and injects [`Fault`]s on demand.
//!
//! It is written from the published contracts (`specs/amazon/ordersV0.json`,
//! `messaging.json`, `feeds_2021-06-30.json`, research notes §1–4 and §7) on its own,
//! and must never:
//! - share request/response types or parsing code with the connectors (`crate::model`,
//!   `crate::sources`, …): every JSON body is built here field by field, so a misreading
//!   of a contract on one side is caught by the other. Only `crate::clock` is shared;
//! - reach the network beyond its own listener;
//! - take "now" from anywhere but the [`SharedClock`] it is given.

mod amazon;
mod chat;
mod faults;
mod feeds;
mod journal;
mod lwa;
mod messaging;
mod scenario;
mod server;
mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;

pub use faults::Fault;
pub use feeds::{FeedStatus, SandboxFeed, SandboxRefund};
pub use journal::{JournalEntry, MASK};
pub use messaging::SentMessage;
pub use scenario::{
    AmazonScenario, Amount, FulfillmentChannel, LwaCredentials, MARKETPLACE_CA, MARKETPLACE_US,
    OrderStatus, OrderType, Scenario, ScenarioItem, ScenarioOrder, When,
};

/// What can go wrong starting or steering the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("scenario {origin}: {message}")]
    Scenario { origin: String, message: String },
    #[error("cannot read scenario file {}: {source}", path.display())]
    ScenarioRead {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open sandbox journal {}: {source}", path.display())]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sandbox listener: {0}")]
    Listener(#[source] std::io::Error),
    #[error("the sandbox has no order {0}")]
    UnknownOrder(String),
    #[error("invalid order {id}: {message}")]
    InvalidOrder { id: String, message: String },
}

/// The signed webhook receiver's key when none is configured. Obviously fake.
pub const DEFAULT_WEBHOOK_SECRET: &str = "sandbox-webhook-secret-not-real";

/// How to run a sandbox. Build it with [`SandboxOptions::new`] and set fields after.
#[derive(Clone)]
pub struct SandboxOptions {
    pub scenario: Scenario,
    /// Also append the journal to this file as JSON lines.
    pub journal_path: Option<PathBuf>,
    pub clock: SharedClock,
    /// The HMAC-SHA256 key the signed webhook receiver (`/hooks/webhook/…`) checks
    /// `X-Nightdesk-Signature` with.
    pub webhook_secret: String,
}

impl SandboxOptions {
    /// `scenario` on `clock`, no journal file, the [`DEFAULT_WEBHOOK_SECRET`].
    pub fn new(scenario: Scenario, clock: SharedClock) -> Self {
        Self {
            scenario,
            journal_path: None,
            clock,
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_owned(),
        }
    }
}

// By hand: the webhook secret has no place in logs.
impl std::fmt::Debug for SandboxOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxOptions")
            .field("scenario", &self.scenario)
            .field("journal_path", &self.journal_path)
            .field("clock", &self.clock)
            .field("webhook_secret", &MASK)
            .finish()
    }
}

/// The shipped scenario (`scenarios/default.yaml`, embedded at build time).
pub fn default_scenario() -> Result<Scenario, SandboxError> {
    Scenario::from_yaml_named(
        include_str!("../../scenarios/default.yaml"),
        "scenarios/default.yaml (embedded)",
    )
}

/// A running sandbox. Dropping it stops the server without waiting; prefer
/// [`Sandbox::shutdown`].
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Sandbox {
    /// Serves `options.scenario` on an already-bound listener (tests bind
    /// `127.0.0.1:0`). Relative scenario times are fixed against the clock now.
    /// Returns once serving.
    pub async fn start(
        listener: TcpListener,
        options: SandboxOptions,
    ) -> Result<Sandbox, SandboxError> {
        let SandboxOptions {
            mut scenario,
            journal_path,
            clock,
            webhook_secret,
        } = options;
        scenario
            .validate()
            .map_err(|message| SandboxError::Scenario {
                origin: if scenario.name.is_empty() {
                    "(built in code)".to_owned()
                } else {
                    scenario.name.clone()
                },
                message,
            })?;
        let addr = listener.local_addr().map_err(SandboxError::Listener)?;
        let journal = journal::Journal::open(journal_path.as_deref())?;
        scenario.pin_times(whole_seconds(clock.now()));
        let order_count = scenario.amazon.orders.len();

        let shared = Arc::new(Shared {
            plans: Mutex::new(amazon::UsagePlans::new(scenario.amazon.rate_limits)),
            amazon: Mutex::new(scenario.amazon),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(faults::FaultQueue::default()),
            messages: Mutex::new(Vec::new()),
            feeds: Mutex::new(feeds::FeedStore::default()),
            chat: Mutex::new(chat::ChatLog::default()),
            webhook_secret,
            base_url: base_url_of(addr),
            journal,
            clock,
        });
        let router = server::router(shared.clone());
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "sandbox server stopped");
            }
        });
        tracing::info!(%addr, orders = order_count, "sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            cancel,
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far, in order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.shared.journal.snapshot()
    }

    /// The JSON bodies the `kind` chat receiver accepted (`slack`, `teams`, `discord`,
    /// `google_chat`, `webhook`, …), secrets masked as in the journal. A post counts when
    /// the receiver took it, even if a fault then replaced the answer
    /// ([`Fault::after_effect`]); repeated webhook deliveries (same `Idempotency-Key`)
    /// count once.
    pub fn chat_posts(&self, kind: &str) -> Vec<serde_json::Value> {
        lock(&self.shared.chat).posts(kind)
    }

    /// The unique deliveries to the signed webhook receiver, in arrival order:
    /// `(Idempotency-Key, JSON body)`.
    pub fn webhook_effects(&self) -> Vec<(String, serde_json::Value)> {
        lock(&self.shared.chat).webhook_effects()
    }

    /// Messages accepted by the Messaging API, oldest first; all orders or one.
    pub fn messages(&self, order_id: Option<&str>) -> Vec<SentMessage> {
        lock(&self.shared.messages)
            .iter()
            .filter(|m| order_id.is_none_or(|id| m.order_id == id))
            .cloned()
            .collect()
    }

    /// Every feed submitted with `createFeed`, oldest first. Feeds whose processing
    /// delay has passed are processed first, as a `getFeed` would.
    pub fn feeds(&self) -> Vec<SandboxFeed> {
        feeds::settle(&self.shared);
        lock(&self.shared.feeds).list()
    }

    /// Refunds applied by `POST_PAYMENT_ADJUSTMENT_DATA` feeds, oldest first; all
    /// orders or one. Due feeds are processed first.
    pub fn refunds(&self, order_id: Option<&str>) -> Vec<SandboxRefund> {
        feeds::settle(&self.shared);
        lock(&self.shared.feeds).refunds(order_id)
    }

    /// How long after `createdTime` (by the sandbox clock) a feed becomes `DONE`;
    /// 30 seconds unless set. Applies to feeds not yet processed.
    pub fn set_feed_processing_delay(&self, delay: Duration) {
        lock(&self.shared.feeds).set_delay(delay);
    }

    /// Whether processing reports created from now on are stored GZIP-compressed
    /// (`getFeedDocument` then says `"compressionAlgorithm": "GZIP"`). Off by default.
    pub fn compress_reports(&self, compress: bool) {
        lock(&self.shared.feeds).set_compress(compress);
    }

    /// Queues a fault. One with an impossible status (outside 100-599) is ignored.
    pub fn inject(&self, fault: Fault) {
        match fault.check() {
            Ok(()) => lock(&self.shared.faults).push(fault),
            Err(error) => tracing::warn!(%error, "sandbox fault ignored"),
        }
    }

    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Faults not yet used up.
    pub fn pending_faults(&self) -> Vec<Fault> {
        lock(&self.shared.faults).pending()
    }

    /// Turns usage-plan enforcement on or off.
    pub fn set_rate_limits(&self, enabled: bool) {
        lock(&self.shared.plans).set_enabled(enabled);
    }

    /// Forgets every issued access token, as if LWA had revoked them.
    pub fn revoke_access_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// The orders as the sandbox holds them now (times absolute), after processing any
    /// feed that is due.
    pub fn orders(&self) -> Vec<ScenarioOrder> {
        feeds::settle(&self.shared);
        lock(&self.shared.amazon).orders.clone()
    }

    /// Changes an order in place. Relative times set by `change` are measured from the
    /// clock's now, e.g. `o.last_updated = Some(When::now())`.
    pub fn update_order(
        &self,
        id: &str,
        change: impl FnOnce(&mut ScenarioOrder),
    ) -> Result<(), SandboxError> {
        let now = self.shared.now();
        let mut amazon = lock(&self.shared.amazon);
        let slot = amazon
            .orders
            .iter_mut()
            .find(|o| o.id == id)
            .ok_or_else(|| SandboxError::UnknownOrder(id.to_owned()))?;
        let mut changed = slot.clone();
        change(&mut changed);
        changed.pin_times(now);
        changed
            .validate_one()
            .map_err(|message| SandboxError::InvalidOrder {
                id: changed.id.clone(),
                message,
            })?;
        *slot = changed;
        Ok(())
    }

    /// Moves an order to `status`, updated now: what Amazon does when an order changes.
    pub fn set_order_status(&self, id: &str, status: OrderStatus) -> Result<(), SandboxError> {
        self.update_order(id, |o| {
            o.status = status;
            o.last_updated = Some(When::now());
        })
    }

    /// Adds an order; relative times are measured from the clock's now.
    pub fn add_order(&self, mut order: ScenarioOrder) -> Result<(), SandboxError> {
        order
            .validate_one()
            .map_err(|message| SandboxError::InvalidOrder {
                id: order.id.clone(),
                message,
            })?;
        order.pin_times(self.shared.now());
        let mut amazon = lock(&self.shared.amazon);
        if amazon.orders.iter().any(|o| o.id == order.id) {
            return Err(SandboxError::InvalidOrder {
                id: order.id,
                message: "an order with this id already exists".to_owned(),
            });
        }
        amazon.orders.push(order);
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish (at most five seconds).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("sandbox did not stop within 5s");
        }
    }
}

// By hand: the shared state holds live access tokens, which have no place in logs.
impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox").field("addr", &self.addr).finish()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// State shared by the handlers.
///
/// Lock order, where two are held: `feeds` before `amazon`. Nothing locks `feeds` while
/// holding `amazon`.
struct Shared {
    clock: SharedClock,
    /// `http://IP:PORT` of the listener, for the URLs the sandbox hands out.
    base_url: String,
    /// Settings and orders, times pinned to absolute values.
    amazon: Mutex<AmazonScenario>,
    /// Issued access tokens and when they expire.
    tokens: Mutex<HashMap<String, DateTime<Utc>>>,
    plans: Mutex<amazon::UsagePlans>,
    faults: Mutex<faults::FaultQueue>,
    /// Messages accepted by the Messaging API.
    messages: Mutex<Vec<SentMessage>>,
    /// Feed documents, feeds and the refunds they applied.
    feeds: Mutex<feeds::FeedStore>,
    /// Posts accepted by the chat receivers and the webhook's idempotency keys.
    chat: Mutex<chat::ChatLog>,
    /// The HMAC key of the signed webhook receiver.
    webhook_secret: String,
    journal: journal::Journal,
}

impl Shared {
    /// Now, in whole seconds like every date the contract shows.
    fn now(&self) -> DateTime<Utc> {
        whole_seconds(self.clock.now())
    }
}

/// `http://IP:PORT`; a wildcard bind is reachable on loopback.
fn base_url_of(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    at.with_nanosecond(0).unwrap_or(at)
}

/// Locks, recovering from a poisoned mutex: the data is plain values, still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a request is, by method and path; names match the contract's operation ids.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operation {
    /// An SP-API operation, by its contract `operationId` (`getOrders`,
    /// `createConfirmOrderDetails`, `createFeed`, …).
    SpApi(&'static str),
    /// The presigned feed-document URLs: Amazon S3, not SP-API (`uploadFeedDocument`,
    /// `downloadFeedDocument`).
    Storage(&'static str),
    LwaToken,
    Chat(String),
    Unknown,
}

impl Operation {
    fn classify(method: &str, path: &str) -> Self {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("POST", ["auth", o2, "token"]) if o2.eq_ignore_ascii_case("o2") => Operation::LwaToken,
            ("GET", ["orders", "v0", "orders"]) => Operation::SpApi(amazon::GET_ORDERS),
            ("GET", ["orders", "v0", "orders", id]) if !id.is_empty() => {
                Operation::SpApi(amazon::GET_ORDER)
            }
            ("GET", ["orders", "v0", "orders", id, "orderItems"]) if !id.is_empty() => {
                Operation::SpApi(amazon::GET_ORDER_ITEMS)
            }
            (_, ["messaging", "v1", "orders", id, rest @ ..]) if !id.is_empty() => {
                messaging::classify(method, rest).map_or(Operation::Unknown, Operation::SpApi)
            }
            (_, ["feeds", "2021-06-30", rest @ ..]) => {
                feeds::classify(method, rest).map_or(Operation::Unknown, Operation::SpApi)
            }
            ("PUT", ["_sandbox", "uploads", id]) if !id.is_empty() => {
                Operation::Storage(feeds::UPLOAD_FEED_DOCUMENT)
            }
            ("GET", ["_sandbox", "documents", id]) if !id.is_empty() => {
                Operation::Storage(feeds::DOWNLOAD_FEED_DOCUMENT)
            }
            ("POST", ["hooks", kind, rest @ ..])
                if !kind.is_empty() && rest.iter().any(|s| !s.is_empty()) =>
            {
                Operation::Chat((*kind).to_owned())
            }
            _ => Operation::Unknown,
        }
    }

    fn name(&self) -> String {
        match self {
            Operation::SpApi(name) | Operation::Storage(name) => (*name).to_owned(),
            Operation::LwaToken => "lwa.token".to_owned(),
            Operation::Chat(kind) => format!("chat.{kind}"),
            Operation::Unknown => "unknown".to_owned(),
        }
    }

    fn sp_api_name(&self) -> Option<&'static str> {
        match self {
            Operation::SpApi(name) => Some(name),
            _ => None,
        }
    }

    /// The query parameter carrying the paging token, for operations with paging
    /// (faults can target a page).
    fn paging_parameter(&self) -> Option<&'static str> {
        match self.sp_api_name()? {
            amazon::GET_ORDERS | amazon::GET_ORDER_ITEMS => Some("NextToken"),
            feeds::GET_FEEDS => Some("nextToken"),
            _ => None,
        }
    }
}

/// Paths answered in the SP-API error shape when nothing else matches.
fn is_sp_api_path(path: &str) -> bool {
    ["/orders/", "/messaging/", "/feeds/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}
