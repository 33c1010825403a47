//! The `shopify:`, `ebay:` and `walmart:` sections: the seller's accounts on the other
//! marketplaces, polled like Amazon's and indexed for the one-customer view.
//!
//! ```yaml
//! shopify:
//!   accounts:
//!     - name: shop
//!       shop: ridgeline-coffee             # https://ridgeline-coffee.myshopify.com
//!       access_token: env:SHOPIFY_TOKEN
//!       schedule: "*/5 * * * *"
//! ebay:
//!   accounts:
//!     - name: ebay-us
//!       client_id: RidgeCo-nightdesk-PRD-…
//!       client_secret: env:EBAY_SECRET
//!       refresh_token: env:EBAY_REFRESH_TOKEN
//! walmart:
//!   accounts:
//!     - name: walmart-us
//!       client_id: …
//!       client_secret: env:WALMART_SECRET
//! ```
//! Every account also takes `schedule` (default every 5 minutes), `page_size` and
//! `base_url` (the production host by default).

use std::path::Path;

use serde::Deserialize;
use url::Url;

use super::{SecretRef, Validator};
use crate::schedule::Schedule;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMarketplace {
    #[serde(default)]
    accounts: Vec<RawAccount>,
}

/// Flat, like channels, so serde keeps exact error lines; which fields a marketplace
/// needs is checked in validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    #[serde(default)]
    shop: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    page_size: Option<u32>,
    #[serde(default)]
    base_url: Option<String>,
}

/// Which marketplace a section is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marketplace {
    Shopify,
    Ebay,
    Walmart,
}

impl Marketplace {
    pub fn as_str(self) -> &'static str {
        match self {
            Marketplace::Shopify => "shopify",
            Marketplace::Ebay => "ebay",
            Marketplace::Walmart => "walmart",
        }
    }

    /// The production host, and the largest page the API allows.
    fn defaults(self) -> (&'static str, u32) {
        match self {
            // A page of orders with 50 line items each costs about 54 points per order,
            // and no single query may cost more than 1,000.
            Marketplace::Shopify => ("https://{shop}.myshopify.com", 18),
            Marketplace::Ebay => ("https://api.ebay.com", 200),
            Marketplace::Walmart => ("https://marketplace.walmartapis.com", 200),
        }
    }
}

/// One account on Shopify, eBay or Walmart, validated. Secrets stay references.
#[derive(Debug, Clone)]
pub struct MarketplaceAccount {
    pub marketplace: Marketplace,
    pub name: String,
    pub schedule: Schedule,
    pub page_size: u32,
    pub base_url: Url,
    pub credentials: MarketplaceCredentials,
}

#[derive(Debug, Clone)]
pub enum MarketplaceCredentials {
    /// Shopify: a custom app's Admin API access token for one shop.
    Shopify {
        shop: String,
        api_version: String,
        access_token: SecretRef,
    },
    /// eBay: the app's keys and the seller's refresh token (user consent).
    Ebay {
        client_id: String,
        client_secret: SecretRef,
        refresh_token: SecretRef,
    },
    /// Walmart: client credentials.
    Walmart {
        client_id: String,
        client_secret: SecretRef,
    },
}

/// The Admin API version the Shopify connector follows by default.
pub const SHOPIFY_API_VERSION: &str = "2025-01";

impl Validator {
    pub(super) fn marketplace(
        &mut self,
        marketplace: Marketplace,
        raw: RawMarketplace,
        base: &Path,
        names: &mut std::collections::BTreeSet<String>,
    ) -> Vec<MarketplaceAccount> {
        let mut accounts = Vec::new();
        for (i, account) in raw.accounts.into_iter().enumerate() {
            let key = format!("{}.accounts[{i}]", marketplace.as_str());
            if !super::valid_name(&account.name) {
                self.error(
                    &format!("{key}.name"),
                    "account names use letters, digits, '-' and '_'",
                );
            }
            if !names.insert(format!("{}/{}", marketplace.as_str(), account.name)) {
                self.error(
                    &format!("{key}.name"),
                    format!("account {:?} is named twice", account.name),
                );
            }
            if let Some(account) = self.marketplace_account(marketplace, &key, account, base) {
                accounts.push(account);
            }
        }
        accounts
    }

    fn marketplace_account(
        &mut self,
        marketplace: Marketplace,
        key: &str,
        raw: RawAccount,
        base: &Path,
    ) -> Option<MarketplaceAccount> {
        let required = |v: &mut Validator, field: &str, value: &Option<String>| match value {
            Some(text) if !text.trim().is_empty() => Some(text.clone()),
            _ => {
                v.error(
                    &format!("{key}.{field}"),
                    format!("{} needs {field}", marketplace.as_str()),
                );
                None
            }
        };
        let unused: &[(&str, bool)] = match marketplace {
            Marketplace::Shopify => &[
                ("client_id", raw.client_id.is_some()),
                ("client_secret", raw.client_secret.is_some()),
                ("refresh_token", raw.refresh_token.is_some()),
            ],
            Marketplace::Ebay => &[
                ("shop", raw.shop.is_some()),
                ("access_token", raw.access_token.is_some()),
                ("api_version", raw.api_version.is_some()),
            ],
            Marketplace::Walmart => &[
                ("shop", raw.shop.is_some()),
                ("access_token", raw.access_token.is_some()),
                ("api_version", raw.api_version.is_some()),
                ("refresh_token", raw.refresh_token.is_some()),
            ],
        };
        for (field, set) in unused {
            if *set {
                self.error(
                    &format!("{key}.{field}"),
                    format!("{} does not use {field}", marketplace.as_str()),
                );
            }
        }
        let credentials = match marketplace {
            Marketplace::Shopify => {
                let shop = required(self, "shop", &raw.shop);
                if let Some(shop) = &shop
                    && !shop.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                {
                    self.error(
                        &format!("{key}.shop"),
                        "the shop is the name before .myshopify.com (letters, digits, '-')",
                    );
                }
                let token = required(self, "access_token", &raw.access_token)
                    .and_then(|s| self.secret(&format!("{key}.access_token"), &s, base));
                Some(MarketplaceCredentials::Shopify {
                    shop: shop?,
                    api_version: raw
                        .api_version
                        .unwrap_or_else(|| SHOPIFY_API_VERSION.to_owned()),
                    access_token: token?,
                })
            }
            Marketplace::Ebay => {
                let client_id = required(self, "client_id", &raw.client_id);
                let secret = required(self, "client_secret", &raw.client_secret)
                    .and_then(|s| self.secret(&format!("{key}.client_secret"), &s, base));
                let refresh = required(self, "refresh_token", &raw.refresh_token)
                    .and_then(|s| self.secret(&format!("{key}.refresh_token"), &s, base));
                Some(MarketplaceCredentials::Ebay {
                    client_id: client_id?,
                    client_secret: secret?,
                    refresh_token: refresh?,
                })
            }
            Marketplace::Walmart => {
                let client_id = required(self, "client_id", &raw.client_id);
                let secret = required(self, "client_secret", &raw.client_secret)
                    .and_then(|s| self.secret(&format!("{key}.client_secret"), &s, base));
                Some(MarketplaceCredentials::Walmart {
                    client_id: client_id?,
                    client_secret: secret?,
                })
            }
        };
        let (host, max_page) = marketplace.defaults();
        let default_host = match &credentials {
            Some(MarketplaceCredentials::Shopify { shop, .. }) => host.replace("{shop}", shop),
            _ => host.to_owned(),
        };
        let base_url = self.url(
            &format!("{key}.base_url"),
            raw.base_url.as_deref().unwrap_or(&default_host),
        );
        let schedule = self.schedule(
            &format!("{key}.schedule"),
            raw.schedule.as_deref().unwrap_or("*/5 * * * *"),
        );
        let page_size = raw.page_size.unwrap_or(match marketplace {
            Marketplace::Shopify => 10,
            Marketplace::Ebay | Marketplace::Walmart => 100,
        });
        if page_size == 0 || page_size > max_page {
            self.error(
                &format!("{key}.page_size"),
                format!("{page_size} is not a page size between 1 and {max_page}"),
            );
        }
        Some(MarketplaceAccount {
            marketplace,
            name: raw.name,
            schedule: schedule?,
            page_size,
            base_url: base_url?,
            credentials: credentials?,
        })
    }
}
