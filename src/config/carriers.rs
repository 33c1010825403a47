//! The `carriers:` section: which carriers nightdesk asks itself, with what
//! credentials, at what pace, and the thresholds of the derived conditions.
//!
//! ```yaml
//! carriers:
//!   schedule: "*/5 * * * *"        # how often due parcels are looked for
//!   not_scanned_business_days: 2   # label made, no scan after this: not_scanned
//!   stalled_days: 4                # no new scan for this long: stalled
//!   ups:   { client_id: …, client_secret: env:UPS_SECRET }
//!   fedex: { client_id: …, client_secret: env:FEDEX_SECRET }
//!   usps:  { client_id: …, client_secret: env:USPS_SECRET }
//!   dhl:   { api_key: env:DHL_KEY, daily_quota: 250 }
//!   dpd:   { delis_id: …, password: env:DPD_PASSWORD, language: en_US }
//! ```
//! Every carrier also takes `base_url`, `calls_per_second` and `daily_quota`.

use std::path::Path;

use serde::Deserialize;
use url::Url;

use super::{SecretRef, Validator};
use crate::schedule::Schedule;
use crate::sources::carriers::Carrier;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCarriers {
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    not_scanned_business_days: Option<i64>,
    #[serde(default)]
    stalled_days: Option<i64>,
    #[serde(default)]
    ups: Option<RawCarrier>,
    #[serde(default)]
    fedex: Option<RawCarrier>,
    #[serde(default)]
    usps: Option<RawCarrier>,
    #[serde(default)]
    dhl: Option<RawCarrier>,
    #[serde(default)]
    dpd: Option<RawCarrier>,
}

/// Flat, like channels, so serde keeps exact error lines; which fields a carrier needs
/// is checked in validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCarrier {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default)]
    delis_id: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    calls_per_second: Option<f64>,
    #[serde(default)]
    daily_quota: Option<u32>,
}

/// The carriers nightdesk asks, validated.
#[derive(Debug, Clone)]
pub struct CarriersConfig {
    pub schedule: Schedule,
    pub not_scanned_business_days: u32,
    pub stalled_days: i64,
    pub accounts: Vec<CarrierAccount>,
}

/// One carrier's account.
#[derive(Debug, Clone)]
pub struct CarrierAccount {
    pub carrier: Carrier,
    pub credentials: CarrierCredentials,
    pub base_url: Url,
    pub calls_per_second: f64,
    pub daily_quota: Option<u32>,
}

/// How a carrier is signed in to. Secrets stay references until the daemon resolves
/// them.
#[derive(Debug, Clone)]
pub enum CarrierCredentials {
    /// OAuth client credentials (UPS, FedEx, USPS).
    OAuth {
        client_id: String,
        client_secret: SecretRef,
    },
    /// An API key header (DHL).
    ApiKey { api_key: SecretRef },
    /// A login service (DPD).
    Login {
        delis_id: String,
        password: SecretRef,
        language: String,
    },
}

/// The carrier's production host, and a steady pace within its published limits
/// (research/carriers.md §1): UPS publishes none, FedEx allows 1,400 per 10 s, USPS
/// about 60 an hour, DHL's starter plan 1 a second.
fn defaults(carrier: Carrier) -> (&'static str, f64, Option<u32>) {
    match carrier {
        Carrier::Ups => ("https://onlinetools.ups.com", 5.0, None),
        Carrier::Fedex => ("https://apis.fedex.com", 10.0, Some(100_000)),
        Carrier::Usps => ("https://apis.usps.com", 1.0 / 60.0, None),
        Carrier::Dhl => ("https://api-eu.dhl.com", 1.0, Some(250)),
        Carrier::Dpd => ("https://public-ws.dpd.com", 2.0, None),
    }
}

impl Validator {
    pub(super) fn carriers(&mut self, raw: RawCarriers, base: &Path) -> Option<CarriersConfig> {
        let schedule = self.schedule(
            "carriers.schedule",
            raw.schedule.as_deref().unwrap_or("*/5 * * * *"),
        );
        let not_scanned = self.range(
            "carriers.not_scanned_business_days",
            raw.not_scanned_business_days.unwrap_or(2),
            1,
            30,
        );
        let stalled_days = self.range(
            "carriers.stalled_days",
            raw.stalled_days.unwrap_or(4),
            1,
            60,
        );
        let entries = [
            (Carrier::Ups, raw.ups),
            (Carrier::Fedex, raw.fedex),
            (Carrier::Usps, raw.usps),
            (Carrier::Dhl, raw.dhl),
            (Carrier::Dpd, raw.dpd),
        ];
        let mut accounts = Vec::new();
        for (carrier, entry) in entries {
            if let Some(entry) = entry
                && let Some(account) = self.carrier(carrier, entry, base)
            {
                accounts.push(account);
            }
        }
        Some(CarriersConfig {
            schedule: schedule?,
            not_scanned_business_days: u32::try_from(not_scanned).unwrap_or(2),
            stalled_days,
            accounts,
        })
    }

    fn carrier(
        &mut self,
        carrier: Carrier,
        raw: RawCarrier,
        base: &Path,
    ) -> Option<CarrierAccount> {
        let key = format!("carriers.{carrier}");
        let required = |v: &mut Validator, field: &str, value: &Option<String>| -> Option<String> {
            match value {
                Some(text) if !text.trim().is_empty() => Some(text.clone()),
                _ => {
                    v.error(
                        &format!("{key}.{field}"),
                        format!("{carrier} needs {field}"),
                    );
                    None
                }
            }
        };
        let unused: &[(&str, bool)] = match carrier {
            Carrier::Ups | Carrier::Fedex | Carrier::Usps => &[
                ("api_key", raw.api_key.is_some()),
                ("delis_id", raw.delis_id.is_some()),
                ("password", raw.password.is_some()),
                ("language", raw.language.is_some()),
            ],
            Carrier::Dhl => &[
                ("client_id", raw.client_id.is_some()),
                ("client_secret", raw.client_secret.is_some()),
                ("delis_id", raw.delis_id.is_some()),
                ("password", raw.password.is_some()),
                ("language", raw.language.is_some()),
            ],
            Carrier::Dpd => &[
                ("client_id", raw.client_id.is_some()),
                ("client_secret", raw.client_secret.is_some()),
                ("api_key", raw.api_key.is_some()),
            ],
        };
        for (field, set) in unused {
            if *set {
                self.error(
                    &format!("{key}.{field}"),
                    format!("{carrier} does not use {field}"),
                );
            }
        }
        let credentials = match carrier {
            Carrier::Ups | Carrier::Fedex | Carrier::Usps => {
                let client_id = required(self, "client_id", &raw.client_id);
                let secret = required(self, "client_secret", &raw.client_secret)
                    .and_then(|s| self.secret(&format!("{key}.client_secret"), &s, base));
                Some(CarrierCredentials::OAuth {
                    client_id: client_id?,
                    client_secret: secret?,
                })
            }
            Carrier::Dhl => required(self, "api_key", &raw.api_key)
                .and_then(|s| self.secret(&format!("{key}.api_key"), &s, base))
                .map(|api_key| CarrierCredentials::ApiKey { api_key }),
            Carrier::Dpd => {
                let delis_id = required(self, "delis_id", &raw.delis_id);
                let password = required(self, "password", &raw.password)
                    .and_then(|s| self.secret(&format!("{key}.password"), &s, base));
                Some(CarrierCredentials::Login {
                    delis_id: delis_id?,
                    password: password?,
                    language: raw.language.unwrap_or_else(|| "en_US".to_owned()),
                })
            }
        };
        let (host, pace, quota) = defaults(carrier);
        let base_url = self.url(
            &format!("{key}.base_url"),
            raw.base_url.as_deref().unwrap_or(host),
        );
        let calls_per_second = raw.calls_per_second.unwrap_or(pace);
        if !calls_per_second.is_finite() || calls_per_second <= 0.0 || calls_per_second > 1000.0 {
            self.error(
                &format!("{key}.calls_per_second"),
                format!("{calls_per_second} is not a pace between 0 and 1000 calls a second"),
            );
        }
        if raw.daily_quota == Some(0) {
            self.error(
                &format!("{key}.daily_quota"),
                "0 would never call; leave it out for no quota",
            );
        }
        Some(CarrierAccount {
            carrier,
            credentials: credentials?,
            base_url: base_url?,
            calls_per_second,
            daily_quota: raw.daily_quota.or(quota),
        })
    }
}
