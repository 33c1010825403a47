//! SP-API Tokens 2021-03-01 (`specs/amazon/tokens_2021-03-01.json`, research notes §8):
//! `createRestrictedDataToken` issues Restricted Data Tokens (RDTs), and [`authorize`]
//! decides what a call's `x-amz-access-token` may see.
//!
//! An RDT grants exactly the restricted resources it was issued for (method + path, a
//! path either specific, `/orders/v0/orders/902-1234567-1234567/address`, or generic,
//! `/orders/v0/orders/{orderId}/address`) until it expires by the sandbox clock (one
//! hour). It is only valid on those resources: anywhere else, including
//! `createRestrictedDataToken` itself, it is refused like an unknown token. A plain LWA
//! access token may call every operation except the restricted-only ones
//! (getOrderBuyerInfo, getOrderAddress), and never sees `BuyerInfo` or
//! `ShippingAddress`. Tokens never reach a log or the journal.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Map, Value, json};

use super::amazon;
use super::plans::Plan;
use super::{Shared, lock, lwa};

pub(super) const CREATE_RESTRICTED_DATA_TOKEN: &str = "createRestrictedDataToken";

/// From the operation's description.
pub(super) const USAGE_PLANS: &[Plan] = &[(CREATE_RESTRICTED_DATA_TOKEN, 1.0, 10.0)];

/// `expiresIn` of every RDT (the contract's sandbox answers 3600).
const RDT_LIFETIME_SECONDS: i64 = 3600;
/// Contract: "Maximum: 50".
const MAX_RESOURCES: usize = 50;
const DATA_ELEMENTS: [&str; 3] = ["buyerInfo", "shippingAddress", "buyerTaxInformation"];

/// A restricted operation an RDT can be issued for: its method, path template, and
/// whether `dataElements` belong to it (contract: only getOrders, getOrder and
/// getOrderItems, where they are required).
struct Restricted {
    operation: &'static str,
    method: &'static str,
    template: &'static [&'static str],
    data_elements: bool,
}

/// The Orders v0 restricted operations, and the Shipping API's getShipment that the
/// contract names as an example. Other APIs' restricted paths are not faked here.
const RESTRICTED: [Restricted; 8] = [
    Restricted {
        operation: "getOrders",
        method: "GET",
        template: &["orders", "v0", "orders"],
        data_elements: true,
    },
    Restricted {
        operation: "getOrder",
        method: "GET",
        template: &["orders", "v0", "orders", "{orderId}"],
        data_elements: true,
    },
    Restricted {
        operation: "getOrderItems",
        method: "GET",
        template: &["orders", "v0", "orders", "{orderId}", "orderItems"],
        data_elements: true,
    },
    Restricted {
        operation: "getOrderBuyerInfo",
        method: "GET",
        template: &["orders", "v0", "orders", "{orderId}", "buyerInfo"],
        data_elements: false,
    },
    Restricted {
        operation: "getOrderAddress",
        method: "GET",
        template: &["orders", "v0", "orders", "{orderId}", "address"],
        data_elements: false,
    },
    Restricted {
        operation: "getOrderItemsBuyerInfo",
        method: "GET",
        template: &[
            "orders",
            "v0",
            "orders",
            "{orderId}",
            "orderItems",
            "buyerInfo",
        ],
        data_elements: false,
    },
    Restricted {
        operation: "getOrderRegulatedInfo",
        method: "GET",
        template: &["orders", "v0", "orders", "{orderId}", "regulatedInfo"],
        data_elements: false,
    },
    Restricted {
        operation: "getShipment",
        method: "GET",
        template: &["mfn", "v0", "shipments", "{shipmentId}"],
        data_elements: false,
    },
];

/// Operations that answer only with an RDT; a plain access token gets a 403.
const RESTRICTED_ONLY: [&str; 2] = ["getOrderBuyerInfo", "getOrderAddress"];

/// What restricted data a call may see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Disclosure {
    pub(super) buyer_info: bool,
    pub(super) shipping_address: bool,
}

/// Issued RDTs.
#[derive(Debug, Default)]
pub(super) struct RdtStore {
    tokens: HashMap<String, Rdt>,
    issued: usize,
}

#[derive(Debug)]
struct Rdt {
    expires: DateTime<Utc>,
    grants: Vec<Grant>,
}

/// One restricted resource of an RDT.
#[derive(Debug, Clone)]
struct Grant {
    method: &'static str,
    /// The path's segments; a generic one keeps its `{orderId}`.
    path: Vec<String>,
    data_elements: Vec<String>,
}

impl Grant {
    fn covers(&self, method: &str, path: &[&str]) -> bool {
        self.method == method
            && self.path.len() == path.len()
            && self
                .path
                .iter()
                .zip(path)
                .all(|(granted, asked)| is_parameter(granted) || granted == asked)
    }
}

impl RdtStore {
    pub(super) fn issued(&self) -> usize {
        self.issued
    }

    pub(super) fn clear(&mut self) {
        self.tokens.clear();
    }

    fn insert(&mut self, token: String, rdt: Rdt, now: DateTime<Utc>) {
        // Forget dead tokens so a long `nightdesk sandbox` run does not grow forever.
        self.tokens.retain(|_, t| t.expires > now);
        self.tokens.insert(token, rdt);
        self.issued += 1;
    }

    /// The live RDT's grant covering this call, if any. `Err(())` when the token is
    /// a live RDT that does not cover it; `Ok(None)` when it is no live RDT.
    fn grant(
        &self,
        token: &str,
        method: &str,
        path: &[&str],
        now: DateTime<Utc>,
    ) -> Result<Option<&Grant>, ()> {
        match self.tokens.get(token) {
            Some(rdt) if rdt.expires > now => rdt
                .grants
                .iter()
                .find(|g| g.covers(method, path))
                .map(Some)
                .ok_or(()),
            _ => Ok(None),
        }
    }
}

fn is_parameter(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// Who may call `operation` (`method` on `path`) with this request's token, and what
/// restricted data it may see; else the 403 (boxed: a `Response` is large). The usage
/// plan is charged after.
pub(super) fn authorize(
    state: &Shared,
    headers: &HeaderMap,
    operation: &'static str,
    method: &str,
    path: &str,
) -> Result<Disclosure, Box<Response>> {
    let header = headers.get("x-amz-access-token");
    if lwa::token_is_live(state, header) {
        if RESTRICTED_ONLY.contains(&operation) {
            return Err(Box::new(denied(&format!(
                "{operation} needs a Restricted Data Token for {method} {path} in \
                 x-amz-access-token; this is an LWA access token."
            ))));
        }
        return Ok(Disclosure::default());
    }
    let token = header.and_then(|v| v.to_str().ok()).unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let now = state.now();
    let rdts = lock(&state.rdts);
    match rdts.grant(token, method, &segments, now) {
        Ok(Some(grant)) => Ok(Disclosure {
            buyer_info: grant.data_elements.iter().any(|e| e == "buyerInfo"),
            shipping_address: grant.data_elements.iter().any(|e| e == "shippingAddress"),
        }),
        Err(()) => Err(Box::new(denied(&format!(
            "The Restricted Data Token was not issued for {method} {path}."
        )))),
        Ok(None) => Err(Box::new(amazon::invalid_token())),
    }
}

fn denied(details: &str) -> Response {
    amazon::error_response(
        StatusCode::FORBIDDEN,
        "Unauthorized",
        "Access to requested resource is denied.",
        Some(details),
    )
}

/// `POST /tokens/2021-03-01/restrictedDataToken` → `{restrictedDataToken, expiresIn}`.
pub(super) async fn create_restricted_data_token(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = amazon::refusal(&state, &headers, CREATE_RESTRICTED_DATA_TOKEN) {
        return refused;
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return amazon::invalid_input("The request body must be a JSON object.");
    };
    let grants = match parse_request(&fields) {
        Ok(grants) => grants,
        Err(Refusal::Input(message)) => return amazon::invalid_input(&message),
        Err(Refusal::Request(details)) => {
            return amazon::error_response(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "Request is missing or has invalid parameters",
                Some(&details),
            );
        }
    };
    let now = state.now();
    let token = new_rdt();
    lock(&state.rdts).insert(
        token.clone(),
        Rdt {
            expires: now + TimeDelta::seconds(RDT_LIFETIME_SECONDS),
            grants,
        },
        now,
    );
    let mut answer = Map::new();
    answer.insert("restrictedDataToken".into(), Value::String(token));
    answer.insert("expiresIn".into(), json!(RDT_LIFETIME_SECONDS));
    Json(Value::Object(answer)).into_response()
}

/// Why a request is refused: a malformed body (`InvalidInput`) or a resource the
/// contract does not allow (`InvalidRequest`, as the contract's sandbox answers).
enum Refusal {
    Input(String),
    Request(String),
}

fn parse_request(fields: &Map<String, Value>) -> Result<Vec<Grant>, Refusal> {
    match fields.get("targetApplication") {
        None | Some(Value::String(_)) => {}
        Some(_) => {
            return Err(Refusal::Input(
                "targetApplication must be a string.".to_owned(),
            ));
        }
    }
    let resources = match fields.get("restrictedResources") {
        Some(Value::Array(items)) => items,
        None | Some(Value::Null) => {
            return Err(Refusal::Input(
                "Missing required field: restrictedResources.".to_owned(),
            ));
        }
        Some(_) => {
            return Err(Refusal::Input(
                "restrictedResources must be an array.".to_owned(),
            ));
        }
    };
    if resources.is_empty() {
        return Err(Refusal::Request("Resource not provided.".to_owned()));
    }
    if resources.len() > MAX_RESOURCES {
        return Err(Refusal::Request(format!(
            "restrictedResources holds {} resources; at most {MAX_RESOURCES} are allowed.",
            resources.len()
        )));
    }
    resources
        .iter()
        .enumerate()
        .map(|(index, resource)| {
            parse_resource(resource)
                .map_err(|e| Refusal::Request(format!("restrictedResources[{index}]: {e}")))
        })
        .collect()
}

fn parse_resource(resource: &Value) -> Result<Grant, String> {
    let Value::Object(fields) = resource else {
        return Err("a resource must be an object with method and path.".to_owned());
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or("");
    let (method, path) = (text("method"), text("path"));
    if method.is_empty() || path.is_empty() {
        return Err("Resource not provided: method and path are required.".to_owned());
    }
    if !["GET", "PUT", "POST", "DELETE"].contains(&method) {
        return Err(format!(
            "method {method:?} is not one of GET, PUT, POST, DELETE."
        ));
    }
    let Some(relative) = path.strip_prefix('/') else {
        return Err(format!("path {path:?} must start with /."));
    };
    let segments: Vec<&str> = relative.split('/').collect();
    if path.contains('?') || segments.iter().any(|s| s.is_empty()) {
        return Err(format!(
            "path {path:?} is not a resource path (no query, no empty segments)."
        ));
    }
    let Some(restricted) = RESTRICTED
        .iter()
        .find(|r| matches_template(r.template, &segments))
    else {
        return Err(format!(
            "{path} is not a restricted resource; see the Tokens API use case guide."
        ));
    };
    if method != restricted.method {
        return Err(format!(
            "{path} is {} {}; {method} is not a restricted operation on it.",
            restricted.method, restricted.operation
        ));
    }
    let data_elements = match fields.get("dataElements") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or("dataElements must hold strings.")?,
        Some(_) => return Err("dataElements must be an array of strings.".to_owned()),
    };
    if let Some(bad) = data_elements
        .iter()
        .find(|e| !DATA_ELEMENTS.contains(&e.as_str()))
    {
        return Err(format!(
            "dataElements value {bad:?} is not one of buyerInfo, shippingAddress, \
             buyerTaxInformation."
        ));
    }
    match (restricted.data_elements, data_elements.is_empty()) {
        (true, true) => {
            return Err(format!(
                "dataElements is required for {} ({method} {path}).",
                restricted.operation
            ));
        }
        (false, false) => {
            return Err(format!(
                "dataElements applies only to getOrders, getOrder and getOrderItems, not {}.",
                restricted.operation
            ));
        }
        _ => {}
    }
    Ok(Grant {
        method: restricted.method,
        path: segments.iter().map(|s| (*s).to_owned()).collect(),
        data_elements,
    })
}

/// Whether `segments` fit `template`: literals equal, a parameter either a concrete
/// value or the template's own `{name}` (a generic path).
fn matches_template(template: &[&str], segments: &[&str]) -> bool {
    template.len() == segments.len()
        && template.iter().zip(segments).all(|(t, s)| {
            if is_parameter(t) {
                s == t || !(s.starts_with('{') || s.ends_with('}'))
            } else {
                t == s
            }
        })
}

/// `Atz.sprdt|` followed by random text, like a real RDT.
fn new_rdt() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(64)
        .map(char::from)
        .collect();
    format!("Atz.sprdt|IQEB{random}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(value: Value) -> Result<Grant, String> {
        parse_resource(&value)
    }

    #[test]
    fn resources_are_checked_against_the_restricted_operations() {
        let Ok(generic) =
            resource(json!({"method": "GET", "path": "/orders/v0/orders/{orderId}/address"}))
        else {
            panic!("a generic getOrderAddress resource was refused");
        };
        assert!(generic.covers(
            "GET",
            &["orders", "v0", "orders", "902-1234567-1234567", "address"]
        ));
        assert!(!generic.covers(
            "GET",
            &["orders", "v0", "orders", "902-1234567-1234567", "buyerInfo"]
        ));
        assert!(!generic.covers(
            "POST",
            &["orders", "v0", "orders", "902-1234567-1234567", "address"]
        ));

        let Ok(specific) = resource(
            json!({"method": "GET", "path": "/orders/v0/orders/902-1234567-1234567", "dataElements": ["buyerInfo"]}),
        ) else {
            panic!("a specific getOrder resource was refused");
        };
        assert!(specific.covers("GET", &["orders", "v0", "orders", "902-1234567-1234567"]));
        assert!(!specific.covers("GET", &["orders", "v0", "orders", "902-7654321-1234567"]));

        for bad in [
            json!({"method": "", "path": "/orders/v1/orders/902-1845936-5435065/address"}),
            json!({"method": "PATCH", "path": "/orders/v0/orders/{orderId}/address"}),
            json!({"method": "POST", "path": "/orders/v0/orders/{orderId}/address"}),
            json!({"method": "GET", "path": "/orders/v0/orders"}),
            json!({"method": "GET", "path": "/orders/v0/orders", "dataElements": ["everything"]}),
            json!({"method": "GET", "path": "/orders/v0/orders/{orderId}/address", "dataElements": ["shippingAddress"]}),
            json!({"method": "GET", "path": "/orders/v0/orders/{id}/address"}),
            json!({"method": "GET", "path": "/feeds/2021-06-30/feeds"}),
            json!({"method": "GET", "path": "orders/v0/orders/{orderId}/address"}),
            json!("GET /orders/v0/orders"),
        ] {
            assert!(resource(bad.clone()).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn requests_need_one_to_fifty_resources() {
        let one = json!({"method": "GET", "path": "/orders/v0/orders/{orderId}/address"});
        let body = |resources: Value| {
            let Value::Object(map) = json!({"restrictedResources": resources}) else {
                panic!("json! did not build an object");
            };
            map
        };
        assert!(parse_request(&body(json!([one.clone()]))).is_ok());
        assert!(matches!(
            parse_request(&body(json!([]))),
            Err(Refusal::Request(_))
        ));
        let many: Vec<Value> = (0..51).map(|_| one.clone()).collect();
        assert!(matches!(
            parse_request(&body(json!(many))),
            Err(Refusal::Request(_))
        ));
        assert!(matches!(
            parse_request(&body(json!("x"))),
            Err(Refusal::Input(_))
        ));
        assert!(matches!(parse_request(&Map::new()), Err(Refusal::Input(_))));
    }
}
