//! FBA Multi-Channel Fulfillment orders in a scenario: the fulfillment order, its
//! items, shipments, packages and each package's tracking. The sandbox's own words;
//! `fulfillment.rs` writes the contract's JSON from them.
//!
//! Times are [`When`]s like the orders'. What a fulfillment order leaves out is taken
//! from the Amazon order its `displayable_order_id` names (items, destination) when the
//! scenario has one, so a YAML entry stays short.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::fulfillment::{CURRENT_STATUSES, EVENT_CODES};
use super::scenario::{
    MARKETPLACE_US, ScenarioAddress, ScenarioOrder, When, generated_address, seed,
};

/// Contract `FulfillmentOrderStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FulfillmentOrderStatus {
    New,
    Received,
    Planning,
    Processing,
    Cancelled,
    Complete,
    CompletePartialled,
    Unfulfillable,
    Invalid,
}

impl FulfillmentOrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            FulfillmentOrderStatus::New => "New",
            FulfillmentOrderStatus::Received => "Received",
            FulfillmentOrderStatus::Planning => "Planning",
            FulfillmentOrderStatus::Processing => "Processing",
            FulfillmentOrderStatus::Cancelled => "Cancelled",
            FulfillmentOrderStatus::Complete => "Complete",
            FulfillmentOrderStatus::CompletePartialled => "CompletePartialled",
            FulfillmentOrderStatus::Unfulfillable => "Unfulfillable",
            FulfillmentOrderStatus::Invalid => "Invalid",
        }
    }
}

/// Contract `ShippingSpeedCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ShippingSpeed {
    #[default]
    Standard,
    Expedited,
    Priority,
    ScheduledDelivery,
}

impl ShippingSpeed {
    pub fn as_str(self) -> &'static str {
        match self {
            ShippingSpeed::Standard => "Standard",
            ShippingSpeed::Expedited => "Expedited",
            ShippingSpeed::Priority => "Priority",
            ShippingSpeed::ScheduledDelivery => "ScheduledDelivery",
        }
    }
}

/// Contract `fulfillmentShipmentStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    Pending,
    #[default]
    Shipped,
    CancelledByFulfiller,
    CancelledBySeller,
}

impl ShipmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ShipmentStatus::Pending => "PENDING",
            ShipmentStatus::Shipped => "SHIPPED",
            ShipmentStatus::CancelledByFulfiller => "CANCELLED_BY_FULFILLER",
            ShipmentStatus::CancelledBySeller => "CANCELLED_BY_SELLER",
        }
    }
}

/// One Multi-Channel Fulfillment order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFulfillmentOrder {
    /// `sellerFulfillmentOrderId`, at most 40 characters.
    pub id: String,
    /// `displayableOrderId`: an Amazon order id of the scenario, or another channel's
    /// order number.
    pub displayable_order_id: String,
    #[serde(default = "default_marketplace")]
    pub marketplace: String,
    pub status: FulfillmentOrderStatus,
    /// `receivedDate` and `displayableOrderDate`.
    pub received: When,
    /// `statusUpdatedDate`; defaults to `received`. listAllFulfillmentOrders lists by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_updated: Option<When>,
    #[serde(default)]
    pub shipping_speed: ShippingSpeed,
    /// `displayableOrderComment`; a thank-you line by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// `destinationAddress`; defaults to the named Amazon order's shipping address, or a
    /// made-up one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<ScenarioAddress>,
    /// Defaults to the named Amazon order's items; empty when the scenario has no such
    /// order (a test may swap the orders of a scenario and keep its fulfillment orders).
    #[serde(default)]
    pub items: Vec<ScenarioFulfillmentItem>,
    #[serde(default)]
    pub shipments: Vec<ScenarioShipment>,
}

/// One line of a fulfillment order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFulfillmentItem {
    /// `sellerFulfillmentOrderItemId`.
    pub id: String,
    /// `sellerSku`.
    pub sku: String,
    #[serde(default = "one")]
    pub quantity: u32,
    #[serde(default)]
    pub cancelled: u32,
    #[serde(default)]
    pub unfulfillable: u32,
}

/// One outbound shipment of a fulfillment order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioShipment {
    /// `amazonShipmentId`.
    pub id: String,
    /// `fulfillmentCenterId`.
    #[serde(default = "default_fulfillment_center")]
    pub fulfillment_center: String,
    #[serde(default)]
    pub status: ShipmentStatus,
    /// `shippingDate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipped: Option<When>,
    /// `estimatedArrivalDate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_arrival: Option<When>,
    /// The fulfillment order's item ids in this shipment, whole quantities; all by
    /// default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    #[serde(default)]
    pub packages: Vec<ScenarioPackage>,
}

/// One package of a shipment and its tracking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioPackage {
    /// `packageNumber` (int32, unique in the scenario): what getPackageTrackingDetails
    /// takes.
    pub number: u32,
    /// `carrierCode`, e.g. UPS, USPS, AMZN_US.
    pub carrier: String,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_arrival: Option<When>,
    /// `currentStatus` (contract `CurrentStatus`: IN_TRANSIT, DELIVERED, DELAYED,
    /// UNDELIVERABLE, OUT_FOR_DELIVERY, …).
    #[serde(default = "in_transit")]
    pub status: String,
    /// Tracking events, any order (answers list them newest first).
    #[serde(default)]
    pub events: Vec<ScenarioTrackingEvent>,
}

/// One tracking event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTrackingEvent {
    pub at: When,
    /// Contract `EventCode` (EVENT_101 … EVENT_804); e.g. EVENT_301 delivered,
    /// EVENT_302 out for delivery, EVENT_402 customs delay, EVENT_409 lost.
    pub code: String,
    /// Defaults to the contract's description of the code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub city: String,
    pub state: String,
    /// Country code.
    pub country: String,
}

fn default_marketplace() -> String {
    MARKETPLACE_US.to_owned()
}

fn default_fulfillment_center() -> String {
    "PHX7".to_owned()
}

fn in_transit() -> String {
    "IN_TRANSIT".to_owned()
}

fn one() -> u32 {
    1
}

impl ScenarioFulfillmentOrder {
    /// The `statusUpdatedDate`.
    pub fn status_updated_date(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.status_updated.unwrap_or(self.received).resolve(now)
    }

    /// The Amazon order of the scenario this one names, if any.
    fn named<'a>(&self, orders: &'a [ScenarioOrder]) -> Option<&'a ScenarioOrder> {
        orders.iter().find(|o| o.id == self.displayable_order_id)
    }

    /// Items and destination from the named Amazon order (or made up) when not given.
    pub(super) fn fill_defaults(&mut self, orders: &[ScenarioOrder]) {
        let named = self.named(orders).cloned();
        if self.items.is_empty()
            && let Some(order) = &named
        {
            self.items = order
                .items
                .iter()
                .map(|item| ScenarioFulfillmentItem {
                    id: item.id.clone(),
                    sku: item.sku.clone(),
                    quantity: item.quantity,
                    cancelled: 0,
                    unfulfillable: 0,
                })
                .collect();
        }
        if self.destination.is_none() {
            self.destination = Some(match &named {
                Some(order) => order.ship_to(),
                None => generated_address(seed(&self.id), &self.marketplace),
            });
        }
    }

    /// Replaces relative times by absolute ones measured from `now`.
    pub(super) fn pin_times(&mut self, now: DateTime<Utc>) {
        let pin = |w: &mut When| *w = When::At(w.resolve(now));
        pin(&mut self.received);
        if let Some(w) = self.status_updated.as_mut() {
            pin(w);
        }
        for shipment in &mut self.shipments {
            for w in [&mut shipment.shipped, &mut shipment.estimated_arrival]
                .into_iter()
                .flatten()
            {
                pin(w);
            }
            for package in &mut shipment.packages {
                if let Some(w) = package.estimated_arrival.as_mut() {
                    pin(w);
                }
                for event in &mut package.events {
                    pin(&mut event.at);
                }
            }
        }
    }

    /// Checks one fulfillment order as given (defaults not yet filled).
    pub(super) fn validate(&self) -> Result<(), String> {
        let id_ok = |id: &str| !id.trim().is_empty() && id.chars().count() <= 40;
        if !id_ok(&self.id) {
            return Err(format!("id {:?} must be 1 to 40 characters", self.id));
        }
        if !id_ok(&self.displayable_order_id) {
            return Err(format!(
                "displayable_order_id {:?} must be 1 to 40 characters",
                self.displayable_order_id
            ));
        }
        if self.marketplace.trim().is_empty() {
            return Err("marketplace is empty".to_owned());
        }
        if let Some(address) = &self.destination {
            address
                .validate()
                .map_err(|e| format!("destination: {e}"))?;
        }
        let mut item_ids = HashSet::new();
        for item in &self.items {
            if item.id.trim().is_empty() || item.sku.trim().is_empty() {
                return Err("every item needs an id and a sku".to_owned());
            }
            if !item_ids.insert(item.id.as_str()) {
                return Err(format!("item id {} is repeated", item.id));
            }
            if item.cancelled.saturating_add(item.unfulfillable) > item.quantity {
                return Err(format!(
                    "item {}: cancelled + unfulfillable is more than quantity",
                    item.id
                ));
            }
        }
        for shipment in &self.shipments {
            if shipment.id.trim().is_empty() || shipment.fulfillment_center.trim().is_empty() {
                return Err("every shipment needs an id and a fulfillment_center".to_owned());
            }
            if let Some(unknown) = shipment
                .items
                .iter()
                .find(|id| !self.items.is_empty() && !self.items.iter().any(|item| &item.id == *id))
            {
                return Err(format!(
                    "shipment {} lists item {unknown}, which the order does not have",
                    shipment.id
                ));
            }
            for package in &shipment.packages {
                package.validate().map_err(|e| {
                    format!("shipment {} package {}: {e}", shipment.id, package.number)
                })?;
            }
        }
        Ok(())
    }

    /// Every package, with its shipment.
    pub(super) fn packages(&self) -> impl Iterator<Item = (&ScenarioShipment, &ScenarioPackage)> {
        self.shipments
            .iter()
            .flat_map(|s| s.packages.iter().map(move |p| (s, p)))
    }
}

impl ScenarioPackage {
    fn validate(&self) -> Result<(), String> {
        if self.number == 0 || i32::try_from(self.number).is_err() {
            return Err("number must be 1 to 2147483647 (int32)".to_owned());
        }
        if self.carrier.trim().is_empty() || self.tracking_number.trim().is_empty() {
            return Err("carrier and tracking_number are required".to_owned());
        }
        if !CURRENT_STATUSES.iter().any(|(s, _)| *s == self.status) {
            return Err(format!(
                "status {:?} is not a contract CurrentStatus (IN_TRANSIT, DELIVERED, …)",
                self.status
            ));
        }
        for event in &self.events {
            if !EVENT_CODES.iter().any(|(c, _)| *c == event.code) {
                return Err(format!(
                    "event code {:?} is not a contract EventCode (EVENT_101 … EVENT_804)",
                    event.code
                ));
            }
            if event.city.trim().is_empty()
                || event.state.trim().is_empty()
                || event.country.trim().is_empty()
            {
                return Err("every event needs a city, state and country".to_owned());
            }
        }
        Ok(())
    }
}

/// Checks every fulfillment order and what must be unique across them: ids and package
/// numbers.
pub(super) fn validate_all(fulfillment_orders: &[ScenarioFulfillmentOrder]) -> Result<(), String> {
    let mut ids = HashSet::new();
    let mut packages = HashSet::new();
    for (index, fulfillment) in fulfillment_orders.iter().enumerate() {
        fulfillment.validate().map_err(|e| {
            format!(
                "amazon.fulfillment_orders[{index}] ({}): {e}",
                fulfillment.id
            )
        })?;
        if !ids.insert(fulfillment.id.as_str()) {
            return Err(format!(
                "amazon.fulfillment_orders[{index}]: duplicate id {}",
                fulfillment.id
            ));
        }
        for (_, package) in fulfillment.packages() {
            if !packages.insert(package.number) {
                return Err(format!(
                    "amazon.fulfillment_orders[{index}]: package number {} is used twice",
                    package.number
                ));
            }
        }
    }
    Ok(())
}
