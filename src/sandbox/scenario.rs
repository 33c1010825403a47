//! What the fake upstreams hold: credentials, settings and orders. Loaded from a YAML
//! scenario file or built in code. Times are relative to the sandbox's start, so a
//! shipped scenario stays realistic on any day.
//!
//! These are the sandbox's own types (the FBA fulfillment orders are in
//! `scenario_fba.rs`). They describe a seller's data in the sandbox's
//! words (snake_case, amounts per unit); `amazon.rs` turns them into the contract's JSON.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use super::SandboxError;
use super::amazon_packages::ScenarioOrderPackage;
use super::scenario_fba::ScenarioFulfillmentOrder;

/// Amazon.com (US).
pub const MARKETPLACE_US: &str = "ATVPDKIKX0DER";
/// Amazon.ca (Canada).
pub const MARKETPLACE_CA: &str = "A2EUQ1WTGCTBG2";

/// A whole sandbox scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Short name, shown in logs.
    pub name: String,
    /// Free text for humans.
    pub description: String,
    /// Login with Amazon and SP-API Orders v0.
    pub amazon: AmazonScenario,
    /// The carriers' parcels (UPS, FedEx, USPS, DHL, DPD).
    pub carriers: super::carriers::CarrierScenario,
    /// Buyer mails the relay delivers to the seller's mailbox (the demo writes them
    /// into a Maildir).
    pub buyer_mail: Vec<super::buyer_mail::ScenarioMail>,
    /// Shopify's orders (Admin GraphQL).
    pub shopify: super::marketplaces::shopify::ShopifyScenario,
    /// eBay's orders (Sell Fulfillment).
    pub ebay: super::marketplaces::ebay::EbayScenario,
    /// Walmart's orders (Marketplace Orders).
    pub walmart: super::marketplaces::walmart::WalmartScenario,
}

impl Scenario {
    /// A scenario with default settings and the given Amazon orders.
    pub fn with_orders(orders: Vec<ScenarioOrder>) -> Self {
        Self {
            amazon: AmazonScenario {
                orders,
                ..AmazonScenario::default()
            },
            ..Self::default()
        }
    }

    /// Parses and validates a scenario given as YAML text.
    pub fn from_yaml_str(text: &str) -> Result<Self, SandboxError> {
        Self::from_yaml_named(text, "<inline scenario>")
    }

    /// Reads, parses and validates a scenario file; errors name the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, SandboxError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| SandboxError::ScenarioRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_yaml_named(&text, &path.display().to_string())
    }

    pub(super) fn from_yaml_named(text: &str, origin: &str) -> Result<Self, SandboxError> {
        let scenario: Scenario =
            serde_yaml::from_str(text).map_err(|e| SandboxError::Scenario {
                origin: origin.to_owned(),
                message: e.to_string(),
            })?;
        scenario
            .validate()
            .map_err(|message| SandboxError::Scenario {
                origin: origin.to_owned(),
                message,
            })?;
        Ok(scenario)
    }

    /// Checks what serde cannot: id formats, uniqueness, page sizes, quantities.
    pub fn validate(&self) -> Result<(), String> {
        let amazon = &self.amazon;
        if !(1..=100).contains(&amazon.page_size) {
            return Err(format!(
                "amazon.page_size must be 1-100 (getOrders MaxResultsPerPage), got {}",
                amazon.page_size
            ));
        }
        if amazon.items_page_size == 0 {
            return Err("amazon.items_page_size must be at least 1".to_owned());
        }
        if amazon.fulfillment_page_size == 0 {
            return Err("amazon.fulfillment_page_size must be at least 1".to_owned());
        }
        super::scenario_fba::validate_all(&amazon.fulfillment_orders)?;
        self.carriers.validate()?;
        self.shopify
            .validate()
            .map_err(|e| format!("shopify: {e}"))?;
        self.ebay.validate().map_err(|e| format!("ebay: {e}"))?;
        self.walmart
            .validate()
            .map_err(|e| format!("walmart: {e}"))?;
        let mut seen = std::collections::HashSet::new();
        for (index, order) in amazon.orders.iter().enumerate() {
            order
                .validate()
                .map_err(|e| format!("amazon.orders[{index}] ({}): {e}", order.id))?;
            if !seen.insert(order.id.as_str()) {
                return Err(format!(
                    "amazon.orders[{index}]: duplicate order id {}",
                    order.id
                ));
            }
        }
        Ok(())
    }

    /// Turns every relative time into an absolute one, measured from `now`, and fills
    /// fulfillment orders' defaults from the Amazon orders they name.
    pub(super) fn pin_times(&mut self, now: DateTime<Utc>) {
        for order in &mut self.amazon.orders {
            order.pin_times(now);
        }
        let orders = &self.amazon.orders;
        for fulfillment in &mut self.amazon.fulfillment_orders {
            fulfillment.fill_defaults(orders);
            fulfillment.pin_times(now);
        }
        self.carriers.pin_times(now);
        self.shopify.pin_times(now);
        self.ebay.pin_times(now);
        self.walmart.pin_times(now);
    }
}

/// The Amazon side of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmazonScenario {
    pub credentials: LwaCredentials,
    /// getOrders page size when the caller sends no `MaxResultsPerPage` (1-100).
    pub page_size: u32,
    /// getOrderItems page size.
    pub items_page_size: u32,
    /// Enforce the SP-API usage plans (token buckets per operation).
    pub rate_limits: bool,
    pub orders: Vec<ScenarioOrder>,
    /// listAllFulfillmentOrders page size (the contract does not say Amazon's).
    pub fulfillment_page_size: u32,
    /// FBA Multi-Channel Fulfillment orders (Fulfillment Outbound 2020-07-01).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fulfillment_orders: Vec<ScenarioFulfillmentOrder>,
}

impl Default for AmazonScenario {
    fn default() -> Self {
        Self {
            credentials: LwaCredentials::default(),
            page_size: 100,
            items_page_size: 100,
            rate_limits: true,
            orders: Vec::new(),
            fulfillment_page_size: 50,
            fulfillment_orders: Vec::new(),
        }
    }
}

/// What Login with Amazon accepts. Obviously fake values by default.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LwaCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// Lifetime of issued access tokens, in seconds.
    pub expires_in: u64,
}

impl Default for LwaCredentials {
    fn default() -> Self {
        Self {
            client_id: "amzn1.application-oa2-client.sandbox".to_owned(),
            client_secret: "sandbox-client-secret".to_owned(),
            refresh_token: "Atzr|sandbox-refresh-token".to_owned(),
            expires_in: 3600,
        }
    }
}

// Hand-written so the secrets never reach a log line, even fake ones: habits leak.
impl fmt::Debug for LwaCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LwaCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("refresh_token", &"***")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Orders v0 `OrderStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    PendingAvailability,
    Pending,
    Unshipped,
    PartiallyShipped,
    Shipped,
    Canceled,
    Unfulfillable,
    InvoiceUnconfirmed,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 8] = [
        OrderStatus::PendingAvailability,
        OrderStatus::Pending,
        OrderStatus::Unshipped,
        OrderStatus::PartiallyShipped,
        OrderStatus::Shipped,
        OrderStatus::Canceled,
        OrderStatus::Unfulfillable,
        OrderStatus::InvoiceUnconfirmed,
    ];

    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::PendingAvailability => "PendingAvailability",
            OrderStatus::Pending => "Pending",
            OrderStatus::Unshipped => "Unshipped",
            OrderStatus::PartiallyShipped => "PartiallyShipped",
            OrderStatus::Shipped => "Shipped",
            OrderStatus::Canceled => "Canceled",
            OrderStatus::Unfulfillable => "Unfulfillable",
            OrderStatus::InvoiceUnconfirmed => "InvoiceUnconfirmed",
        }
    }

    /// Payment not yet authorized: the contract withholds prices, taxes and totals.
    pub fn hides_pricing(self) -> bool {
        matches!(
            self,
            OrderStatus::Pending | OrderStatus::PendingAvailability
        )
    }
}

/// Orders v0 `FulfillmentChannel`: AFN = fulfilled by Amazon (FBA), MFN = by the seller (FBM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FulfillmentChannel {
    #[serde(rename = "AFN")]
    Afn,
    #[serde(rename = "MFN")]
    Mfn,
}

impl FulfillmentChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            FulfillmentChannel::Afn => "AFN",
            FulfillmentChannel::Mfn => "MFN",
        }
    }
}

/// Orders v0 `OrderType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum OrderType {
    #[default]
    StandardOrder,
    LongLeadTimeOrder,
    Preorder,
    BackOrder,
    SourcingOnDemandOrder,
}

impl OrderType {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::StandardOrder => "StandardOrder",
            OrderType::LongLeadTimeOrder => "LongLeadTimeOrder",
            OrderType::Preorder => "Preorder",
            OrderType::BackOrder => "BackOrder",
            OrderType::SourcingOnDemandOrder => "SourcingOnDemandOrder",
        }
    }
}

/// One Amazon order in the scenario.
// Identity, status, channel and purchase time are required in files (no serde default):
// a forgotten status should be an error, not a silent "Unshipped".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioOrder {
    /// `AmazonOrderId`, 3-7-7 digits.
    pub id: String,
    #[serde(default = "default_marketplace")]
    pub marketplace: String,
    pub status: OrderStatus,
    pub channel: FulfillmentChannel,
    pub purchased: When,
    /// Defaults to `purchased`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated: Option<When>,
    #[serde(default)]
    pub order_type: OrderType,
    /// `ShipServiceLevel`; defaults by channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_service_level: Option<String>,
    /// `ShipmentServiceLevelCategory`; defaults to `Standard`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ship_category: Option<String>,
    /// `SalesChannel`; defaults by marketplace (`Amazon.com`, `Amazon.ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_channel: Option<String>,
    /// ISO 4217; defaults by marketplace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seller_order_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_ship: Option<When>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ship: Option<When>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_delivery: Option<When>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_delivery: Option<When>,
    /// `IsPrime`.
    #[serde(default)]
    pub prime: bool,
    /// `IsBusinessOrder`.
    #[serde(default)]
    pub business: bool,
    #[serde(default)]
    pub items: Vec<ScenarioItem>,
    /// MFN only: the parcels of the seller's ship confirmation, as Orders 2026-01-01
    /// getOrder lists them (`packages`, with `includedData=PACKAGES`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<ScenarioOrderPackage>,
    /// Amazon shows the order (getOrders, getOrder and the other Orders operations) only
    /// once the clock reaches `LastUpdateDate` + this many seconds: an order that a
    /// poller catches only through its window overlap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visible_after_seconds: Option<u32>,
    /// `BuyerInfo` (restricted); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<ScenarioBuyer>,
    /// `ShippingAddress` (restricted); generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<ScenarioAddress>,
    /// Raw contract fields merged into the `Order` JSON last (a `null` removes a field),
    /// for cases this format does not model.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

impl Default for ScenarioOrder {
    fn default() -> Self {
        Self {
            id: String::new(),
            marketplace: MARKETPLACE_US.to_owned(),
            status: OrderStatus::Unshipped,
            channel: FulfillmentChannel::Mfn,
            purchased: When::now(),
            last_updated: None,
            order_type: OrderType::StandardOrder,
            ship_service_level: None,
            ship_category: None,
            sales_channel: None,
            currency: None,
            seller_order_id: None,
            earliest_ship: None,
            latest_ship: None,
            earliest_delivery: None,
            latest_delivery: None,
            prime: false,
            business: false,
            items: Vec::new(),
            packages: Vec::new(),
            visible_after_seconds: None,
            buyer: None,
            shipping_address: None,
            extra: Map::new(),
        }
    }
}

impl ScenarioOrder {
    /// A US order with no items; fill in the rest with struct update syntax or fields.
    pub fn new(
        id: impl Into<String>,
        status: OrderStatus,
        channel: FulfillmentChannel,
        purchased: When,
    ) -> Self {
        Self {
            id: id.into(),
            status,
            channel,
            purchased,
            ..Self::default()
        }
    }

    /// A plausible filler order, deterministic in `n`: a distinct 3-7-7 id, purchased
    /// `6(n+1)` hours ago and last updated an hour later, AFN/Shipped for even `n`,
    /// MFN/Unshipped for odd `n`, one item priced `10+n` dollars with 8% tax.
    pub fn generated(n: u32) -> Self {
        let even = n.is_multiple_of(2);
        let purchased_hours = 6 * (i64::from(n) + 1);
        let unit = Amount::from_cents(1000 + i64::from(n) * 100);
        let mut item = ScenarioItem::new(
            format!("{:014}", 40_000_000_000_000_u64 + u64::from(n) * 7919),
            format!("GEN-SKU-{n:03}"),
            format!("B0GEN{n:05}"),
            format!("Generated item {n}"),
            1,
            unit,
        );
        item.tax = Amount::from_cents((unit.cents() * 8 + 50) / 100);
        Self {
            id: format!(
                "{:03}-{:07}-{:07}",
                111 + n % 4,
                (1_000_003 + u64::from(n) * 104_729) % 10_000_000,
                (2_000_029 + u64::from(n) * 7_654_321) % 10_000_000
            ),
            status: if even {
                OrderStatus::Shipped
            } else {
                OrderStatus::Unshipped
            },
            channel: if even {
                FulfillmentChannel::Afn
            } else {
                FulfillmentChannel::Mfn
            },
            purchased: When::hours_ago(purchased_hours),
            last_updated: Some(When::hours_ago(purchased_hours - 1)),
            items: vec![item],
            ..Self::default()
        }
    }

    pub fn purchase_date(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.purchased.resolve(now)
    }

    pub fn last_update_date(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.last_updated.unwrap_or(self.purchased).resolve(now)
    }

    /// Whether Amazon shows the order at `now` (see `visible_after_seconds`).
    pub fn is_visible(&self, now: DateTime<Utc>) -> bool {
        match self.visible_after_seconds {
            None => true,
            Some(delay) => self.last_update_date(now) + TimeDelta::seconds(i64::from(delay)) <= now,
        }
    }

    /// `BuyerName`: the scenario's, or one made up from the order id.
    pub fn buyer_name(&self) -> String {
        self.buyer
            .as_ref()
            .and_then(|b| b.name.clone())
            .unwrap_or_else(|| generated_name(seed(&self.id)))
    }

    /// `BuyerEmail`: the scenario's, or an anonymised relay address made up from the
    /// order id, as Amazon hands out (`…@marketplace.amazon.com`).
    pub fn buyer_email(&self) -> String {
        self.buyer
            .as_ref()
            .and_then(|b| b.email.clone())
            .unwrap_or_else(|| generated_email(seed(&self.id)))
    }

    /// `PurchaseOrderNumber`, only when the scenario gives one.
    pub fn purchase_order_number(&self) -> Option<String> {
        self.buyer
            .as_ref()
            .and_then(|b| b.purchase_order_number.clone())
    }

    /// `ShippingAddress`: the scenario's, or one made up from the order id in the
    /// marketplace's country, addressed to [`Self::buyer_name`].
    pub fn ship_to(&self) -> ScenarioAddress {
        self.shipping_address.clone().unwrap_or_else(|| {
            let mut address = generated_address(seed(&self.id), &self.marketplace);
            address.name = self.buyer_name();
            if self.business {
                address.address_type = AddressType::Commercial;
            }
            address
        })
    }

    pub fn currency_code(&self) -> String {
        self.currency.clone().unwrap_or_else(|| {
            match self.marketplace.as_str() {
                MARKETPLACE_CA => "CAD",
                "A1AM78C64UM0Y8" => "MXN",
                "A2Q3Y263D00KWC" => "BRL",
                _ => "USD",
            }
            .to_owned()
        })
    }

    /// Units shipped for an item: explicit, or implied by the order status.
    pub fn quantity_shipped(&self, item: &ScenarioItem) -> u32 {
        item.shipped.unwrap_or(match self.status {
            OrderStatus::Shipped | OrderStatus::InvoiceUnconfirmed => item.quantity,
            _ => 0,
        })
    }

    /// What the buyer pays: items, taxes and shipping, as in `OrderTotal`.
    pub fn total(&self) -> Amount {
        Amount::from_cents(self.items.iter().map(ScenarioItem::line_total_cents).sum())
    }

    fn validate(&self) -> Result<(), String> {
        if !is_amazon_order_id(&self.id) {
            return Err(format!(
                "order id {:?} is not in Amazon's 3-7-7 form (e.g. 113-4829301-5520617)",
                self.id
            ));
        }
        if self.marketplace.trim().is_empty() {
            return Err("marketplace is empty".to_owned());
        }
        if let Some(address) = &self.shipping_address {
            address
                .validate()
                .map_err(|e| format!("shipping_address: {e}"))?;
        }
        if let Some(email) = self.buyer.as_ref().and_then(|b| b.email.as_deref())
            && !email.contains('@')
        {
            return Err(format!("buyer.email {email:?} is not an e-mail address"));
        }
        let mut seen = std::collections::HashSet::new();
        for item in &self.items {
            if item.id.is_empty() || !seen.insert(item.id.as_str()) {
                return Err(format!("item id {:?} is empty or repeated", item.id));
            }
            if let Some(shipped) = item.shipped
                && shipped > item.quantity
            {
                return Err(format!(
                    "item {}: shipped {shipped} is more than quantity {}",
                    item.id, item.quantity
                ));
            }
        }
        super::amazon_packages::validate_packages(self.channel, &self.packages)?;
        Ok(())
    }

    /// Replaces relative times by absolute ones measured from `now`.
    pub(super) fn pin_times(&mut self, now: DateTime<Utc>) {
        let pin = |w: &mut When| *w = When::At(w.resolve(now));
        pin(&mut self.purchased);
        for package in &mut self.packages {
            pin(&mut package.shipped);
        }
        for w in [
            &mut self.last_updated,
            &mut self.earliest_ship,
            &mut self.latest_ship,
            &mut self.earliest_delivery,
            &mut self.latest_delivery,
        ]
        .into_iter()
        .flatten()
        {
            pin(w);
        }
    }

    pub(super) fn validate_one(&self) -> Result<(), String> {
        self.validate()
    }
}

fn default_marketplace() -> String {
    MARKETPLACE_US.to_owned()
}

/// Whether `id` has Amazon's 3-7-7 digit form.
pub(super) fn is_amazon_order_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('-').collect();
    parts.len() == 3
        && [3, 7, 7]
            .iter()
            .zip(&parts)
            .all(|(len, part)| part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()))
}

/// The buyer behind an order, as restricted data shows it (`BuyerInfo`). Every field
/// is optional: what is missing is made up from the order id.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioBuyer {
    /// `BuyerName`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `BuyerEmail`: Amazon's anonymised relay address, `…@marketplace.amazon.com`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `PurchaseOrderNumber`, for business buyers who entered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purchase_order_number: Option<String>,
}

/// `AddressType` of a shipping address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AddressType {
    #[default]
    Residential,
    Commercial,
}

impl AddressType {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressType::Residential => "Residential",
            AddressType::Commercial => "Commercial",
        }
    }
}

/// A postal address in the sandbox's words; the Orders and Fulfillment Outbound
/// contracts spell it differently and are written from it field by field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioAddress {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    pub address_line1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address_line2: Option<String>,
    pub city: String,
    pub state_or_region: String,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    pub address_type: AddressType,
}

impl ScenarioAddress {
    pub(super) fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("name", &self.name),
            ("address_line1", &self.address_line1),
            ("city", &self.city),
            ("postal_code", &self.postal_code),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{field} is empty"));
            }
        }
        if self.country_code.len() != 2
            || !self.country_code.bytes().all(|b| b.is_ascii_uppercase())
        {
            return Err(format!(
                "country_code {:?} is not an ISO 3166-1 alpha-2 code like US",
                self.country_code
            ));
        }
        Ok(())
    }
}

/// A stable number from a text (FNV-1a), so made-up buyers stay the same every run.
pub(super) fn seed(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn pick<T: Copy>(list: &[T], seed: u64) -> Option<T> {
    let len = u64::try_from(list.len()).ok().filter(|&n| n > 0)?;
    usize::try_from(seed % len)
        .ok()
        .and_then(|i| list.get(i).copied())
}

const FIRST_NAMES: [&str; 12] = [
    "Maya", "Daniel", "Priya", "Lucas", "Hannah", "Omar", "Grace", "Mateo", "Chloe", "Ethan",
    "Amara", "Noah",
];
const LAST_NAMES: [&str; 12] = [
    "Whitfield",
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Castillo",
    "Brennan",
    "Nakamura",
    "Singh",
    "Kowalski",
    "Haddad",
    "Ferreira",
    "Dubois",
];
const STREETS: [&str; 8] = [
    "Maple Avenue",
    "Harbor Street",
    "Cedar Lane",
    "Pinecrest Drive",
    "Willow Road",
    "Summit Boulevard",
    "Lakeview Terrace",
    "Orchard Way",
];
/// (city, state, ZIP, phone area code).
const US_CITIES: [(&str, &str, &str, &str); 8] = [
    ("Seattle", "WA", "98109", "206"),
    ("Portland", "OR", "97209", "503"),
    ("Austin", "TX", "78701", "512"),
    ("Denver", "CO", "80202", "303"),
    ("Chicago", "IL", "60607", "312"),
    ("Brooklyn", "NY", "11211", "718"),
    ("Columbus", "OH", "43215", "614"),
    ("Raleigh", "NC", "27601", "919"),
];
const CA_CITIES: [(&str, &str, &str, &str); 4] = [
    ("Toronto", "ON", "M5V 2T6", "416"),
    ("Vancouver", "BC", "V6B 1A1", "604"),
    ("Montreal", "QC", "H2Y 1C6", "514"),
    ("Calgary", "AB", "T2P 1J9", "403"),
];

pub(super) fn generated_name(seed: u64) -> String {
    let first = pick(&FIRST_NAMES, seed).unwrap_or("Alex");
    let last = pick(&LAST_NAMES, seed / 13).unwrap_or("Morgan");
    format!("{first} {last}")
}

/// Amazon's relay addresses look like `0k8q2v3xz5lm9wd@marketplace.amazon.com`.
pub(super) fn generated_email(seed: u64) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut n = seed;
    let local: String = (0..15)
        .map(|_| {
            let index = usize::try_from(n % 36).unwrap_or(0);
            n = n / 36 + seed.rotate_left(7);
            ALPHABET.get(index).map_or('x', |&b| char::from(b))
        })
        .collect();
    format!("{local}@marketplace.amazon.com")
}

/// A made-up address in the marketplace's country (US unless Canada), with a phone
/// number from the 555-01xx range reserved for fiction.
pub(super) fn generated_address(seed: u64, marketplace: &str) -> ScenarioAddress {
    let (country, cities): (&str, &[(&str, &str, &str, &str)]) = if marketplace == MARKETPLACE_CA {
        ("CA", &CA_CITIES)
    } else {
        ("US", &US_CITIES)
    };
    let (city, state, postal, area) =
        pick(cities, seed / 7).unwrap_or(("Seattle", "WA", "98109", "206"));
    let street = pick(&STREETS, seed / 11).unwrap_or("Main Street");
    ScenarioAddress {
        name: generated_name(seed),
        company: None,
        address_line1: format!("{} {street}", 100 + seed % 9800),
        address_line2: None,
        city: city.to_owned(),
        state_or_region: state.to_owned(),
        postal_code: postal.to_owned(),
        country_code: country.to_owned(),
        phone: Some(format!("+1 {area}-555-01{:02}", seed % 100)),
        address_type: AddressType::Residential,
    }
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioItem {
    /// `OrderItemId` (Amazon uses 14 digits).
    pub id: String,
    pub asin: String,
    pub sku: String,
    pub title: String,
    /// `QuantityOrdered`.
    #[serde(default = "one")]
    pub quantity: u32,
    /// `QuantityShipped`; defaults from the order status (all for Shipped, else 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped: Option<u32>,
    /// Price of ONE unit; `ItemPrice` is this times the quantity, as the contract says.
    pub unit_price: Amount,
    /// `ItemTax` for the whole line.
    #[serde(default)]
    pub tax: Amount,
    /// `ShippingPrice` for the whole line.
    #[serde(default)]
    pub shipping: Amount,
    /// `ShippingTax` for the whole line.
    #[serde(default)]
    pub shipping_tax: Amount,
    /// Set when the buyer asked to cancel: `BuyerRequestedCancel.BuyerCancelReason`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer_cancel_reason: Option<String>,
    /// Raw contract fields merged into the `OrderItem` JSON last (a `null` removes a field).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

fn one() -> u32 {
    1
}

impl Default for ScenarioItem {
    fn default() -> Self {
        Self {
            id: String::new(),
            asin: String::new(),
            sku: String::new(),
            title: String::new(),
            quantity: 1,
            shipped: None,
            unit_price: Amount::default(),
            tax: Amount::default(),
            shipping: Amount::default(),
            shipping_tax: Amount::default(),
            buyer_cancel_reason: None,
            extra: Map::new(),
        }
    }
}

impl ScenarioItem {
    pub fn new(
        id: impl Into<String>,
        sku: impl Into<String>,
        asin: impl Into<String>,
        title: impl Into<String>,
        quantity: u32,
        unit_price: Amount,
    ) -> Self {
        Self {
            id: id.into(),
            sku: sku.into(),
            asin: asin.into(),
            title: title.into(),
            quantity,
            unit_price,
            ..Self::default()
        }
    }

    /// `ItemPrice`: unit price times quantity.
    pub fn item_price(&self) -> Amount {
        Amount::from_cents(self.unit_price.cents() * i64::from(self.quantity))
    }

    fn line_total_cents(&self) -> i64 {
        self.item_price().cents()
            + self.tax.cents()
            + self.shipping.cents()
            + self.shipping_tax.cents()
    }
}

/// A money amount in minor units (cents). Written `"19.99"` or `19.99` in YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

impl Amount {
    pub const fn from_cents(cents: i64) -> Self {
        Self(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    /// Parses `"19.99"`, `"20"`, `"-3.5"`; at most two decimals.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not an amount like 19.99");
        let t = text.trim();
        let (negative, t) = match t.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, t),
        };
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        if whole.is_empty()
            || frac.len() > 2
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac: i64 = format!("{frac:0<2}").parse().map_err(|_| bad())?;
        let cents = whole
            .checked_mul(100)
            .and_then(|c| c.checked_add(frac))
            .ok_or_else(bad)?;
        Ok(Self(if negative { -cents } else { cents }))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an amount like 19.99 or \"19.99\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
                Amount::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                v.checked_mul(100)
                    .map(Amount)
                    .ok_or_else(|| E::custom("amount too large"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom("amount too large"))
                    .and_then(|v| self.visit_i64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
                // Through the decimal text, so 19.99 stays 1999 cents.
                Amount::parse(&format!("{v:.2}")).map_err(E::custom)
            }
        }
        d.deserialize_any(AmountVisitor)
    }
}

/// A point in time, absolute or relative to the sandbox's "now".
///
/// Written in YAML as `9d` or `9d ago` (nine days before now), `3h30m`, `now`,
/// `in 2d` or `-2d` (two days after now), or an RFC 3339 time such as
/// `2026-11-20T10:15:00Z`.
/// Units: `w`, `d`, `h`, `m`, `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    At(DateTime<Utc>),
    /// How long before now; negative means in the future.
    Ago(TimeDelta),
}

impl Default for When {
    fn default() -> Self {
        Self::now()
    }
}

impl When {
    pub fn now() -> Self {
        When::Ago(TimeDelta::zero())
    }

    pub fn ago(by: TimeDelta) -> Self {
        When::Ago(by)
    }

    pub fn from_now(by: TimeDelta) -> Self {
        When::Ago(-by)
    }

    pub fn days_ago(days: i64) -> Self {
        When::Ago(TimeDelta::days(days))
    }

    pub fn hours_ago(hours: i64) -> Self {
        When::Ago(TimeDelta::hours(hours))
    }

    pub fn minutes_ago(minutes: i64) -> Self {
        When::Ago(TimeDelta::minutes(minutes))
    }

    pub fn resolve(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            When::At(at) => at,
            When::Ago(by) => now - by,
        }
    }
}

impl FromStr for When {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("now") {
            return Ok(When::now());
        }
        if let Ok(at) = DateTime::parse_from_rfc3339(t) {
            return Ok(When::At(at.with_timezone(&Utc)));
        }
        let bad = || {
            format!(
                "{text:?} is not a time: write 9d / 9d ago (past), in 2d / -2d (future), \
                 3h30m, now, or an RFC 3339 time like 2026-11-20T10:15:00Z"
            )
        };
        // "in 2d" reads best; "-2d" (minus two days ago) is accepted too.
        if let Some(rest) = t.strip_prefix("in ").or_else(|| t.strip_prefix('-')) {
            return parse_span(rest.trim())
                .map(|d| When::Ago(-d))
                .ok_or_else(bad);
        }
        let rest = t.strip_suffix("ago").map(str::trim_end).unwrap_or(t);
        parse_span(rest).map(When::Ago).ok_or_else(bad)
    }
}

/// `1d12h`, `90m`, `2w`, `45s` → a duration.
fn parse_span(text: &str) -> Option<TimeDelta> {
    if text.is_empty() {
        return None;
    }
    let mut total = TimeDelta::zero();
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: i64 = number.parse().ok()?;
        number.clear();
        let part = match c {
            'w' => TimeDelta::try_weeks(n)?,
            'd' => TimeDelta::try_days(n)?,
            'h' => TimeDelta::try_hours(n)?,
            'm' => TimeDelta::try_minutes(n)?,
            's' => TimeDelta::try_seconds(n)?,
            _ => return None,
        };
        total = total.checked_add(&part)?;
    }
    // A trailing number without a unit is ambiguous: refuse it.
    number.is_empty().then_some(total)
}

fn format_span(span: TimeDelta) -> String {
    let mut secs = span.num_seconds().unsigned_abs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            When::At(at) => f.write_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            When::Ago(by) if by == TimeDelta::zero() => f.write_str("now"),
            When::Ago(by) if by < TimeDelta::zero() => write!(f, "in {}", format_span(by)),
            When::Ago(by) => write!(f, "{} ago", format_span(by)),
        }
    }
}

impl Serialize for When {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for When {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    #[test]
    fn when_parses_the_documented_forms() {
        assert_eq!("9d".parse::<When>(), Ok(When::days_ago(9)));
        assert_eq!("9d ago".parse::<When>(), Ok(When::days_ago(9)));
        assert_eq!("1d12h".parse::<When>(), Ok(When::ago(TimeDelta::hours(36))));
        assert_eq!(
            "in 2d".parse::<When>(),
            Ok(When::from_now(TimeDelta::days(2)))
        );
        assert_eq!("now".parse::<When>(), Ok(When::now()));
        let at = "2026-11-20T10:15:00Z".parse::<When>();
        assert!(matches!(at, Ok(When::At(_))));
        assert!("9".parse::<When>().is_err());
        assert!("9x".parse::<When>().is_err());
        assert_eq!(
            "-2d".parse::<When>(),
            Ok(When::from_now(TimeDelta::days(2)))
        );
        assert_eq!(When::from_now(TimeDelta::hours(26)).to_string(), "in 1d2h");
        assert_eq!(When::days_ago(9).to_string(), "9d ago");
    }

    #[test]
    fn amounts_keep_cents_exact() -> TestResult {
        assert_eq!(Amount::parse("19.99"), Ok(Amount::from_cents(1999)));
        assert_eq!(Amount::parse("20"), Ok(Amount::from_cents(2000)));
        assert_eq!(Amount::parse("0.5"), Ok(Amount::from_cents(50)));
        assert_eq!(Amount::parse("-3.10"), Ok(Amount::from_cents(-310)));
        assert!(Amount::parse("1.999").is_err());
        assert!(Amount::parse("abc").is_err());
        assert_eq!(Amount::from_cents(-5).to_string(), "-0.05");
        let yaml: Vec<Amount> = serde_yaml::from_str("[19.99, \"4.50\", 7]")?;
        assert_eq!(
            yaml,
            vec![
                Amount::from_cents(1999),
                Amount::from_cents(450),
                Amount::from_cents(700)
            ]
        );
        Ok(())
    }

    #[test]
    fn order_ids_must_be_3_7_7() {
        assert!(is_amazon_order_id("113-4829301-5520617"));
        assert!(!is_amazon_order_id("TEST_CASE_200"));
        assert!(!is_amazon_order_id("113-482930-55206170"));
    }

    #[test]
    fn generated_orders_are_distinct_and_valid() {
        let orders: Vec<ScenarioOrder> = (0..200).map(ScenarioOrder::generated).collect();
        let scenario = Scenario::with_orders(orders);
        assert_eq!(scenario.validate(), Ok(()));
    }

    #[test]
    fn errors_name_the_file_and_the_problem() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("broken.yaml");
        std::fs::write(
            &path,
            "amazon:\n  orders:\n    - id: 113-4829301-5520617\n      status: Pendng\n      channel: MFN\n      purchased: 2d\n",
        )?;
        let Err(err) = Scenario::load(&path) else {
            panic!("broken.yaml loaded");
        };
        let err = err.to_string();
        assert!(err.contains("broken.yaml"), "{err}");
        assert!(err.contains("Pendng"), "{err}");

        let Err(missing) = Scenario::load(dir.path().join("nope.yaml")) else {
            panic!("nope.yaml loaded");
        };
        let missing = missing.to_string();
        assert!(missing.contains("nope.yaml"), "{missing}");

        let Err(err) = Scenario::from_yaml_str(
            "amazon:\n  orders:\n    - id: 12-34\n      status: Pending\n      channel: MFN\n      purchased: 2d\n",
        ) else {
            panic!("an order id of 12-34 was accepted");
        };
        let err = err.to_string();
        assert!(err.contains("3-7-7"), "{err}");
        Ok(())
    }
}
