//! When a scan happened. Carriers often send a local wall time without a zone (USPS
//! `eventTimestamp`, UPS `date`+`time`, DPD, some FedEx events); nightdesk resolves it
//! with the carrier's own offset fields or the event's location, and otherwise keeps it
//! as unresolved local time. It must never treat a zone-less time as UTC.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::EventLocation;

/// How the UTC instant of an event was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneSource {
    /// The carrier sent an offset or a UTC time.
    Carrier,
    /// From the event's location (country, and state where a country has several zones).
    Location,
    /// Not known: only the local wall time is.
    Unresolved,
}

/// A scan's time: always the local wall time, and the instant when it could be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventTime {
    pub local: NaiveDateTime,
    pub utc: Option<DateTime<Utc>>,
    pub zone: ZoneSource,
}

impl EventTime {
    /// A time the carrier sent with its offset.
    pub fn with_offset(at: DateTime<FixedOffset>) -> Self {
        Self {
            local: at.naive_local(),
            utc: Some(at.with_timezone(&Utc)),
            zone: ZoneSource::Carrier,
        }
    }

    /// A local wall time with an offset text from the carrier (`-05:00`, `-0500`, UPS
    /// Track Alert's `-04.00`); without a usable offset, resolved by `location`.
    pub fn local_with_offset(
        local: NaiveDateTime,
        offset: Option<&str>,
        location: &EventLocation,
    ) -> Self {
        match offset.and_then(parse_offset) {
            Some(offset) => match offset.from_local_datetime(&local).single() {
                Some(at) => Self::with_offset(at),
                None => Self::at_location(local, location),
            },
            None => Self::at_location(local, location),
        }
    }

    /// A local wall time, resolved by where it happened when the place names a zone.
    pub fn at_location(local: NaiveDateTime, location: &EventLocation) -> Self {
        let resolved = zone_of(location).and_then(|tz| {
            // In a DST fold, the earlier instant; in a gap, the time does not exist there.
            tz.from_local_datetime(&local).earliest()
        });
        match resolved {
            Some(at) => Self {
                local,
                utc: Some(at.with_timezone(&Utc)),
                zone: ZoneSource::Location,
            },
            None => Self {
                local,
                utc: None,
                zone: ZoneSource::Unresolved,
            },
        }
    }

    /// Parses an ISO-8601 date-time that may or may not carry an offset (`Z`,
    /// `-07:00`); without one it is local time at `location`. `None` when it is no
    /// date-time at all.
    pub fn parse_iso(text: &str, location: &EventLocation) -> Option<Self> {
        let text = text.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Some(Self::with_offset(at));
        }
        for format in [
            "%Y-%m-%dT%H:%M:%S%.f%:z",
            "%Y-%m-%dT%H:%M:%S%z",
            "%Y-%m-%dT%H:%M%:z",
        ] {
            if let Ok(at) = DateTime::parse_from_str(text, format) {
                return Some(Self::with_offset(at));
            }
        }
        for format in [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
        ] {
            if let Ok(local) = NaiveDateTime::parse_from_str(text, format) {
                return Some(Self::at_location(local, location));
            }
        }
        None
    }

    /// The order events are told apart by: the instant when known, else the wall time.
    pub fn sort_key(&self) -> NaiveDateTime {
        self.utc.map_or(self.local, |utc| utc.naive_utc())
    }
}

/// `+hh:mm`, `-hhmm`, `-hh.mm`, `-hh`, `Z`.
pub fn parse_offset(text: &str) -> Option<FixedOffset> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("z") {
        return Some(Utc.fix());
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| c.is_ascii_digit()).collect();
    if rest
        .chars()
        .any(|c| !(c.is_ascii_digit() || c == ':' || c == '.'))
    {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 14 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

/// The time zone of a place, when its country has one zone or its state names one.
pub fn zone_of(location: &EventLocation) -> Option<Tz> {
    let country = location.country.as_deref()?.trim().to_ascii_uppercase();
    let state = location
        .state
        .as_deref()
        .map(|s| s.trim().to_ascii_uppercase());
    let name = match country.as_str() {
        "US" => us_state_zone(state.as_deref()?)?,
        "CA" => canada_province_zone(state.as_deref()?)?,
        "AU" => australia_state_zone(state.as_deref()?)?,
        other => single_zone_country(other)?,
    };
    name.parse().ok()
}

/// The zone most of a US state keeps (split states go by their larger part).
fn us_state_zone(state: &str) -> Option<&'static str> {
    Some(match state {
        "CT" | "DE" | "DC" | "FL" | "GA" | "IN" | "KY" | "ME" | "MD" | "MA" | "MI" | "NH"
        | "NJ" | "NY" | "NC" | "OH" | "PA" | "RI" | "SC" | "VT" | "VA" | "WV" => "America/New_York",
        "AL" | "AR" | "IL" | "IA" | "KS" | "LA" | "MN" | "MS" | "MO" | "NE" | "ND" | "OK"
        | "SD" | "TN" | "TX" | "WI" => "America/Chicago",
        "CO" | "ID" | "MT" | "NM" | "UT" | "WY" => "America/Denver",
        "AZ" => "America/Phoenix",
        "CA" | "NV" | "OR" | "WA" => "America/Los_Angeles",
        "AK" => "America/Anchorage",
        "HI" => "Pacific/Honolulu",
        "PR" => "America/Puerto_Rico",
        _ => return None,
    })
}

fn canada_province_zone(province: &str) -> Option<&'static str> {
    Some(match province {
        "ON" | "QC" => "America/Toronto",
        "BC" => "America/Vancouver",
        "AB" => "America/Edmonton",
        "MB" => "America/Winnipeg",
        "SK" => "America/Regina",
        "NS" | "NB" | "PE" => "America/Halifax",
        "NL" => "America/St_Johns",
        _ => return None,
    })
}

fn australia_state_zone(state: &str) -> Option<&'static str> {
    Some(match state {
        "NSW" | "ACT" => "Australia/Sydney",
        "VIC" => "Australia/Melbourne",
        "QLD" => "Australia/Brisbane",
        "SA" => "Australia/Adelaide",
        "WA" => "Australia/Perth",
        "TAS" => "Australia/Hobart",
        "NT" => "Australia/Darwin",
        _ => return None,
    })
}

/// Countries (the marketplaces' and their neighbours') with one zone.
fn single_zone_country(country: &str) -> Option<&'static str> {
    Some(match country {
        "DE" => "Europe/Berlin",
        "AT" => "Europe/Vienna",
        "CH" => "Europe/Zurich",
        "FR" => "Europe/Paris",
        "BE" => "Europe/Brussels",
        "NL" => "Europe/Amsterdam",
        "LU" => "Europe/Luxembourg",
        "IT" => "Europe/Rome",
        "ES" => "Europe/Madrid",
        "PL" => "Europe/Warsaw",
        "CZ" => "Europe/Prague",
        "SK" => "Europe/Bratislava",
        "HU" => "Europe/Budapest",
        "SE" => "Europe/Stockholm",
        "DK" => "Europe/Copenhagen",
        "NO" => "Europe/Oslo",
        "FI" => "Europe/Helsinki",
        "IE" => "Europe/Dublin",
        "GB" | "UK" => "Europe/London",
        "IN" => "Asia/Kolkata",
        "JP" => "Asia/Tokyo",
        "SG" => "Asia/Singapore",
        "AE" => "Asia/Dubai",
        "TR" => "Europe/Istanbul",
        "CN" => "Asia/Shanghai",
        "HK" => "Asia/Hong_Kong",
        "KR" => "Asia/Seoul",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn local(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|date| date.and_hms_opt(h, min, 0))
            .unwrap_or_default()
    }

    fn place(state: Option<&str>, country: &str) -> EventLocation {
        EventLocation {
            state: state.map(str::to_owned),
            country: Some(country.to_owned()),
            ..EventLocation::default()
        }
    }

    #[test]
    fn a_zoneless_time_is_resolved_by_its_place_not_taken_as_utc() {
        // 13:58 in Atlanta in November is 18:58 UTC (EST, -5).
        let at = EventTime::at_location(local(2024, 11, 22, 13, 58), &place(Some("GA"), "US"));
        assert_eq!(at.zone, ZoneSource::Location);
        assert_eq!(
            at.utc.map(|u| u.to_rfc3339()),
            Some("2024-11-22T18:58:00+00:00".to_owned())
        );
        // In July Berlin is +2.
        let at = EventTime::at_location(local(2025, 7, 1, 9, 0), &place(None, "DE"));
        assert_eq!(
            at.utc.map(|u| u.to_rfc3339()),
            Some("2025-07-01T07:00:00+00:00".to_owned())
        );
    }

    #[test]
    fn an_unknown_place_leaves_the_time_unresolved() {
        let at = EventTime::at_location(local(2024, 11, 22, 13, 58), &place(None, "US"));
        assert_eq!((at.zone, at.utc), (ZoneSource::Unresolved, None));
        let at = EventTime::parse_iso("2024-08-15T00:00:00", &EventLocation::default());
        assert_eq!(
            at.map(|a| (a.zone, a.utc)),
            Some((ZoneSource::Unresolved, None))
        );
    }

    #[test]
    fn carrier_offsets_win_in_every_spelling() {
        for offset in ["-05:00", "-0500", "-05.00", "-05"] {
            let at = EventTime::local_with_offset(
                local(2024, 1, 2, 10, 0),
                Some(offset),
                &place(None, "DE"),
            );
            assert_eq!(at.zone, ZoneSource::Carrier, "{offset}");
            assert_eq!(
                at.utc.map(|u| u.to_rfc3339()),
                Some("2024-01-02T15:00:00+00:00".to_owned()),
                "{offset}"
            );
        }
        assert_eq!(parse_offset("+25:00"), None);
        assert_eq!(parse_offset("EST"), None);
        let at = EventTime::parse_iso("2018-02-02T12:01:00-07:00", &EventLocation::default());
        assert_eq!(
            at.and_then(|a| a.utc).map(|u| u.to_rfc3339()),
            Some("2018-02-02T19:01:00+00:00".to_owned())
        );
    }
}
