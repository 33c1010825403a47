//! Sources: one module per upstream. A source reads and turns what it reads into the
//! domain model; it never decides and never writes to the store itself. The poller here
//! owns the window arithmetic and hands each page to the store in one transaction.
//!
//! Windows overlap: each starts `overlap` before the last watermark and ends at most at
//! now − `lag` (Amazon shows updates about two minutes late). The store dedupes what the
//! overlap reads twice. A long gap (first start, an outage) is read as several windows
//! of at most `max_window`, each moving the watermark, so a catch-up survives a restart
//! and is paced by the upstream's usage plan, not sent as one burst. Within a window,
//! listing runs ahead of the item calls so both usage plans are kept busy; each page is
//! stored once its items are in. A window that fails anywhere leaves the watermark where
//! it was and is read again (what was stored is deduped).
//!
//! The daily reconciliation sweep re-lists the last 72 hours up to the watermark and
//! stores whatever the windows missed; the caller alerts on it.

pub mod amazon;
pub mod carriers;
pub mod ebay;
pub mod mail;
pub mod shopify;
pub mod walmart;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};

use crate::http::UpstreamError;
use crate::model::{Order, OrderItem, SalesChannel};
use crate::schedule::Schedule;
use crate::store::{IngestReport, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{operation}: {error}")]
    Upstream {
        operation: &'static str,
        error: UpstreamError,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Not polled: its credentials were refused at `since` and have not been fixed.
    #[error("stopped since {since}: credentials refused")]
    Halted { since: DateTime<Utc> },
}

impl SourceError {
    pub fn upstream(operation: &'static str) -> impl FnOnce(UpstreamError) -> SourceError {
        move |error| SourceError::Upstream { operation, error }
    }

    /// The upstream answered, but with something that breaks its contract.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            SourceError::Upstream {
                error: UpstreamError::Malformed { .. },
                ..
            }
        )
    }

    /// The upstream refused the account's credentials: no retry will help until a
    /// person fixes them.
    pub fn is_credentials(&self) -> bool {
        matches!(
            self,
            SourceError::Upstream {
                error: UpstreamError::Credentials(_),
                ..
            }
        )
    }
}

/// How a source's windows are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    pub overlap: Duration,
    /// How far behind now a window must end (the upstream's visibility delay).
    pub lag: Duration,
    /// Where the very first window starts.
    pub initial_lookback: Duration,
    /// The longest single window; a longer gap is read as several.
    pub max_window: Duration,
    /// How far back the reconciliation sweep looks.
    pub sweep_span: Duration,
}

impl Default for WindowPolicy {
    fn default() -> Self {
        Self {
            overlap: Duration::minutes(10),
            lag: Duration::minutes(3),
            initial_lookback: Duration::days(7),
            max_window: Duration::days(31),
            sweep_span: Duration::hours(72),
        }
    }
}

/// `[from, to]`, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollWindow {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl PollWindow {
    /// The next window after `watermark`, or `None` when it would be empty.
    pub fn next(
        watermark: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        policy: WindowPolicy,
    ) -> Option<Self> {
        let from = match watermark {
            Some(w) => w - policy.overlap,
            None => now - policy.initial_lookback,
        };
        let to = (now - policy.lag).min(from + policy.max_window.max(policy.overlap * 2));
        (to > from).then_some(Self { from, to })
    }
}

/// One page of a listing.
#[derive(Debug, Default)]
pub struct OrdersPage {
    pub orders: Vec<Order>,
    /// Orders on the page that break the contract: (id, why). Logged and skipped.
    pub skipped: Vec<(String, String)>,
    /// Where the next page starts; `None` on the last.
    pub next_token: Option<String>,
}

/// A marketplace that lists orders by last update.
#[async_trait]
pub trait OrderSource: Send + Sync {
    /// Stable name of this poller, e.g. `amazon/us-main`; keys its checkpoint.
    fn key(&self) -> &str;
    fn channel(&self) -> SalesChannel;
    fn schedule(&self) -> &Schedule;
    fn window_policy(&self) -> WindowPolicy;
    /// One page of the orders updated within the window, without items.
    async fn orders_page(
        &self,
        window: PollWindow,
        next_token: Option<String>,
    ) -> Result<OrdersPage, SourceError>;
    /// The items of one order.
    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError>;

    /// The parcels the seller shipped `order` in, as the marketplace has them, for the
    /// carriers to be asked about. `None` when this source leaves parcels to another
    /// reader (Amazon: the Orders packages and FBA tracking).
    async fn shipped_parcels(
        &self,
        _order: &Order,
    ) -> Result<Option<Vec<ShippedParcel>>, SourceError> {
        Ok(None)
    }
}

/// A parcel a marketplace says an order was shipped in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShippedParcel {
    /// The carrier as the marketplace names it (`UPS`, `FedEx`, `DHL Express`).
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: Option<DateTime<Utc>>,
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollReport {
    /// The last window read.
    pub window: Option<PollWindow>,
    /// How many windows the poll read (more than one while catching up).
    pub windows: usize,
    pub fetched: usize,
    /// Orders that broke the contract: (id, why).
    pub skipped: Vec<(String, String)>,
    pub ingest: IngestReport,
}

impl PollReport {
    fn add(&mut self, other: PollReport) {
        self.window = other.window.or(self.window);
        self.windows += other.windows;
        self.fetched += other.fetched;
        self.skipped.extend(other.skipped);
        self.ingest.stored += other.ingest.stored;
        self.ingest.unchanged += other.ingest.unchanged;
        self.ingest.events += other.ingest.events;
    }
}

/// Pages listed ahead of the item calls, at most (bounds memory in a long backlog).
const LIST_AHEAD: usize = 64;

/// Poll until caught up: window after window, each moving the watermark only if
/// everything in it was stored.
pub async fn poll_once(
    source: &dyn OrderSource,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<PollReport, SourceError> {
    let mut report = PollReport::default();
    loop {
        let watermark = store.checkpoint(source.key()).await?;
        let Some(window) = PollWindow::next(watermark, now, source.window_policy()) else {
            return Ok(report);
        };
        let read = read_window(source, store, window, now).await?;
        store
            .ingest(source.key(), &[], Some(window.to), now)
            .await?;
        report.add(PollReport {
            window: Some(window),
            windows: 1,
            ..read.into()
        });
        // Caught up: the next window would only be this one's overlap again.
        if window.to >= now - source.window_policy().lag {
            return Ok(report);
        }
    }
}

/// What the reconciliation sweep found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SweepReport {
    pub window: Option<PollWindow>,
    pub listed: usize,
    /// Orders the windows missed (new, or newer than stored), now stored.
    pub missed: Vec<String>,
    pub skipped: Vec<(String, String)>,
}

/// The checkpoint key of a source's sweep (when it last ran).
pub fn sweep_key(source: &dyn OrderSource) -> String {
    format!("{}/sweep", source.key())
}

/// Whether the daily sweep is due: it last ran a day ago. A source's first poll counts
/// as its first sweep (it has just read everything), so it only notes the time.
pub async fn sweep_due(
    source: &dyn OrderSource,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    match store.checkpoint(&sweep_key(source)).await? {
        Some(last) => Ok(now - last >= Duration::days(1)),
        None => {
            store
                .ingest(&sweep_key(source), &[], Some(now), now)
                .await?;
            Ok(false)
        }
    }
}

/// Re-list the sweep span up to the watermark and store whatever is missing or older
/// than listed. Orders after the watermark are the next poll's, not misses.
pub async fn sweep(
    source: &dyn OrderSource,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<SweepReport, SourceError> {
    let policy = source.window_policy();
    let Some(watermark) = store.checkpoint(source.key()).await? else {
        return Ok(SweepReport::default());
    };
    let window = PollWindow {
        from: now - policy.sweep_span,
        to: watermark.min(now - policy.lag),
    };
    let mut report = SweepReport {
        window: Some(window),
        ..SweepReport::default()
    };
    if window.to > window.from {
        let read = read_window(source, store, window, now).await?;
        report.listed = read.fetched;
        report.missed = read.ingest_ids;
        report.skipped = read.skipped;
    }
    store
        .ingest(&sweep_key(source), &[], Some(now), now)
        .await?;
    Ok(report)
}

/// What reading one window did.
#[derive(Debug, Default)]
struct WindowRead {
    fetched: usize,
    skipped: Vec<(String, String)>,
    ingest: IngestReport,
    /// Orders stored because they were new or changed.
    ingest_ids: Vec<String>,
}

impl From<WindowRead> for PollReport {
    fn from(read: WindowRead) -> Self {
        PollReport {
            fetched: read.fetched,
            skipped: read.skipped,
            ingest: read.ingest,
            ..PollReport::default()
        }
    }
}

/// List a window page by page while the previous pages' items are fetched; store each
/// page once complete. The watermark is the caller's to move.
async fn read_window(
    source: &dyn OrderSource,
    store: &dyn Store,
    window: PollWindow,
    now: DateTime<Utc>,
) -> Result<WindowRead, SourceError> {
    let (pages_tx, mut pages_rx) = tokio::sync::mpsc::channel::<OrdersPage>(LIST_AHEAD);
    let list = async move {
        let mut next_token = None;
        loop {
            let page = source.orders_page(window, next_token).await?;
            next_token = page.next_token.clone();
            if pages_tx.send(page).await.is_err() || next_token.is_none() {
                return Ok::<(), SourceError>(());
            }
        }
    };
    let store_pages = async {
        let mut read = WindowRead::default();
        while let Some(page) = pages_rx.recv().await {
            for (id, reason) in &page.skipped {
                crate::telemetry::order_skipped(source.key(), id, reason);
            }
            read.fetched += page.orders.len() + page.skipped.len();
            read.skipped.extend(page.skipped);
            let ids: Vec<String> = page.orders.iter().map(|o| o.id.clone()).collect();
            let known = store.known_versions(source.channel(), &ids).await?;
            let mut changed = Vec::new();
            for mut order in page.orders {
                // Items cost a rate-limited call each: fetch them only for new or newer
                // orders.
                let stale = known
                    .get(&order.id)
                    .is_none_or(|at| *at < order.last_update);
                if !stale {
                    read.ingest.unchanged += 1;
                    continue;
                }
                order.items = match items_of(source, &order).await? {
                    Ok(items) => items,
                    Err(reason) => {
                        crate::telemetry::order_skipped(source.key(), &order.id, &reason);
                        read.skipped.push((order.id.clone(), reason));
                        continue;
                    }
                };
                read.ingest_ids.push(order.id.clone());
                changed.push(order);
            }
            if !changed.is_empty() {
                let ingest = store.ingest(source.key(), &changed, None, now).await?;
                read.ingest.stored += ingest.stored;
                read.ingest.unchanged += ingest.unchanged;
                read.ingest.events += ingest.events;
            }
        }
        Ok::<WindowRead, SourceError>(read)
    };
    // A listing that fails still lets the pages already listed be stored (the
    // sender drops, the store loop drains and ends); a store loop that fails stops the
    // listing at its next page.
    let (listed, stored) = tokio::join!(list, store_pages);
    let read = stored?;
    listed?;
    Ok(read)
}

/// An order's items; `Err(reason)` when Amazon's answer breaks the contract twice running
/// (a truncated body once is tried again at once). That order is skipped, so bad data in
/// one order does not stall the account; the daily sweep reads it again.
async fn items_of(
    source: &dyn OrderSource,
    order: &Order,
) -> Result<Result<Vec<OrderItem>, String>, SourceError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match source.order_items(order).await {
            Ok(items) => return Ok(Ok(items)),
            Err(error) if error.is_malformed() && tries == 2 => {
                return Ok(Err(error.to_string()));
            }
            Err(error) if error.is_malformed() => {}
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    const POLICY: WindowPolicy = WindowPolicy {
        overlap: Duration::minutes(10),
        lag: Duration::minutes(2),
        initial_lookback: Duration::days(7),
        max_window: Duration::days(1),
        sweep_span: Duration::hours(72),
    };

    #[test]
    fn first_window_looks_back_one_max_window_at_a_time() {
        let w = PollWindow::next(None, now(), POLICY);
        assert_eq!(
            w,
            Some(PollWindow {
                from: now() - Duration::days(7),
                to: now() - Duration::days(6)
            })
        );
    }

    #[test]
    fn a_caught_up_window_stops_short_of_now() {
        let w = PollWindow::next(Some(now() - Duration::hours(3)), now(), POLICY);
        assert_eq!(w.map(|w| w.to), Some(now() - Duration::minutes(2)));
    }

    #[test]
    fn later_windows_overlap_the_previous_one() {
        let watermark = now() - Duration::minutes(7);
        let w = PollWindow::next(Some(watermark), now(), POLICY);
        assert_eq!(w.map(|w| w.from), Some(watermark - Duration::minutes(10)));
        assert_eq!(w.map(|w| w.to), Some(now() - Duration::minutes(2)));
    }

    #[test]
    fn an_empty_window_is_skipped() {
        let no_overlap = WindowPolicy {
            overlap: Duration::zero(),
            ..POLICY
        };
        assert_eq!(
            PollWindow::next(Some(now() - Duration::minutes(1)), now(), no_overlap),
            None
        );
    }
}
