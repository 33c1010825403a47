//! The sandbox: local fakes of the upstream HTTP APIs — Login with Amazon, SP-API
//! Orders v0 (with the restricted buyer and address data) and Orders 2026-01-01 getOrder
//! (FBM packages), the carriers' tracking APIs (UPS, FedEx, USPS, DHL, DPD; see
//! `carriers`), Tokens 2021-03-01 (Restricted
//! Data Tokens), Fulfillment Outbound 2020-07-01 (FBA Multi-Channel Fulfillment reads
//! and package tracking), Messaging v1 and Feeds 2021-06-30 (with the presigned document
//! URLs), and the chat receivers (Slack, Teams, Discord, Google Chat, nightdesk's signed
//! webhook) — for `nightdesk sandbox`, `nightdesk demo` and the integration tests. It
//! serves a [`Scenario`] on one listener, enforces the usage plans (overridable per
//! operation, with usage counters), journals every request, and injects [`Fault`]s on
//! demand.
//!
//! It is written from the published contracts (`specs/amazon/ordersV0.json`,
//! `tokens_2021-03-01.json`, `fulfillmentOutbound_2020-07-01.json`, `messaging.json`,
//! `feeds_2021-06-30.json`, research notes §1–4 and §7–9) on its own, and must never:
//! - share request/response types or parsing code with the connectors (`crate::model`,
//!   `crate::sources`, …): every JSON body is built here field by field, so a misreading
//!   of a contract on one side is caught by the other. Only `crate::clock` is shared;
//! - reach the network beyond its own listener;
//! - take "now" from anywhere but the [`SharedClock`] it is given.

mod amazon;
mod amazon_packages;
pub mod buyer_mail;
mod carriers;
mod chat;
mod faults;
mod feeds;
mod fulfillment;
mod journal;
mod lwa;
pub mod marketplaces;
mod messaging;
mod plans;
mod scenario;
mod scenario_fba;
mod server;
pub mod smtp;
mod token;
mod tokens;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sp_api;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;

pub use amazon_packages::ScenarioOrderPackage;
pub use carriers::{CarrierScenario, ScenarioParcel, ScenarioPlace, ScenarioScan};
pub use faults::Fault;
pub use feeds::{FeedStatus, SandboxFeed, SandboxRefund};
pub use journal::{JournalEntry, MASK};
pub use messaging::SentMessage;
pub use plans::OperationUsage;
pub use scenario::{
    AddressType, AmazonScenario, Amount, FulfillmentChannel, LwaCredentials, MARKETPLACE_CA,
    MARKETPLACE_US, OrderStatus, OrderType, Scenario, ScenarioAddress, ScenarioBuyer, ScenarioItem,
    ScenarioOrder, When,
};
pub use scenario_fba::{
    FulfillmentOrderStatus, ScenarioFulfillmentItem, ScenarioFulfillmentOrder, ScenarioPackage,
    ScenarioShipment, ScenarioTrackingEvent, ShipmentStatus, ShippingSpeed,
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
    #[error("the sandbox has no fulfillment order {0}")]
    UnknownFulfillmentOrder(String),
    #[error("the sandbox has no package {0}")]
    UnknownPackage(u32),
    #[error("the sandbox has no parcel {0}")]
    UnknownParcel(String),
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
            plans: Mutex::new(plans::UsagePlans::new(
                scenario.amazon.rate_limits,
                amazon::usage_plans(),
            )),
            amazon: Mutex::new(scenario.amazon),
            orders_generation: AtomicU64::new(0),
            order_index: Mutex::new(amazon::OrderIndex::default()),
            tokens: Mutex::new(HashMap::new()),
            rdts: Mutex::new(tokens::RdtStore::default()),
            refresh_revoked: AtomicBool::new(false),
            faults: Mutex::new(faults::FaultQueue::default()),
            messages: Mutex::new(Vec::new()),
            feeds: Mutex::new(feeds::FeedStore::default()),
            chat: Mutex::new(chat::ChatLog::default()),
            carriers: Mutex::new(carriers::CarrierState::new(scenario.carriers)),
            shopify: Mutex::new(marketplaces::shopify::ShopifyState::new(scenario.shopify)),
            ebay: Mutex::new(marketplaces::ebay::EbayState::new(scenario.ebay)),
            walmart: Mutex::new(marketplaces::walmart::WalmartState::new(scenario.walmart)),
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

    /// Overrides `operation`'s usage plan (SP-API "dynamic usage plans": a seller's plan
    /// may be lower or higher than the default). The bucket keeps its tokens, capped at
    /// the new burst; 2xx answers state the new rate in `x-amzn-RateLimit-Limit`. A rate
    /// or burst that is not a positive finite number (burst at least 1) is ignored.
    pub fn set_usage_plan(&self, operation: &str, rate_per_second: f64, burst: f64) {
        let valid = rate_per_second.is_finite()
            && rate_per_second > 0.0
            && burst.is_finite()
            && burst >= 1.0;
        if !valid {
            tracing::warn!(
                operation,
                rate_per_second,
                burst,
                "sandbox usage plan ignored: rate must be > 0 and burst >= 1"
            );
            return;
        }
        let known = amazon::usage_plans().any(|(op, ..)| *op == operation)
            || operation == messaging::SEND_INVOICE;
        if !known {
            // Still set: harmless, and a test may name an operation added later.
            tracing::warn!(operation, "sandbox usage plan set for an unknown operation");
        }
        lock(&self.shared.plans).set_plan(operation, rate_per_second, burst);
    }

    /// What `operation` (an SP-API operation name) answered since the start or the last
    /// [`Sandbox::reset_usage`].
    pub fn usage(&self, operation: &str) -> OperationUsage {
        lock(&self.shared.plans).usage(operation)
    }

    /// Zeroes every operation's usage counters (the buckets are left as they are).
    pub fn reset_usage(&self) {
        lock(&self.shared.plans).reset_usage();
    }

    /// Forgets every issued access token, as if LWA had revoked them.
    pub fn revoke_access_tokens(&self) {
        lock(&self.shared.tokens).clear();
    }

    /// The seller revokes the application's authorization: LWA answers the refresh token
    /// with `invalid_grant`, and every access token and Restricted Data Token issued so
    /// far stops working. Until [`Sandbox::restore_refresh_token`].
    pub fn revoke_refresh_token(&self) {
        self.shared.refresh_revoked.store(true, Ordering::Release);
        lock(&self.shared.tokens).clear();
        lock(&self.shared.rdts).clear();
    }

    /// The seller authorizes the application again: the refresh token works again.
    pub fn restore_refresh_token(&self) {
        self.shared.refresh_revoked.store(false, Ordering::Release);
    }

    /// How many Restricted Data Tokens `createRestrictedDataToken` issued so far.
    pub fn restricted_tokens_issued(&self) -> usize {
        lock(&self.shared.rdts).issued()
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
        // Under the lock, so no reader pairs the new orders with the old generation.
        self.shared.orders_changed();
        drop(amazon);
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
        // Under the lock, so no reader pairs the new orders with the old generation.
        self.shared.orders_changed();
        drop(amazon);
        Ok(())
    }

    /// Adds an order that Amazon shows only `visible_after_seconds` after its
    /// LastUpdateDate (by the sandbox clock): e.g. `last_updated: now` and 90 s, an
    /// order a poller catches only through its window overlap.
    pub fn add_late_order(
        &self,
        order: ScenarioOrder,
        visible_after_seconds: u32,
    ) -> Result<(), SandboxError> {
        self.add_order(ScenarioOrder {
            visible_after_seconds: Some(visible_after_seconds),
            ..order
        })
    }

    /// The fulfillment orders as the sandbox holds them now (times absolute).
    pub fn fulfillment_orders(&self) -> Vec<ScenarioFulfillmentOrder> {
        lock(&self.shared.amazon).fulfillment_orders.clone()
    }

    /// Adds a fulfillment order; relative times are measured from the clock's now, and
    /// items and destination default from the Amazon order it names.
    pub fn add_fulfillment_order(
        &self,
        mut fulfillment: ScenarioFulfillmentOrder,
    ) -> Result<(), SandboxError> {
        let now = self.shared.now();
        let mut amazon = lock(&self.shared.amazon);
        let invalid = |id: &str, message: String| SandboxError::InvalidOrder {
            id: id.to_owned(),
            message,
        };
        fulfillment
            .validate()
            .map_err(|m| invalid(&fulfillment.id, m))?;
        fulfillment.fill_defaults(&amazon.orders);
        fulfillment.pin_times(now);
        let mut all = amazon.fulfillment_orders.clone();
        all.push(fulfillment);
        scenario_fba::validate_all(&all)
            .map_err(|m| invalid(all.last().map_or("", |f| f.id.as_str()), m))?;
        amazon.fulfillment_orders = all;
        Ok(())
    }

    /// Changes a fulfillment order in place; relative times set by `change` are measured
    /// from the clock's now. E.g. a status change:
    /// `|f| { f.status = FulfillmentOrderStatus::Complete; f.status_updated = Some(When::now()); }`.
    pub fn update_fulfillment_order(
        &self,
        id: &str,
        change: impl FnOnce(&mut ScenarioFulfillmentOrder),
    ) -> Result<(), SandboxError> {
        let now = self.shared.now();
        let mut amazon = lock(&self.shared.amazon);
        let Some(index) = amazon.fulfillment_orders.iter().position(|f| f.id == id) else {
            return Err(SandboxError::UnknownFulfillmentOrder(id.to_owned()));
        };
        let mut all = amazon.fulfillment_orders.clone();
        let Some(slot) = all.get_mut(index) else {
            return Err(SandboxError::UnknownFulfillmentOrder(id.to_owned()));
        };
        change(slot);
        slot.fill_defaults(&amazon.orders);
        slot.pin_times(now);
        scenario_fba::validate_all(&all).map_err(|message| SandboxError::InvalidOrder {
            id: id.to_owned(),
            message,
        })?;
        amazon.fulfillment_orders = all;
        Ok(())
    }

    /// Moves a package: its `currentStatus` becomes `status` (contract `CurrentStatus`,
    /// e.g. `DELIVERED`) and a tracking event `event_code` (contract `EventCode`, e.g.
    /// `EVENT_301`) is added now, where the last event happened (the destination when
    /// there is none).
    pub fn set_package_status(
        &self,
        package_number: u32,
        status: &str,
        event_code: &str,
    ) -> Result<(), SandboxError> {
        let now = self.shared.now();
        let owner = lock(&self.shared.amazon)
            .fulfillment_orders
            .iter()
            .find(|f| f.packages().any(|(_, p)| p.number == package_number))
            .map(|f| f.id.clone())
            .ok_or(SandboxError::UnknownPackage(package_number))?;
        self.update_fulfillment_order(&owner, |f| {
            let destination = f.destination.clone();
            let package = f
                .shipments
                .iter_mut()
                .flat_map(|s| s.packages.iter_mut())
                .find(|p| p.number == package_number);
            if let Some(package) = package {
                let (city, state, country) =
                    match package.events.iter().max_by_key(|e| e.at.resolve(now)) {
                        Some(last) => (last.city.clone(), last.state.clone(), last.country.clone()),
                        None => destination
                            .map(|d| (d.city, d.state_or_region, d.country_code))
                            .unwrap_or_default(),
                    };
                package.status = status.to_owned();
                package.events.push(ScenarioTrackingEvent {
                    at: When::At(now),
                    code: event_code.to_owned(),
                    description: None,
                    city,
                    state,
                    country,
                });
            }
        })
    }

    /// The carriers' parcels as the sandbox holds them now (times absolute).
    pub fn carrier_parcels(&self) -> Vec<ScenarioParcel> {
        lock(&self.shared.carriers).scenario.parcels.clone()
    }

    /// Adds a scan to the parcel `carrier`/`tracking_number` (the latest by label date
    /// when the number is reused); relative times are measured from the clock's now.
    pub fn add_carrier_scan(
        &self,
        carrier: &str,
        tracking_number: &str,
        mut scan: ScenarioScan,
    ) -> Result<(), SandboxError> {
        let now = self.shared.now();
        scan.at = When::At(scan.at.resolve(now));
        let mut state = lock(&self.shared.carriers);
        let parcel = state
            .scenario
            .parcels
            .iter_mut()
            .filter(|p| p.carrier == carrier && p.tracking_number == tracking_number)
            .max_by_key(|p| p.label_created.resolve(now))
            .ok_or_else(|| SandboxError::UnknownParcel(format!("{carrier} {tracking_number}")))?;
        parcel.scans.push(scan);
        Ok(())
    }

    /// Forgets every access token issued for `carrier`, as if they had expired.
    pub fn expire_carrier_tokens(&self, carrier: &str) {
        lock(&self.shared.carriers).expire_tokens(carrier);
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
/// Lock order, where two are held: `feeds` before `amazon` before `order_index`. Nothing
/// locks `feeds` while holding `amazon`, nor `amazon` while holding `order_index`.
struct Shared {
    clock: SharedClock,
    /// `http://IP:PORT` of the listener, for the URLs the sandbox hands out.
    base_url: String,
    /// Settings and orders, times pinned to absolute values.
    amazon: Mutex<AmazonScenario>,
    /// Bumped by whatever changes `amazon.orders` (add, update, a processed feed),
    /// while still holding `amazon`, so getOrders' index knows to rebuild.
    orders_generation: AtomicU64,
    /// getOrders' sorted view of `amazon.orders`.
    order_index: Mutex<amazon::OrderIndex>,
    /// Issued access tokens and when they expire.
    tokens: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Issued Restricted Data Tokens.
    rdts: Mutex<tokens::RdtStore>,
    /// The seller revoked the application's authorization (`invalid_grant`).
    refresh_revoked: AtomicBool,
    plans: Mutex<plans::UsagePlans>,
    faults: Mutex<faults::FaultQueue>,
    /// Messages accepted by the Messaging API.
    messages: Mutex<Vec<SentMessage>>,
    /// Feed documents, feeds and the refunds they applied.
    feeds: Mutex<feeds::FeedStore>,
    /// Posts accepted by the chat receivers and the webhook's idempotency keys.
    chat: Mutex<chat::ChatLog>,
    /// The carriers' parcels and issued tokens.
    carriers: Mutex<carriers::CarrierState>,
    /// The other marketplaces' orders, tokens and what their APIs were asked to do.
    shopify: Mutex<marketplaces::shopify::ShopifyState>,
    ebay: Mutex<marketplaces::ebay::EbayState>,
    walmart: Mutex<marketplaces::walmart::WalmartState>,
    /// The HMAC key of the signed webhook receiver.
    webhook_secret: String,
    journal: journal::Journal,
}

impl Shared {
    /// Now, in whole seconds like every date the contract shows.
    fn now(&self) -> DateTime<Utc> {
        whole_seconds(self.clock.now())
    }

    /// Tells getOrders' index that `amazon.orders` changed.
    fn orders_changed(&self) {
        self.orders_generation.fetch_add(1, Ordering::AcqRel);
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
    /// A carrier's API: `ups.track`, `fedex.token`, `dpd.login`, …
    Carrier(&'static str),
    /// Another marketplace's API: `shopify.graphql`, `ebay.getOrders`, `walmart.token`, …
    Marketplace(&'static str),
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
            ("GET", ["orders", "v0", "orders", id, "buyerInfo"]) if !id.is_empty() => {
                Operation::SpApi(amazon::GET_ORDER_BUYER_INFO)
            }
            ("GET", ["orders", "v0", "orders", id, "address"]) if !id.is_empty() => {
                Operation::SpApi(amazon::GET_ORDER_ADDRESS)
            }
            ("GET", ["orders", "2026-01-01", "orders", id]) if !id.is_empty() => {
                Operation::SpApi(amazon_packages::GET_ORDER_2026)
            }
            ("POST", ["tokens", "2021-03-01", "restrictedDataToken"]) => {
                Operation::SpApi(tokens::CREATE_RESTRICTED_DATA_TOKEN)
            }
            (_, ["fba", "outbound", "2020-07-01", rest @ ..]) => {
                fulfillment::classify(method, rest).map_or(Operation::Unknown, Operation::SpApi)
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
            (_, [prefix, rest @ ..]) if marketplaces::PREFIXES.contains(prefix) => {
                marketplaces::classify(method, prefix, rest)
                    .map_or(Operation::Unknown, Operation::Marketplace)
            }
            (_, [carrier, rest @ ..]) if carriers::CARRIERS.contains(carrier) => {
                carriers::classify(method, carrier, rest)
                    .map_or(Operation::Unknown, Operation::Carrier)
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
            Operation::SpApi(name)
            | Operation::Storage(name)
            | Operation::Carrier(name)
            | Operation::Marketplace(name) => (*name).to_owned(),
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
            feeds::GET_FEEDS | fulfillment::LIST_ALL_FULFILLMENT_ORDERS => Some("nextToken"),
            _ => None,
        }
    }
}

/// Paths answered in the SP-API error shape when nothing else matches.
fn is_sp_api_path(path: &str) -> bool {
    ["/orders/", "/messaging/", "/feeds/", "/tokens/", "/fba/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}
