//! The tracker: which watched parcels to ask the carriers about now, within each
//! carrier's pace and daily quota, and what to store from the answers.
//!
//! Polling adapts to the parcel: new labels and parcels out for delivery are asked
//! about often, quiet ones rarely, settled ones (delivered, returned, cancelled) a few
//! more times during a grace period (carriers post corrections) and then never. Each
//! carrier is asked on its own task, so one that fails or is slow never holds the
//! others back. A tracking event reaches the rules only when the normalised status or
//! a derived condition really changes (the store compares).
//!
//! It never decides what to say to a buyer, and never logs a token or a secret.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use tokio::sync::Mutex;

use super::history::{ConditionLimits, ParcelHistory, is_terminal};
use super::{Carrier, CarrierClient, CarrierError, CarrierParcel, ParcelQuery, TrackOutcome};
use crate::clock::SharedClock;
use crate::model::{Subject, TrackingStatus};
use crate::store::{ParcelWatch, ShipmentReport, Store, StoreError};

/// At most this many parcels per poll; the rest are due next time.
const PARCELS_PER_POLL: i64 = 2_000;

/// How often a parcel is asked about, by where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPlan {
    /// Not found yet or label only, in its first two days.
    pub new_label: Duration,
    /// Not found or label only, older.
    pub old_label: Duration,
    /// Out for delivery, attempted, waiting at a pickup point.
    pub last_mile: Duration,
    /// Moving: a new scan in the last 24 hours.
    pub moving: Duration,
    /// On its way but quiet for a day or more.
    pub quiet: Duration,
    /// Settled: asked this often during the grace period.
    pub settled: Duration,
    /// How long a settled parcel is still asked about.
    pub grace: Duration,
    /// After a failed call for the parcel's carrier.
    pub after_failure: Duration,
}

impl Default for PollPlan {
    fn default() -> Self {
        Self {
            new_label: Duration::hours(2),
            old_label: Duration::hours(6),
            last_mile: Duration::minutes(30),
            moving: Duration::hours(3),
            quiet: Duration::hours(8),
            settled: Duration::hours(24),
            grace: Duration::days(3),
            after_failure: Duration::minutes(15),
        }
    }
}

/// A carrier's limits: a steady pace and an optional daily quota (UTC days).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CarrierPace {
    pub calls_per_second: f64,
    pub daily_quota: Option<u32>,
}

/// One carrier's client with its limits.
pub struct CarrierConnection {
    pub client: Arc<dyn CarrierClient>,
    pub pace: CarrierPace,
    usage: Mutex<Usage>,
}

#[derive(Debug, Default)]
struct Usage {
    next_call: Option<tokio::time::Instant>,
    day: Option<NaiveDate>,
    calls_today: u32,
}

impl CarrierConnection {
    pub fn new(client: Arc<dyn CarrierClient>, pace: CarrierPace) -> Self {
        Self {
            client,
            pace,
            usage: Mutex::new(Usage::default()),
        }
    }

    /// Waits for the carrier's pace and counts the call against today's quota; an
    /// error when the quota is spent.
    async fn admit(&self, now: DateTime<Utc>) -> Result<(), CarrierError> {
        let mut usage = self.usage.lock().await;
        let today = now.date_naive();
        if usage.day != Some(today) {
            usage.day = Some(today);
            usage.calls_today = 0;
        }
        if let Some(quota) = self.pace.daily_quota
            && usage.calls_today >= quota
        {
            let until = today
                .succ_opt()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map_or(now, |d| d.and_utc());
            return Err(CarrierError::QuotaSpent {
                carrier: self.client.carrier(),
                quota,
                until,
            });
        }
        if let Some(at) = usage.next_call {
            tokio::time::sleep_until(at).await;
        }
        let spacing = if self.pace.calls_per_second > 0.0 {
            StdDuration::from_secs_f64((1.0 / self.pace.calls_per_second).min(3600.0))
        } else {
            StdDuration::ZERO
        };
        usage.next_call = Some(tokio::time::Instant::now() + spacing);
        usage.calls_today += 1;
        Ok(())
    }
}

/// What one tracker poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrackReport {
    /// Parcels asked about.
    pub asked: usize,
    /// Parcels the carrier knew.
    pub found: usize,
    /// Parcels the carrier did not know (yet).
    pub not_found: usize,
    /// Parcels that settled and will not be asked about again.
    pub stopped: usize,
    pub shipments: ShipmentReport,
    /// Calls that failed, by carrier: the error text.
    pub failures: BTreeMap<String, String>,
    /// Carriers whose credentials were refused.
    pub credentials_failing: Vec<(Carrier, String)>,
}

/// Which carriers nightdesk can ask, and how.
pub struct Tracker {
    connections: HashMap<Carrier, Arc<CarrierConnection>>,
    limits: ConditionLimits,
    plan: PollPlan,
    clock: SharedClock,
}

impl Tracker {
    pub fn new(
        connections: Vec<CarrierConnection>,
        limits: ConditionLimits,
        plan: PollPlan,
        clock: SharedClock,
    ) -> Self {
        Self {
            connections: connections
                .into_iter()
                .map(|c| (c.client.carrier(), Arc::new(c)))
                .collect(),
            limits,
            plan,
            clock,
        }
    }

    pub fn carriers(&self) -> Vec<Carrier> {
        let mut carriers: Vec<Carrier> = self.connections.keys().copied().collect();
        carriers.sort();
        carriers
    }

    pub fn client(&self, carrier: Carrier) -> Option<Arc<dyn CarrierClient>> {
        self.connections.get(&carrier).map(|c| c.client.clone())
    }

    /// Asks about every due parcel of a configured carrier and stores what changed.
    pub async fn poll(&self, store: &dyn Store) -> Result<TrackReport, StoreError> {
        let now = self.clock.now();
        let due = store.due_parcels(now, PARCELS_PER_POLL).await?;
        let mut by_carrier: HashMap<Carrier, Vec<ParcelWatch>> = HashMap::new();
        for watch in due {
            match watch.carrier.parse::<Carrier>() {
                Ok(carrier) if self.connections.contains_key(&carrier) => {
                    by_carrier.entry(carrier).or_default().push(watch);
                }
                // Not configured (or not a carrier nightdesk asks): look again in a day,
                // in case the config gains it.
                _ => {
                    let mut later = watch;
                    later.next_poll_at = now + Duration::days(1);
                    store.save_parcel_poll(&later, None, now).await?;
                }
            }
        }
        let tasks = by_carrier.into_iter().filter_map(|(carrier, watches)| {
            let connection = self.connections.get(&carrier)?.clone();
            Some(self.poll_carrier(connection, watches, store))
        });
        let mut report = TrackReport::default();
        for result in futures_util::future::join_all(tasks).await {
            let one = result?;
            report.asked += one.asked;
            report.found += one.found;
            report.not_found += one.not_found;
            report.stopped += one.stopped;
            report.shipments.add(&one.shipments);
            report.failures.extend(one.failures);
            report.credentials_failing.extend(one.credentials_failing);
        }
        Ok(report)
    }

    /// One carrier's due parcels, in batches of what one call may carry.
    async fn poll_carrier(
        &self,
        connection: Arc<CarrierConnection>,
        watches: Vec<ParcelWatch>,
        store: &dyn Store,
    ) -> Result<TrackReport, StoreError> {
        let mut report = TrackReport::default();
        let carrier = connection.client.carrier();
        let size = connection.client.batch_limit().max(1);
        let mut batches = watches.chunks(size);
        while let Some(batch) = batches.next() {
            let now = self.clock.now();
            let queries: Vec<ParcelQuery> = batch.iter().map(query_of).collect();
            let answer = match connection.admit(now).await {
                Ok(()) => connection.client.track(&queries).await,
                Err(error) => Err(error),
            };
            let outcomes = match answer {
                Ok(outcomes) => {
                    crate::telemetry::carrier_answered(carrier.as_str(), queries.len());
                    outcomes
                }
                Err(error) => {
                    crate::telemetry::carrier_failed(carrier.as_str(), &error);
                    report
                        .failures
                        .insert(carrier.as_str().to_owned(), error.to_string());
                    let stop = !error.is_retryable();
                    if let CarrierError::Credentials { detail, .. } = &error {
                        report.credentials_failing.push((carrier, detail.clone()));
                    }
                    let retry_at = match &error {
                        CarrierError::QuotaSpent { until, .. } => *until,
                        _ => now + self.plan.after_failure,
                    };
                    // This batch and, when no retry will help or the quota is spent,
                    // the rest of the carrier's parcels wait; other carriers go on.
                    let quota = matches!(error, CarrierError::QuotaSpent { .. });
                    let waiting: Vec<&ParcelWatch> = if stop || quota {
                        batch.iter().chain(batches.by_ref().flatten()).collect()
                    } else {
                        batch.iter().collect()
                    };
                    for watch in waiting {
                        let mut later = watch.clone();
                        later.next_poll_at = retry_at;
                        store.save_parcel_poll(&later, None, now).await?;
                    }
                    continue;
                }
            };
            for watch in batch {
                report.asked += 1;
                let mine: Vec<&TrackOutcome> = outcomes
                    .iter()
                    .filter(|o| same_number(o.tracking_number(), &watch.tracking_number))
                    .collect();
                let (saved, shipments) = self.apply(watch, &mine, now, store).await?;
                match saved {
                    Applied::Found => report.found += 1,
                    Applied::NotFound => report.not_found += 1,
                }
                if shipments.1 {
                    report.stopped += 1;
                }
                report.shipments.add(&shipments.0);
            }
        }
        Ok(report)
    }

    /// Merges one parcel's answers into its history and stores the result.
    async fn apply(
        &self,
        watch: &ParcelWatch,
        outcomes: &[&TrackOutcome],
        now: DateTime<Utc>,
        store: &dyn Store,
    ) -> Result<(Applied, (ShipmentReport, bool)), StoreError> {
        let mut history = parse_history(watch);
        let found: Vec<&CarrierParcel> = outcomes
            .iter()
            .filter_map(|o| match o {
                TrackOutcome::Found(parcel) => Some(parcel),
                _ => None,
            })
            .collect();
        let applied = match pick_shipment(
            &found,
            watch.shipped_at,
            history.carrier_shipment_id.as_deref(),
        ) {
            Some(parcel) => {
                history.merge(parcel, now);
                Applied::Found
            }
            None => {
                let detail = outcomes
                    .iter()
                    .find_map(|o| match o {
                        TrackOutcome::NotFound { detail, .. }
                        | TrackOutcome::Rejected { detail, .. } => Some(detail.clone()),
                        TrackOutcome::Found(_) => None,
                    })
                    .unwrap_or_else(|| {
                        "the carrier's answer did not mention this number".to_owned()
                    });
                history.not_found(&detail, now);
                Applied::NotFound
            }
        };
        let conditions = history.conditions(watch.shipped_at, watch.promised_by, self.limits, now);
        let shipment = history.shipment(&watch.carrier, &watch.tracking_number, &conditions);
        let mut next = watch.clone();
        next.next_poll_at = now + self.interval(&history, watch.shipped_at, now);
        let stopped = self.settled_long_enough(&history, now);
        if stopped {
            next.stopped_at = Some(now);
        }
        next.history = serde_json::to_string(&history).ok();
        let report = store.save_parcel_poll(&next, Some(&shipment), now).await?;
        Ok((applied, (report, stopped)))
    }

    /// How long until the parcel is asked about again.
    fn interval(
        &self,
        history: &ParcelHistory,
        shipped_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Duration {
        let plan = &self.plan;
        let status = history.status();
        if is_terminal(status) {
            return plan.settled;
        }
        match status {
            TrackingStatus::Unknown | TrackingStatus::LabelCreated => {
                let young = shipped_at.is_none_or(|at| now - at < Duration::days(2));
                if young {
                    plan.new_label
                } else {
                    plan.old_label
                }
            }
            TrackingStatus::OutForDelivery
            | TrackingStatus::DeliveryAttempted
            | TrackingStatus::AvailableForPickup => plan.last_mile,
            _ => {
                let recent = history
                    .last_scan_at()
                    .is_some_and(|at| now - at < Duration::hours(24));
                if recent { plan.moving } else { plan.quiet }
            }
        }
    }

    /// Settled, and the grace period since its last scan has passed.
    fn settled_long_enough(&self, history: &ParcelHistory, now: DateTime<Utc>) -> bool {
        if !is_terminal(history.status()) {
            return false;
        }
        let settled_at = history
            .current
            .as_ref()
            .and_then(|e| e.at.utc)
            .or(history.last_new_event_seen);
        settled_at.is_none_or(|at| now - at >= self.plan.grace)
    }
}

enum Applied {
    Found,
    NotFound,
}

/// The stored history, or a fresh one (a corrupt one is logged and started over: the
/// carrier repeats its whole history on every answer).
fn parse_history(watch: &ParcelWatch) -> ParcelHistory {
    match watch
        .history
        .as_deref()
        .map(serde_json::from_str::<ParcelHistory>)
    {
        Some(Ok(history)) => history,
        Some(Err(error)) => {
            tracing::warn!(
                carrier = %watch.carrier,
                tracking_number = %watch.tracking_number,
                %error,
                "Stored parcel history unreadable; starting it over."
            );
            ParcelHistory::default()
        }
        None => ParcelHistory::default(),
    }
}

fn query_of(watch: &ParcelWatch) -> ParcelQuery {
    serde_json::from_str(&watch.query).unwrap_or_else(|_| ParcelQuery {
        tracking_number: watch.tracking_number.clone(),
        ship_date: watch.shipped_at.map(|at| at.date_naive()),
        ..ParcelQuery::default()
    })
}

fn same_number(a: &str, b: &str) -> bool {
    let strip = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase()
    };
    strip(a) == strip(b)
}

/// Of several shipments under one number (carriers reuse numbers), the one this parcel
/// is: the one already followed, else the one shipped closest after our label (a
/// day's slack for time zones), else the newest.
fn pick_shipment<'a>(
    found: &[&'a CarrierParcel],
    shipped_at: Option<DateTime<Utc>>,
    followed: Option<&str>,
) -> Option<&'a CarrierParcel> {
    if let Some(id) = followed
        && let Some(parcel) = found
            .iter()
            .find(|p| p.carrier_shipment_id.as_deref() == Some(id))
    {
        return Some(parcel);
    }
    if let Some(shipped) = shipped_at {
        let earliest = shipped.date_naive() - Duration::days(1);
        let candidate = found
            .iter()
            .filter(|p| p.ship_date.is_some_and(|d| d >= earliest))
            .min_by_key(|p| p.ship_date);
        if let Some(parcel) = candidate {
            return Some(parcel);
        }
        // Only older shipments than our label: someone else's parcel under a reused
        // number, unless the carrier gives no dates at all.
        if found.iter().all(|p| p.ship_date.is_some()) && !found.is_empty() {
            return None;
        }
    }
    found.iter().max_by_key(|p| p.ship_date).copied()
}

/// A parcel to start watching, due at once.
pub fn watch(
    subject: Subject,
    carrier: Carrier,
    query: ParcelQuery,
    shipped_at: Option<DateTime<Utc>>,
    promised_by: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> ParcelWatch {
    ParcelWatch {
        subject,
        carrier: carrier.as_str().to_owned(),
        tracking_number: query.tracking_number.clone(),
        query: serde_json::to_string(&query).unwrap_or_default(),
        shipped_at,
        promised_by,
        history: None,
        next_poll_at: now,
        stopped_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::SalesChannel;
    use crate::sources::carriers::{CarrierEvent, EventLocation, EventTime, ZoneSource};
    use crate::store::testing;
    use async_trait::async_trait;
    use chrono::TimeZone;
    use std::sync::Mutex as StdMutex;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn scan(at: DateTime<Utc>, status: TrackingStatus, code: &str) -> CarrierEvent {
        CarrierEvent {
            at: EventTime {
                local: at.naive_utc(),
                utc: Some(at),
                zone: ZoneSource::Carrier,
            },
            status,
            reason: None,
            raw_code: code.to_owned(),
            text: code.to_owned(),
            location: EventLocation::default(),
            correction: false,
        }
    }

    /// A carrier that answers what the test set, and counts the calls.
    struct Scripted {
        carrier: Carrier,
        answers: StdMutex<Vec<Result<Vec<TrackOutcome>, CarrierError>>>,
        calls: StdMutex<Vec<Vec<String>>>,
    }

    impl Scripted {
        fn new(carrier: Carrier) -> Arc<Self> {
            Arc::new(Self {
                carrier,
                answers: StdMutex::new(Vec::new()),
                calls: StdMutex::new(Vec::new()),
            })
        }

        fn answer(&self, answer: Result<Vec<TrackOutcome>, CarrierError>) {
            if let Ok(mut answers) = self.answers.lock() {
                answers.push(answer);
            }
        }

        fn calls(&self) -> Vec<Vec<String>> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
    }

    #[async_trait]
    impl CarrierClient for Scripted {
        fn carrier(&self) -> Carrier {
            self.carrier
        }

        fn batch_limit(&self) -> usize {
            2
        }

        async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(batch.iter().map(|q| q.tracking_number.clone()).collect());
            }
            let next = self.answers.lock().ok().and_then(|mut a| {
                if a.is_empty() {
                    None
                } else {
                    Some(a.remove(0))
                }
            });
            next.unwrap_or_else(|| Ok(Vec::new()))
        }
    }

    fn found(
        number: &str,
        ship_date: Option<NaiveDate>,
        id: &str,
        events: Vec<CarrierEvent>,
    ) -> TrackOutcome {
        TrackOutcome::Found(CarrierParcel {
            tracking_number: number.to_owned(),
            carrier_shipment_id: Some(id.to_owned()),
            ship_date,
            events,
            ..CarrierParcel::default()
        })
    }

    fn tracker(clients: Vec<Arc<Scripted>>, clock: &ManualClock) -> Tracker {
        let connections = clients
            .into_iter()
            .map(|c| {
                CarrierConnection::new(
                    c,
                    CarrierPace {
                        calls_per_second: 1000.0,
                        daily_quota: None,
                    },
                )
            })
            .collect();
        Tracker::new(
            connections,
            ConditionLimits::default(),
            PollPlan::default(),
            Arc::new(clock.clone()),
        )
    }

    fn watch_number(
        order: &str,
        carrier: Carrier,
        number: &str,
        shipped: DateTime<Utc>,
    ) -> ParcelWatch {
        watch(
            Subject::order(SalesChannel::Amazon, order),
            carrier,
            ParcelQuery::number(number),
            Some(shipped),
            None,
            shipped,
        )
    }

    #[tokio::test]
    async fn a_reused_number_follows_the_shipment_shipped_after_our_label() -> Result<(), StoreError>
    {
        for t in testing::all().await? {
            let clock = ManualClock::new(t0());
            let fedex = Scripted::new(Carrier::Fedex);
            let day = |d: i64| (t0() - Duration::days(d)).date_naive();
            // Someone else's shipment from last year and ours, under one number.
            fedex.answer(Ok(vec![
                found(
                    "123456789012",
                    Some(day(400)),
                    "old",
                    vec![scan(
                        t0() - Duration::days(399),
                        TrackingStatus::Delivered,
                        "DL",
                    )],
                ),
                found(
                    "123456789012",
                    Some(day(1)),
                    "ours",
                    vec![scan(
                        t0() - Duration::hours(20),
                        TrackingStatus::InTransit,
                        "IT",
                    )],
                ),
            ]));
            let tracker = tracker(vec![fedex.clone()], &clock);
            let w = watch_number(
                "111-0000001-0000001",
                Carrier::Fedex,
                "123456789012",
                t0() - Duration::days(1),
            );
            t.store
                .watch_parcels(std::slice::from_ref(&w), t0())
                .await?;
            let report = tracker.poll(t.store.as_ref()).await?;
            assert_eq!((report.asked, report.found), (1, 1), "{}", t.label);
            let shipments = t.store.shipments(&w.subject).await?;
            assert_eq!(
                shipments.iter().map(|s| s.status).collect::<Vec<_>>(),
                vec![TrackingStatus::InTransit],
                "{}",
                t.label
            );
            let stored = t.store.parcel_watches(Some("123456789012")).await?;
            let history: Option<ParcelHistory> = stored
                .first()
                .and_then(|w| w.history.as_deref())
                .and_then(|h| serde_json::from_str(h).ok());
            assert_eq!(
                history.and_then(|h| h.carrier_shipment_id),
                Some("ours".to_owned()),
                "{}",
                t.label
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn polling_adapts_and_settled_parcels_stop_after_the_grace_period()
    -> Result<(), StoreError> {
        for t in testing::all().await? {
            let clock = ManualClock::new(t0());
            let ups = Scripted::new(Carrier::Ups);
            let tracker = tracker(vec![ups.clone()], &clock);
            let w = watch_number(
                "111-0000002-0000002",
                Carrier::Ups,
                "1Z5R89390357567127",
                t0(),
            );
            t.store
                .watch_parcels(std::slice::from_ref(&w), t0())
                .await?;
            // Out for delivery: asked again in 30 minutes, not before.
            ups.answer(Ok(vec![found(
                "1Z5R89390357567127",
                None,
                "a",
                vec![scan(t0(), TrackingStatus::OutForDelivery, "021")],
            )]));
            tracker.poll(t.store.as_ref()).await?;
            clock.advance(Duration::minutes(20));
            assert_eq!(
                tracker.poll(t.store.as_ref()).await?.asked,
                0,
                "{}",
                t.label
            );
            clock.advance(Duration::minutes(10));
            let delivered_at = t0() + Duration::minutes(30);
            ups.answer(Ok(vec![found(
                "1Z5R89390357567127",
                None,
                "a",
                vec![scan(delivered_at, TrackingStatus::Delivered, "011")],
            )]));
            assert_eq!(
                tracker.poll(t.store.as_ref()).await?.asked,
                1,
                "{}",
                t.label
            );
            // Delivered: once a day during the grace period, then never again.
            let mut stopped = 0;
            for _ in 0..5 {
                clock.advance(Duration::days(1));
                stopped += tracker.poll(t.store.as_ref()).await?.stopped;
            }
            assert_eq!(stopped, 1, "{}", t.label);
            assert_eq!(ups.calls().len(), 2 + 3, "{}: {:?}", t.label, ups.calls());
            clock.advance(Duration::days(10));
            assert_eq!(
                tracker.poll(t.store.as_ref()).await?.asked,
                0,
                "{}",
                t.label
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn one_failing_carrier_does_not_hold_back_the_others() -> Result<(), StoreError> {
        for t in testing::all().await? {
            let clock = ManualClock::new(t0());
            let ups = Scripted::new(Carrier::Ups);
            let dhl = Scripted::new(Carrier::Dhl);
            ups.answer(Err(CarrierError::Credentials {
                carrier: Carrier::Ups,
                detail: "invalid_client".into(),
            }));
            dhl.answer(Ok(vec![found(
                "3318810025",
                None,
                "d",
                vec![scan(t0(), TrackingStatus::InTransit, "transit")],
            )]));
            let tracker = tracker(vec![ups.clone(), dhl.clone()], &clock);
            let watches: Vec<ParcelWatch> = [
                "1Z5R89390357567127",
                "1Z879E930346834440",
                "1Z0000000000000001",
            ]
            .iter()
            .map(|n| watch_number("111-0000003-0000003", Carrier::Ups, n, t0()))
            .chain(std::iter::once(watch_number(
                "111-0000003-0000003",
                Carrier::Dhl,
                "3318810025",
                t0(),
            )))
            .collect();
            t.store.watch_parcels(&watches, t0()).await?;
            let report = tracker.poll(t.store.as_ref()).await?;
            assert_eq!(report.found, 1, "{}", t.label);
            assert_eq!(report.credentials_failing.len(), 1, "{}", t.label);
            // Refused credentials: UPS is asked once, not once per batch.
            assert_eq!(ups.calls().len(), 1, "{}", t.label);
            assert!(report.failures.contains_key("ups"), "{}", t.label);
            // Its parcels wait for the retry time, then are asked again.
            assert!(
                t.store
                    .due_parcels(t0() + Duration::minutes(5), 10)
                    .await?
                    .is_empty(),
                "{}",
                t.label
            );
            assert_eq!(
                t.store
                    .due_parcels(t0() + Duration::minutes(15), 10)
                    .await?
                    .len(),
                3,
                "{}",
                t.label
            );
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_spent_daily_quota_waits_for_midnight_utc() -> Result<(), StoreError> {
        for t in testing::all().await? {
            let clock = ManualClock::new(t0());
            let dhl = Scripted::new(Carrier::Dhl);
            let connection = CarrierConnection::new(
                dhl.clone(),
                CarrierPace {
                    calls_per_second: 1000.0,
                    daily_quota: Some(1),
                },
            );
            let tracker = Tracker::new(
                vec![connection],
                ConditionLimits::default(),
                PollPlan::default(),
                Arc::new(clock.clone()),
            );
            let watches: Vec<ParcelWatch> = ["3318810025", "73891051146", "1234567895"]
                .iter()
                .map(|n| watch_number("111-0000004-0000004", Carrier::Dhl, n, t0()))
                .collect();
            t.store.watch_parcels(&watches, t0()).await?;
            let report = tracker.poll(t.store.as_ref()).await?;
            // Batches of two: the first call is the day's only one.
            assert_eq!(dhl.calls().len(), 1, "{}", t.label);
            assert!(
                report
                    .failures
                    .get("dhl")
                    .is_some_and(|e| e.contains("quota")),
                "{}: {report:?}",
                t.label
            );
            let midnight = (t0() + Duration::days(1))
                .date_naive()
                .and_hms_opt(0, 0, 0)
                .map(|d| d.and_utc());
            let due_then = match midnight {
                Some(at) => t.store.due_parcels(at, 10).await?.len(),
                None => 0,
            };
            assert_eq!(due_then, 3, "{}", t.label);
        }
        Ok(())
    }
}
