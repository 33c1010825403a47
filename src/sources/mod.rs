//! Sources: one module per upstream. A source reads and turns what it reads into the
//! domain model; it never decides and never writes to the store itself. The poller here
//! owns the window arithmetic and hands the result to the store in one transaction.
//!
//! Windows overlap: each starts `overlap` before the last watermark and ends at most at
//! now − `lag` (Amazon shows updates about two minutes late). The store dedupes what the
//! overlap reads twice. A window that fails anywhere moves nothing and is read again.

pub mod amazon;

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
}

impl SourceError {
    pub fn upstream(operation: &'static str) -> impl FnOnce(UpstreamError) -> SourceError {
        move |error| SourceError::Upstream { operation, error }
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
        let to = now - policy.lag;
        (to > from).then_some(Self { from, to })
    }
}

/// A marketplace that lists orders by last update.
#[async_trait]
pub trait OrderSource: Send + Sync {
    /// Stable name of this poller, e.g. `amazon/us-main`; keys its checkpoint.
    fn key(&self) -> &str;
    fn channel(&self) -> SalesChannel;
    fn schedule(&self) -> &Schedule;
    fn window_policy(&self) -> WindowPolicy;
    /// Every order updated within the window, without items.
    async fn orders_updated(&self, window: PollWindow) -> Result<Vec<Order>, SourceError>;
    /// The items of one order.
    async fn order_items(&self, order: &Order) -> Result<Vec<OrderItem>, SourceError>;
}

/// What one poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub window: Option<PollWindow>,
    pub fetched: usize,
    pub ingest: IngestReport,
}

/// Poll one window and store it; the watermark moves only if everything succeeded.
pub async fn poll_once(
    source: &dyn OrderSource,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<PollReport, SourceError> {
    let watermark = store.checkpoint(source.key()).await?;
    let Some(window) = PollWindow::next(watermark, now, source.window_policy()) else {
        return Ok(PollReport {
            window: None,
            fetched: 0,
            ingest: IngestReport::default(),
        });
    };
    let orders = source.orders_updated(window).await?;
    let fetched = orders.len();
    let ids: Vec<String> = orders.iter().map(|o| o.id.clone()).collect();
    let known = store.known_versions(source.channel(), &ids).await?;
    let mut changed = Vec::with_capacity(orders.len());
    for mut order in orders {
        // Items cost a rate-limited call each: fetch them only for new or updated orders.
        if known.get(&order.id) == Some(&order.last_update) {
            continue;
        }
        order.items = source.order_items(&order).await?;
        changed.push(order);
    }
    let mut ingest = store.ingest(source.key(), &changed, window.to, now).await?;
    ingest.unchanged += fetched - changed.len();
    Ok(PollReport {
        window: Some(window),
        fetched,
        ingest,
    })
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
    };

    #[test]
    fn first_window_looks_back_and_stops_short_of_now() {
        let w = PollWindow::next(None, now(), POLICY);
        assert_eq!(
            w,
            Some(PollWindow {
                from: now() - Duration::days(7),
                to: now() - Duration::minutes(2)
            })
        );
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
