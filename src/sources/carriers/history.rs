//! What nightdesk knows of one parcel: every scan any poll reported, merged, and the
//! status they add up to. Status only moves forward: a duplicate or an older event
//! changes nothing, and a parcel never goes back to an earlier phase (delivered →
//! in transit, in transit → label created) unless the carrier explicitly corrects
//! itself. Within the "on its way" phase the newest event decides, so a delay that
//! clears goes back to in transit.
//!
//! It also derives what carriers never say: a label not scanned after N business days,
//! a parcel stalled with no new scan for N days, a parcel late against its promise.
//! It must never read the clock itself: "now" is passed in.

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::{CarrierEvent, CarrierParcel, ExceptionReason};
use crate::model::{Shipment, TrackingStatus};

/// How far along a parcel is; a status only moves to the same or a later phase.
fn phase(status: TrackingStatus) -> u8 {
    match status {
        TrackingStatus::Unknown => 0,
        TrackingStatus::LabelCreated => 1,
        TrackingStatus::InTransit
        | TrackingStatus::OutForDelivery
        | TrackingStatus::AvailableForPickup
        | TrackingStatus::DeliveryAttempted
        | TrackingStatus::Exception => 2,
        TrackingStatus::Delivered | TrackingStatus::ReturnToSender | TrackingStatus::Cancelled => 3,
    }
}

/// Whether the carrier is done with the parcel.
pub fn is_terminal(status: TrackingStatus) -> bool {
    phase(status) == 3
}

/// Conditions nightdesk derives (rules read them as `shipment.conditions` and get
/// `on_tracking_condition` when one appears).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    /// A label, and no carrier scan after `not_scanned_business_days`.
    NotScanned,
    /// On its way, with no new scan for `stalled_days`.
    Stalled,
    /// Past the promised delivery and not delivered.
    Late,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::NotScanned => "not_scanned",
            Condition::Stalled => "stalled",
            Condition::Late => "late",
        }
    }
}

/// The thresholds of the derived conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConditionLimits {
    pub not_scanned_business_days: u32,
    pub stalled_days: i64,
}

impl Default for ConditionLimits {
    fn default() -> Self {
        Self {
            not_scanned_business_days: 2,
            stalled_days: 4,
        }
    }
}

/// Everything the carrier has said about one parcel, merged across polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelHistory {
    pub carrier_shipment_id: Option<String>,
    pub service: Option<String>,
    /// Oldest first, no duplicates.
    pub events: Vec<CarrierEvent>,
    /// The status the events add up to (forward only).
    pub status: Option<TrackingStatus>,
    pub reason: Option<ExceptionReason>,
    /// The event that set `status`.
    pub current: Option<CarrierEvent>,
    pub estimated_delivery: Option<DateTime<Utc>>,
    /// When a poll last brought a new event (for `stalled` when scans have no zone).
    pub last_new_event_seen: Option<DateTime<Utc>>,
    /// When the carrier first answered "not found" and has not found it since.
    pub not_found_since: Option<DateTime<Utc>>,
    /// The carrier's last "not found" words, for `nightdesk track`.
    pub not_found_detail: Option<String>,
}

/// What one merge changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merge {
    pub new_events: usize,
    pub status_changed: bool,
}

impl ParcelHistory {
    pub fn status(&self) -> TrackingStatus {
        self.status.unwrap_or(TrackingStatus::Unknown)
    }

    /// Adds what a poll reported at `seen`.
    pub fn merge(&mut self, parcel: &CarrierParcel, seen: DateTime<Utc>) -> Merge {
        let mut merge = Merge::default();
        self.not_found_since = None;
        self.not_found_detail = None;
        if parcel.carrier_shipment_id.is_some() {
            self.carrier_shipment_id
                .clone_from(&parcel.carrier_shipment_id);
        }
        if parcel.service.is_some() {
            self.service.clone_from(&parcel.service);
        }
        if parcel.estimated_delivery.is_some() {
            self.estimated_delivery = parcel.estimated_delivery;
        }
        // The carrier's summary of now counts only when it says more than its events: it
        // is usually the newest event again, in other words (UPS `currentStatus`).
        let newest = parcel.events.iter().map(|e| e.at.sort_key()).max();
        let current = parcel
            .current
            .iter()
            .filter(|c| newest.is_none_or(|newest| c.at.sort_key() > newest));
        for event in parcel.events.iter().chain(current) {
            if !self.events.iter().any(|known| same_event(known, event)) {
                self.events.push(event.clone());
                merge.new_events += 1;
            }
        }
        // Stable: events at the same instant keep the carrier's order of arrival.
        self.events.sort_by_key(|e| e.at.sort_key());
        if merge.new_events > 0 {
            self.last_new_event_seen = Some(seen);
        }
        let before = self.status;
        self.settle();
        merge.status_changed = self.status != before;
        merge
    }

    /// The carrier said it does not know the number (yet).
    pub fn not_found(&mut self, detail: &str, seen: DateTime<Utc>) {
        self.not_found_since.get_or_insert(seen);
        self.not_found_detail = Some(detail.to_owned());
        self.status.get_or_insert(TrackingStatus::Unknown);
    }

    /// Walks the events oldest first, letting each move the status only forward (or
    /// back when it is an explicit correction).
    fn settle(&mut self) {
        let mut status: Option<TrackingStatus> = None;
        let mut current: Option<&CarrierEvent> = None;
        for event in &self.events {
            let allowed = match status {
                None => true,
                Some(now) => event.correction || phase(event.status) >= phase(now),
            };
            // An `Unknown` scan (DHL "unknown") says nothing about where the parcel is.
            if allowed && (event.status != TrackingStatus::Unknown || status.is_none()) {
                status = Some(event.status);
                current = Some(event);
            }
        }
        if let Some(event) = current {
            self.status = status;
            self.reason = event.reason;
            self.current = Some(event.clone());
        }
    }

    /// The newest event by time.
    pub fn latest(&self) -> Option<&CarrierEvent> {
        self.events.last()
    }

    /// When the parcel was last scanned: the newest event's instant, or, when its zone
    /// is unknown, when a poll first brought it.
    pub fn last_scan_at(&self) -> Option<DateTime<Utc>> {
        self.latest()
            .and_then(|e| e.at.utc)
            .or(self.last_new_event_seen)
    }

    /// The derived conditions at `now`.
    pub fn conditions(
        &self,
        shipped_at: Option<DateTime<Utc>>,
        promised_by: Option<DateTime<Utc>>,
        limits: ConditionLimits,
        now: DateTime<Utc>,
    ) -> Vec<Condition> {
        let status = self.status();
        let mut found = Vec::new();
        let unscanned = matches!(
            status,
            TrackingStatus::Unknown | TrackingStatus::LabelCreated
        );
        if unscanned
            && let Some(shipped) = shipped_at
            && business_days_between(shipped, now) >= limits.not_scanned_business_days
        {
            found.push(Condition::NotScanned);
        }
        let quiet = self
            .last_scan_at()
            .is_some_and(|at| now - at >= Duration::days(limits.stalled_days));
        if !unscanned && !is_terminal(status) && quiet {
            found.push(Condition::Stalled);
        }
        let promise = self.estimated_delivery.max(promised_by);
        if !is_terminal(status) && promise.is_some_and(|due| now > due) {
            found.push(Condition::Late);
        }
        found
    }

    /// The parcel as the store and the rules see it.
    pub fn shipment(
        &self,
        carrier: &str,
        tracking_number: &str,
        conditions: &[Condition],
    ) -> Shipment {
        let current = self.current.as_ref();
        let latest = self.latest();
        Shipment {
            carrier: carrier.to_owned(),
            tracking_number: tracking_number.to_owned(),
            tracking_url: None,
            status: self.status(),
            exception_reason: self.reason.map(|r| r.as_str().to_owned()),
            raw_code: current.map(|e| e.raw_code.clone()),
            status_text: current
                .map(|e| e.text.clone())
                .or_else(|| self.not_found_detail.clone()),
            last_event_at: latest.and_then(|e| e.at.utc),
            last_event_location: latest.and_then(|e| e.location.display()),
            estimated_delivery: self.estimated_delivery,
            conditions: conditions.iter().map(|c| c.as_str().to_owned()).collect(),
        }
    }
}

/// The same scan reported twice: same time, same code, same place.
fn same_event(a: &CarrierEvent, b: &CarrierEvent) -> bool {
    a.at.local == b.at.local
        && a.raw_code == b.raw_code
        && a.location == b.location
        && a.status == b.status
}

/// Whole business days (Monday–Friday) from `from` to `to`, not counting `from`'s day.
pub fn business_days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
    let mut day = from.date_naive();
    let end = to.date_naive();
    let mut count = 0;
    // Bounded: parcels are watched for weeks, not years.
    for _ in 0..400 {
        if day >= end {
            break;
        }
        let Some(next) = day.succ_opt() else { break };
        day = next;
        if !matches!(day.weekday(), Weekday::Sat | Weekday::Sun) {
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::carriers::{EventLocation, EventTime};
    use chrono::TimeZone;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn event(day: u32, hour: u32, status: TrackingStatus, code: &str) -> CarrierEvent {
        let when = at(day, hour);
        CarrierEvent {
            at: EventTime {
                local: when.naive_utc(),
                utc: Some(when),
                zone: crate::sources::carriers::ZoneSource::Carrier,
            },
            status,
            reason: (status == TrackingStatus::Exception).then_some(ExceptionReason::Delay),
            raw_code: code.to_owned(),
            text: code.to_owned(),
            location: EventLocation::default(),
            correction: false,
        }
    }

    fn report(events: Vec<CarrierEvent>) -> CarrierParcel {
        CarrierParcel {
            tracking_number: "1Z".into(),
            events,
            ..CarrierParcel::default()
        }
    }

    #[test]
    fn the_newest_event_decides_within_a_phase() {
        let mut history = ParcelHistory::default();
        history.merge(
            &report(vec![
                event(2, 8, TrackingStatus::LabelCreated, "M"),
                event(3, 8, TrackingStatus::InTransit, "005"),
            ]),
            at(3, 9),
        );
        assert_eq!(history.status(), TrackingStatus::InTransit);
        let merge = history.merge(
            &report(vec![event(4, 8, TrackingStatus::Exception, "048")]),
            at(4, 9),
        );
        assert_eq!((merge.new_events, merge.status_changed), (1, true));
        assert_eq!(history.reason, Some(ExceptionReason::Delay));
        // The delay clears: back in transit is forward in time, same phase.
        history.merge(
            &report(vec![event(5, 8, TrackingStatus::InTransit, "005")]),
            at(5, 9),
        );
        assert_eq!(
            (history.status(), history.reason),
            (TrackingStatus::InTransit, None)
        );
    }

    #[test]
    fn duplicates_and_out_of_order_events_change_nothing() {
        let mut history = ParcelHistory::default();
        let delivered = event(5, 14, TrackingStatus::Delivered, "011");
        history.merge(&report(vec![delivered.clone()]), at(5, 15));
        let before = history.clone();
        // The same scan again, and an older in-transit scan arriving late.
        let merge = history.merge(
            &report(vec![
                delivered,
                event(4, 8, TrackingStatus::InTransit, "005"),
            ]),
            at(6, 9),
        );
        assert_eq!((merge.new_events, merge.status_changed), (1, false));
        assert_eq!(history.status(), TrackingStatus::Delivered);
        assert_eq!(history.current, before.current);
        // A newer scan of an earlier phase is not a way back either.
        let merge = history.merge(
            &report(vec![event(6, 8, TrackingStatus::InTransit, "005")]),
            at(6, 9),
        );
        assert!(!merge.status_changed);
        assert_eq!(history.status(), TrackingStatus::Delivered);
    }

    #[test]
    fn an_explicit_correction_may_move_back() {
        let mut history = ParcelHistory::default();
        history.merge(
            &report(vec![event(5, 14, TrackingStatus::Delivered, "011")]),
            at(5, 15),
        );
        let mut correction = event(6, 9, TrackingStatus::InTransit, "DX");
        correction.correction = true;
        let merge = history.merge(&report(vec![correction]), at(6, 10));
        assert!(merge.status_changed);
        assert_eq!(history.status(), TrackingStatus::InTransit);
    }

    #[test]
    fn conditions_are_derived_from_label_age_silence_and_promise() {
        let limits = ConditionLimits::default();
        let mut history = ParcelHistory::default();
        // Label on Friday the 20th; Monday the 23rd is one business day, Tuesday two.
        history.merge(
            &report(vec![event(20, 10, TrackingStatus::LabelCreated, "M")]),
            at(20, 11),
        );
        let shipped = Some(at(20, 10));
        assert!(
            history
                .conditions(shipped, None, limits, at(23, 12))
                .is_empty()
        );
        assert_eq!(
            history.conditions(shipped, None, limits, at(24, 12)),
            vec![Condition::NotScanned]
        );
        history.merge(
            &report(vec![event(24, 13, TrackingStatus::InTransit, "005")]),
            at(24, 14),
        );
        assert!(
            history
                .conditions(shipped, None, limits, at(27, 12))
                .is_empty()
        );
        assert_eq!(
            history.conditions(shipped, Some(at(27, 0)), limits, at(28, 14)),
            vec![Condition::Stalled, Condition::Late]
        );
        history.merge(
            &report(vec![event(28, 15, TrackingStatus::Delivered, "011")]),
            at(28, 16),
        );
        assert!(
            history
                .conditions(shipped, Some(at(27, 0)), limits, at(29, 0))
                .is_empty()
        );
    }

    #[test]
    fn not_found_keeps_the_first_time_and_a_find_clears_it() {
        let mut history = ParcelHistory::default();
        history.not_found("TW0001 Tracking Information Not Found", at(2, 8));
        history.not_found("TW0001 Tracking Information Not Found", at(2, 9));
        assert_eq!(history.not_found_since, Some(at(2, 8)));
        assert_eq!(history.status(), TrackingStatus::Unknown);
        history.merge(
            &report(vec![event(2, 10, TrackingStatus::LabelCreated, "M")]),
            at(2, 11),
        );
        assert_eq!(history.not_found_since, None);
        assert_eq!(history.status(), TrackingStatus::LabelCreated);
    }

    #[test]
    fn the_carriers_summary_of_now_is_not_a_second_event() {
        let mut history = ParcelHistory::default();
        let mut parcel = report(vec![event(2, 8, TrackingStatus::Exception, "X/048")]);
        let mut summary = event(2, 8, TrackingStatus::Exception, "048");
        parcel.current = Some(summary.clone());
        history.merge(&parcel, at(2, 9));
        assert_eq!(history.events.len(), 1);
        // A summary newer than every event (a carrier without scan details) counts.
        summary.at = event(3, 8, TrackingStatus::Delivered, "011").at;
        summary.status = TrackingStatus::Delivered;
        parcel.current = Some(summary);
        history.merge(&parcel, at(3, 9));
        assert_eq!(
            (history.events.len(), history.status()),
            (2, TrackingStatus::Delivered)
        );
    }

    #[test]
    fn business_days_skip_weekends() {
        // 2026-11-20 is a Friday.
        assert_eq!(business_days_between(at(20, 10), at(22, 10)), 0);
        assert_eq!(business_days_between(at(20, 10), at(23, 10)), 1);
        assert_eq!(business_days_between(at(20, 10), at(27, 10)), 5);
    }
}
