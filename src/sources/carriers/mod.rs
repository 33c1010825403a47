//! Carriers: live tracking from UPS, FedEx, USPS, DHL and DPD, normalised into one
//! closed status set (research/carriers.md §2). One module per carrier turns that
//! carrier's answers into [`TrackOutcome`]s; [`detect`] recognises a carrier from a
//! number; [`history`] merges what carriers report into a parcel that only moves
//! forward; [`tracker`] decides which parcels to ask about when, within each
//! carrier's limits, and hands the result to the store.
//!
//! A connector reads and normalises; it never decides what to poll, never writes to
//! the store, and never logs a token or a secret.

pub mod call;
pub mod detect;
pub mod dhl;
pub mod dpd;
pub mod fedex;
pub mod history;
pub mod time;
pub mod token;
pub mod tracker;
pub mod ups;
pub mod usps;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::http::UpstreamError;
use crate::model::TrackingStatus;

pub use time::{EventTime, ZoneSource};

/// The carriers nightdesk asks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Carrier {
    Ups,
    Fedex,
    Usps,
    Dhl,
    Dpd,
}

impl Carrier {
    pub const ALL: [Carrier; 5] = [
        Carrier::Ups,
        Carrier::Fedex,
        Carrier::Usps,
        Carrier::Dhl,
        Carrier::Dpd,
    ];

    /// The name used in config, the store and events: `ups`, `fedex`, `usps`, `dhl`, `dpd`.
    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Ups => "ups",
            Carrier::Fedex => "fedex",
            Carrier::Usps => "usps",
            Carrier::Dhl => "dhl",
            Carrier::Dpd => "dpd",
        }
    }

    /// The carrier a marketplace names in free form ("UPS", "FedEx Ground", "DHL
    /// eCommerce", "USPS", "DPD UK"…); `None` for carriers nightdesk does not track.
    pub fn from_marketplace_name(name: &str) -> Option<Carrier> {
        let lower = name.trim().to_ascii_lowercase();
        let first = lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|w| !w.is_empty())?;
        match first {
            "ups" => Some(Carrier::Ups),
            "fedex" | "fdx" | "fdxe" | "fdxg" => Some(Carrier::Fedex),
            "usps" => Some(Carrier::Usps),
            "dhl" => Some(Carrier::Dhl),
            "dpd" => Some(Carrier::Dpd),
            _ => None,
        }
    }
}

impl fmt::Display for Carrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Carrier {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Carrier::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown carrier {s:?} (expected ups, fedex, usps, dhl or dpd)"))
    }
}

/// Why a parcel is in `Exception` (research/carriers.md §2.1): a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExceptionReason {
    Delay,
    Customs,
    Address,
    Damaged,
    Lost,
    Refused,
    Held,
    PaymentDue,
    Other,
}

impl ExceptionReason {
    /// As rules and `model::Shipment::exception_reason` read it: `delay`, `customs`,
    /// `address`, `damaged`, `lost`, `refused`, `held`, `payment_due`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExceptionReason::Delay => "delay",
            ExceptionReason::Customs => "customs",
            ExceptionReason::Address => "address",
            ExceptionReason::Damaged => "damaged",
            ExceptionReason::Lost => "lost",
            ExceptionReason::Refused => "refused",
            ExceptionReason::Held => "held",
            ExceptionReason::PaymentDue => "payment_due",
            ExceptionReason::Other => "other",
        }
    }
}

/// Where an event happened, as far as the carrier says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLocation {
    pub city: Option<String>,
    /// State, province or region code (`GA`, `BY`…).
    pub state: Option<String>,
    pub postcode: Option<String>,
    /// ISO 3166-1 alpha-2 (`US`, `DE`).
    pub country: Option<String>,
}

impl EventLocation {
    /// `City, ST, CC`, skipping what is missing; `None` when nothing is known.
    pub fn display(&self) -> Option<String> {
        let parts: Vec<&str> = [&self.city, &self.state, &self.country]
            .into_iter()
            .filter_map(|p| p.as_deref().map(str::trim).filter(|s| !s.is_empty()))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    pub fn is_empty(&self) -> bool {
        self.display().is_none() && self.postcode.is_none()
    }
}

/// One scan as the carrier reported it, with its normalised meaning. The raw code and
/// text are always kept: they are what ops read when a rule's decision is questioned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierEvent {
    pub at: EventTime,
    pub status: TrackingStatus,
    /// Set when `status` is `Exception` (and may be for `ReturnToSender`).
    pub reason: Option<ExceptionReason>,
    /// The carrier's own code, as it sent it (UPS `I/OT/021`, FedEx `OD`, USPS `OF`,
    /// DHL `transit`, DPD `Courier`).
    pub raw_code: String,
    /// The carrier's own words for the event.
    pub text: String,
    pub location: EventLocation,
    /// The carrier explicitly corrects an earlier report (e.g. a delivery scan
    /// withdrawn): the only event allowed to move a parcel backwards.
    #[serde(default)]
    pub correction: bool,
}

/// What nightdesk asks a carrier about one parcel. Only the number is required; the
/// rest tells reused numbers apart (FedEx, USPS) or picks the right division (DHL).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParcelQuery {
    pub tracking_number: String,
    /// When the label was created or the parcel shipped, as the marketplace says.
    pub ship_date: Option<NaiveDate>,
    pub destination_postcode: Option<String>,
    /// ISO 3166-1 alpha-2.
    pub destination_country: Option<String>,
    /// The carrier's service or division when known (DHL `express`, `parcel-de`…).
    pub service: Option<String>,
}

impl ParcelQuery {
    pub fn number(tracking_number: impl Into<String>) -> Self {
        Self {
            tracking_number: tracking_number.into(),
            ..Self::default()
        }
    }
}

/// A carrier's description of one shipment under a number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarrierParcel {
    pub tracking_number: String,
    /// The carrier's id for this shipment when a number may name several (FedEx
    /// `trackingNumberUniqueId`, USPS `uniqueTrackingID`, DHL shipment `id`+`service`).
    pub carrier_shipment_id: Option<String>,
    /// Ship or label date, as the carrier says.
    pub ship_date: Option<NaiveDate>,
    /// The carrier's service or product (`UPS Ground`, `express`…), for display.
    pub service: Option<String>,
    /// Every event the carrier listed, in any order; [`history`] sorts and dedupes.
    pub events: Vec<CarrierEvent>,
    /// The carrier's own summary of where the parcel is now (UPS `currentStatus`,
    /// FedEx `latestStatusDetail`, USPS `statusCategory`, DHL `status`, DPD
    /// `isCurrentStatus`), when it gives one apart from the events.
    pub current: Option<CarrierEvent>,
    /// The latest promised or estimated delivery the carrier states.
    pub estimated_delivery: Option<DateTime<Utc>>,
}

/// A carrier's answer about one number.
// Nearly every outcome is a `Found`; boxing it would only add an allocation per parcel.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TrackOutcome {
    /// The carrier knows the number. A reused number may give several `Found` for the
    /// same `tracking_number`, each its own shipment.
    Found(CarrierParcel),
    /// The carrier has nothing (yet): normal for a label created in the last hours
    /// (UPS warning TW0001 on a 200, USPS 404 per item, DHL 404, FedEx
    /// TRACKING.TRACKINGNUMBER.NOTFOUND). Not an error.
    NotFound {
        tracking_number: String,
        /// The carrier's code and words.
        detail: String,
    },
    /// The carrier refused this one number (invalid format…) while answering others.
    Rejected {
        tracking_number: String,
        detail: String,
    },
}

impl TrackOutcome {
    pub fn tracking_number(&self) -> &str {
        match self {
            TrackOutcome::Found(parcel) => &parcel.tracking_number,
            TrackOutcome::NotFound {
                tracking_number, ..
            }
            | TrackOutcome::Rejected {
                tracking_number, ..
            } => tracking_number,
        }
    }
}

/// A failed call to a carrier, classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CarrierError {
    /// The call failed: transport, an error status, a body that breaks the contract.
    #[error("{carrier} {operation}: {error}")]
    Upstream {
        carrier: Carrier,
        operation: &'static str,
        error: UpstreamError,
    },
    /// The carrier refused the configured credentials: no retry helps until a person
    /// fixes them.
    #[error("{carrier}: credentials refused: {detail}")]
    Credentials { carrier: Carrier, detail: String },
    /// The configured daily quota is spent until `until`.
    #[error("{carrier}: daily quota of {quota} calls spent until {until}")]
    QuotaSpent {
        carrier: Carrier,
        quota: u32,
        until: DateTime<Utc>,
    },
}

impl CarrierError {
    pub fn upstream(
        carrier: Carrier,
        operation: &'static str,
    ) -> impl FnOnce(UpstreamError) -> CarrierError {
        move |error| match error {
            UpstreamError::Credentials(detail) => CarrierError::Credentials { carrier, detail },
            error => CarrierError::Upstream {
                carrier,
                operation,
                error,
            },
        }
    }

    /// Worth trying again later (throttled, a 5xx, a timeout).
    pub fn is_retryable(&self) -> bool {
        match self {
            CarrierError::Upstream { error, .. } => error.is_retryable(),
            CarrierError::QuotaSpent { .. } => true,
            CarrierError::Credentials { .. } => false,
        }
    }
}

/// One carrier's tracking API. `track` asks about at most [`CarrierClient::batch_limit`]
/// numbers in one go (the connector may make one call per number where the API has no
/// batch) and answers one or more outcomes per number; a number the carrier left out
/// of its answer is simply missing.
#[async_trait]
pub trait CarrierClient: Send + Sync {
    fn carrier(&self) -> Carrier;

    /// How many numbers one `track` call may carry (FedEx 30, USPS 35, others 1).
    fn batch_limit(&self) -> usize;

    async fn track(&self, batch: &[ParcelQuery]) -> Result<Vec<TrackOutcome>, CarrierError>;
}

/// A carrier's credentials, resolved from the config's secret references.
pub enum CarrierSecrets {
    OAuth {
        client_id: String,
        client_secret: secrecy::SecretString,
    },
    ApiKey(secrecy::SecretString),
    Login {
        delis_id: String,
        password: secrecy::SecretString,
        language: String,
    },
}

impl CarrierSecrets {
    /// Resolves `credentials` (of config key `key`, e.g. `carriers.ups`) with `resolve`,
    /// which reports what it cannot resolve and answers `None`.
    pub fn resolve(
        credentials: &crate::config::CarrierCredentials,
        key: &str,
        mut resolve: impl FnMut(String, &crate::config::SecretRef) -> Option<secrecy::SecretString>,
    ) -> Option<CarrierSecrets> {
        use crate::config::CarrierCredentials;
        match credentials {
            CarrierCredentials::OAuth {
                client_id,
                client_secret,
            } => resolve(format!("{key}.client_secret"), client_secret).map(|secret| {
                CarrierSecrets::OAuth {
                    client_id: client_id.clone(),
                    client_secret: secret,
                }
            }),
            CarrierCredentials::ApiKey { api_key } => {
                resolve(format!("{key}.api_key"), api_key).map(CarrierSecrets::ApiKey)
            }
            CarrierCredentials::Login {
                delis_id,
                password,
                language,
            } => {
                resolve(format!("{key}.password"), password).map(|password| CarrierSecrets::Login {
                    delis_id: delis_id.clone(),
                    password,
                    language: language.clone(),
                })
            }
        }
    }
}

/// Builds a configured carrier's client with its pace and quota. `base_url` is the
/// carrier's host (the config's, or the sandbox's `/<carrier>` prefix).
pub fn connect(
    account: &crate::config::CarrierAccount,
    secrets: CarrierSecrets,
    base_url: url::Url,
    clock: crate::clock::SharedClock,
    retry: crate::http::RetryPolicy,
) -> Result<tracker::CarrierConnection, CarrierError> {
    let base = base_url.as_str().trim_end_matches('/').to_owned();
    let mismatch = || CarrierError::Credentials {
        carrier: account.carrier,
        detail: "the configured credentials are not the kind this carrier takes".to_owned(),
    };
    let client: std::sync::Arc<dyn CarrierClient> = match (account.carrier, secrets) {
        (
            Carrier::Ups,
            CarrierSecrets::OAuth {
                client_id,
                client_secret,
            },
        ) => {
            let mut settings = ups::UpsSettings::new(client_id.into(), client_secret);
            settings.base_url = base;
            std::sync::Arc::new(ups::UpsClient::new(settings, clock, retry)?)
        }
        (
            Carrier::Fedex,
            CarrierSecrets::OAuth {
                client_id,
                client_secret,
            },
        ) => {
            let mut settings = fedex::FedexSettings::new(client_id.into(), client_secret);
            settings.base_url = base;
            std::sync::Arc::new(fedex::FedexClient::new(settings, clock, retry)?)
        }
        (
            Carrier::Usps,
            CarrierSecrets::OAuth {
                client_id,
                client_secret,
            },
        ) => {
            let mut settings = usps::UspsSettings::new(client_id.into(), client_secret);
            settings.base_url = base;
            std::sync::Arc::new(usps::UspsClient::new(settings, clock, retry)?)
        }
        (Carrier::Dhl, CarrierSecrets::ApiKey(api_key)) => {
            let mut settings = dhl::DhlSettings::new(api_key);
            settings.base_url = base;
            std::sync::Arc::new(dhl::DhlClient::new(settings, clock, retry)?)
        }
        (
            Carrier::Dpd,
            CarrierSecrets::Login {
                delis_id,
                password,
                language,
            },
        ) => std::sync::Arc::new(dpd::DpdClient::new(
            dpd::DpdSettings {
                base_url: base,
                delis_id,
                password,
                message_language: language,
            },
            clock,
            retry,
        )?),
        _ => return Err(mismatch()),
    };
    Ok(tracker::CarrierConnection::new(
        client,
        tracker::CarrierPace {
            calls_per_second: account.calls_per_second,
            daily_quota: account.daily_quota,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carriers_parse_by_name_and_from_marketplace_words() {
        assert_eq!("UPS".parse::<Carrier>(), Ok(Carrier::Ups));
        assert!("royalmail".parse::<Carrier>().is_err());
        assert_eq!(
            Carrier::from_marketplace_name("FedEx Ground"),
            Some(Carrier::Fedex)
        );
        assert_eq!(
            Carrier::from_marketplace_name("DHL eCommerce"),
            Some(Carrier::Dhl)
        );
        assert_eq!(Carrier::from_marketplace_name("Royal Mail"), None);
        assert_eq!(Carrier::from_marketplace_name(""), None);
    }
}
