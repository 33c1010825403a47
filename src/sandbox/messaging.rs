//! SP-API Messaging v1 (`specs/amazon/messaging.json`, research notes §4): which
//! messages an order allows now (HAL), the buyer's locale, and the message sends.
//!
//! Every call needs `marketplaceIds` with exactly one value, the order's own marketplace
//! (another one answers 404, as if the order were not there). Which message types an
//! order allows depends on its status:
//!
//! | Order status                                          | Allowed message types |
//! |-------------------------------------------------------|-----------------------|
//! | Pending, PendingAvailability, Canceled, Unfulfillable | none |
//! | Unshipped, PartiallyShipped                           | confirmOrderDetails, confirmCustomizationDetails, unexpectedProblem |
//! | Shipped, InvoiceUnconfirmed                           | confirmDeliveryDetails, unexpectedProblem, legalDisclosure, invoice |
//!
//! confirmServiceDetails, digitalAccessKey and warranty exist (Home Services, digital
//! goods) but no scenario order allows them. A send is checked in this order: order id,
//! marketplace, body (text 1..max characters, no HTML tags, no e-mail address;
//! attachments for the attachment-only types), then whether the type is allowed now.
//! Every refusal is a 400 `InvalidInput` except an unknown order (404). Accepted sends
//! answer 201 `{}` and are kept as [`SentMessage`]s.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::amazon::{self, Params};
use super::plans::Plan;
use super::scenario::{OrderStatus, ScenarioOrder};
use super::{Shared, feeds, lock};

pub(super) const GET_MESSAGING_ACTIONS: &str = "getMessagingActionsForOrder";
pub(super) const GET_ATTRIBUTES: &str = "GetAttributes";
/// The one Messaging operation without a usage plan in its model.
pub(super) const SEND_INVOICE: &str = "sendInvoice";

/// One message type: its path name, the contract's `operationId`, and what its body
/// carries.
struct MessageType {
    name: &'static str,
    operation: &'static str,
    body: Body,
}

#[derive(Clone, Copy)]
enum Body {
    /// `{"text"}` of at most this many characters, plus `attachments` if true.
    Text { max: usize, attachments: bool },
    /// `{"attachments"}` only (1 to 5).
    Attachments,
    /// Not modelled (warranty: attachments and coverage dates); never allowed here.
    Other,
}

const MESSAGE_TYPES: [MessageType; 9] = [
    MessageType {
        name: "confirmCustomizationDetails",
        operation: "confirmCustomizationDetails",
        body: Body::Text {
            max: 800,
            attachments: true,
        },
    },
    MessageType {
        name: "confirmDeliveryDetails",
        operation: "createConfirmDeliveryDetails",
        body: Body::Text {
            max: 2000,
            attachments: false,
        },
    },
    MessageType {
        name: "legalDisclosure",
        operation: "createLegalDisclosure",
        body: Body::Attachments,
    },
    MessageType {
        name: "confirmOrderDetails",
        operation: "createConfirmOrderDetails",
        body: Body::Text {
            max: 2000,
            attachments: false,
        },
    },
    MessageType {
        name: "confirmServiceDetails",
        operation: "createConfirmServiceDetails",
        body: Body::Text {
            max: 2000,
            attachments: false,
        },
    },
    MessageType {
        name: "warranty",
        operation: "CreateWarranty",
        body: Body::Other,
    },
    MessageType {
        name: "digitalAccessKey",
        operation: "createDigitalAccessKey",
        body: Body::Text {
            max: 400,
            attachments: true,
        },
    },
    MessageType {
        name: "unexpectedProblem",
        operation: "createUnexpectedProblem",
        body: Body::Text {
            max: 2000,
            attachments: false,
        },
    },
    MessageType {
        name: "invoice",
        operation: SEND_INVOICE,
        body: Body::Attachments,
    },
];

/// Usage plans: every operation 1 request/s, burst 5, except `sendInvoice` (none).
pub(super) const USAGE_PLANS: &[Plan] = &[
    (GET_MESSAGING_ACTIONS, 1.0, 5.0),
    (GET_ATTRIBUTES, 1.0, 5.0),
    ("confirmCustomizationDetails", 1.0, 5.0),
    ("createConfirmDeliveryDetails", 1.0, 5.0),
    ("createLegalDisclosure", 1.0, 5.0),
    ("createConfirmOrderDetails", 1.0, 5.0),
    ("createConfirmServiceDetails", 1.0, 5.0),
    ("CreateWarranty", 1.0, 5.0),
    ("createDigitalAccessKey", 1.0, 5.0),
    ("createUnexpectedProblem", 1.0, 5.0),
];

/// A message the sandbox accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SentMessage {
    pub order_id: String,
    pub marketplace_id: String,
    /// The path name: `confirmOrderDetails`, `unexpectedProblem`, …
    pub message_type: String,
    /// The text as sent; empty for the attachment-only types (`legalDisclosure`,
    /// `invoice`).
    pub text: String,
    /// The attachments' `fileName`s, if any.
    pub attachments: Vec<String>,
    /// When it was accepted, by the sandbox clock.
    pub at: DateTime<Utc>,
}

/// The operation for `rest`, the path after `/messaging/v1/orders/{id}`.
pub(super) fn classify(method: &str, rest: &[&str]) -> Option<&'static str> {
    match (method, rest) {
        ("GET", []) => Some(GET_MESSAGING_ACTIONS),
        ("GET", ["attributes"]) => Some(GET_ATTRIBUTES),
        ("POST", ["messages", name]) => message_type(name).map(|t| t.operation),
        _ => None,
    }
}

fn message_type(name: &str) -> Option<&'static MessageType> {
    MESSAGE_TYPES.iter().find(|t| t.name == name)
}

/// The message types `status` allows, in the order `getMessagingActionsForOrder` lists
/// them (see the module docs).
fn allowed(status: OrderStatus) -> &'static [&'static str] {
    match status {
        OrderStatus::Unshipped | OrderStatus::PartiallyShipped => &[
            "confirmOrderDetails",
            "confirmCustomizationDetails",
            "unexpectedProblem",
        ],
        OrderStatus::Shipped | OrderStatus::InvoiceUnconfirmed => &[
            "confirmDeliveryDetails",
            "unexpectedProblem",
            "legalDisclosure",
            "invoice",
        ],
        OrderStatus::Pending
        | OrderStatus::PendingAvailability
        | OrderStatus::Canceled
        | OrderStatus::Unfulfillable => &[],
    }
}

/// The buyer's locale: the language of the order's marketplace.
fn locale(marketplace: &str) -> &'static str {
    match marketplace {
        "A2EUQ1WTGCTBG2" => "en-CA",
        "A1PA6795UKMFR9" => "de-DE",
        "A13V1IB3VIYZZH" => "fr-FR",
        "A1RKKUPIHCS9HS" => "es-ES",
        "APJ6JRA9NG5V4" => "it-IT",
        "A1F83G8C2ARO7P" => "en-GB",
        _ => "en-US",
    }
}

// ---------------------------------------------------------------------------------------
// Handlers

/// `GET /messaging/v1/orders/{amazonOrderId}`.
pub(super) async fn get_actions(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let (order, marketplace) = match find_order(
        &state,
        &headers,
        query.as_deref(),
        &order_id,
        GET_MESSAGING_ACTIONS,
    ) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let base = format!("/messaging/v1/orders/{order_id}");
    let query = format!("?marketplaceIds={marketplace}");
    let names = allowed(order.status);
    let links: Vec<Value> = names
        .iter()
        .map(|name| json!({"href": format!("{base}/messages/{name}{query}"), "name": name}))
        .collect();
    let embedded: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "_links": {
                    "self": {"href": format!("{base}/messages/{name}{query}"), "name": name},
                    "schema": {"href": format!("{base}/messages/{name}/schema"), "name": name},
                },
                "payload": {"name": name},
            })
        })
        .collect();
    let body = json!({
        "_links": {"self": {"href": format!("{base}{query}")}, "actions": links},
        "_embedded": {"actions": embedded},
    });
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/hal+json"),
    );
    response
}

/// `GET /messaging/v1/orders/{amazonOrderId}/attributes`.
pub(super) async fn get_attributes(
    State(state): State<Arc<Shared>>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match find_order(
        &state,
        &headers,
        query.as_deref(),
        &order_id,
        GET_ATTRIBUTES,
    ) {
        Ok((_, marketplace)) => {
            Json(json!({"buyer": {"locale": locale(&marketplace)}})).into_response()
        }
        Err(refused) => *refused,
    }
}

/// `POST /messaging/v1/orders/{amazonOrderId}/messages/{type}`.
pub(super) async fn create_message(
    State(state): State<Arc<Shared>>,
    Path((order_id, type_name)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: axum::body::Bytes,
) -> Response {
    let Some(kind) = message_type(&type_name) else {
        return amazon::error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("There is no message type {type_name}."),
            None,
        );
    };
    let (order, marketplace) = match find_order(
        &state,
        &headers,
        query.as_deref(),
        &order_id,
        kind.operation,
    ) {
        Ok(found) => found,
        Err(refused) => return *refused,
    };
    let (text, attachments) = match read_body(kind, &body) {
        Ok(found) => found,
        Err(message) => return amazon::invalid_input(&message),
    };
    if !allowed(order.status).contains(&kind.name) {
        return amazon::invalid_input(&format!(
            "Message type {} is not available for order {order_id} (status {}); \
             call getMessagingActionsForOrder for the allowed types.",
            kind.name,
            order.status.as_str()
        ));
    }
    lock(&state.messages).push(SentMessage {
        order_id,
        marketplace_id: marketplace,
        message_type: kind.name.to_owned(),
        text,
        attachments,
        at: state.now(),
    });
    (StatusCode::CREATED, Json(json!({}))).into_response()
}

/// Authorizes the call, reads `marketplaceIds` and finds the order in it; else the
/// answer refusing the call (boxed: a `Response` is large).
fn find_order(
    state: &Shared,
    headers: &HeaderMap,
    query: Option<&str>,
    order_id: &str,
    operation: &'static str,
) -> Result<(ScenarioOrder, String), Box<Response>> {
    if let Some(refused) = amazon::refusal(state, headers, operation) {
        return Err(Box::new(refused));
    }
    let marketplaces = Params::parse(query).list("marketplaceIds");
    let marketplace = match marketplaces.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Box::new(amazon::invalid_input(
                "Missing required parameter: marketplaceIds.",
            )));
        }
        _ => {
            return Err(Box::new(amazon::invalid_input(
                "marketplaceIds accepts exactly one marketplace.",
            )));
        }
    };
    if let Some(bad) = amazon::bad_order_id(order_id) {
        return Err(Box::new(bad));
    }
    // A feed that is due may have canceled the order.
    feeds::settle(state);
    let amazon_state = lock(&state.amazon);
    match amazon_state
        .orders
        .iter()
        .find(|o| o.id == order_id && o.marketplace == marketplace)
    {
        Some(order) => Ok((order.clone(), marketplace)),
        None => Err(Box::new(amazon::error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Order {order_id} was not found in marketplace {marketplace}."),
            None,
        ))),
    }
}

/// The text and attachment file names of a send, or why the body is refused.
fn read_body(kind: &MessageType, body: &[u8]) -> Result<(String, Vec<String>), String> {
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err("The request body must be a JSON object.".to_owned());
    };
    match kind.body {
        Body::Text { max, attachments } => {
            let text = check_text(&fields, max)?;
            let files = if attachments && fields.contains_key("attachments") {
                check_attachments(&fields)?
            } else {
                Vec::new()
            };
            Ok((text, files))
        }
        Body::Attachments => Ok((String::new(), check_attachments(&fields)?)),
        Body::Other => Ok((String::new(), Vec::new())),
    }
}

fn check_text(fields: &Map<String, Value>, max: usize) -> Result<String, String> {
    let text = match fields.get("text") {
        None | Some(Value::Null) => return Err("Missing required field: text.".to_owned()),
        Some(Value::String(text)) => text,
        Some(_) => return Err("text must be a string.".to_owned()),
    };
    if text.trim().is_empty() {
        return Err("text must not be empty.".to_owned());
    }
    let length = text.chars().count();
    if length > max {
        return Err(format!(
            "text is {length} characters long; at most {max} are allowed."
        ));
    }
    if has_html_tag(text) {
        return Err("text must not contain HTML.".to_owned());
    }
    if has_email_address(text) {
        return Err("text must not contain e-mail addresses.".to_owned());
    }
    Ok(text.clone())
}

/// `attachments`: 1 to 5 `{uploadDestinationId, fileName}`; returns the file names.
fn check_attachments(fields: &Map<String, Value>) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = fields.get("attachments") else {
        return Err("attachments must be an array of 1 to 5 attachments.".to_owned());
    };
    if items.is_empty() || items.len() > 5 {
        return Err(format!(
            "attachments holds {} attachments; 1 to 5 are allowed.",
            items.len()
        ));
    }
    items
        .iter()
        .map(|item| {
            let field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .filter(|v| !v.trim().is_empty())
            };
            match (field("uploadDestinationId"), field("fileName")) {
                (Some(_), Some(file)) => Ok(file.to_owned()),
                _ => Err(
                    "Each attachment needs a non-empty uploadDestinationId and fileName."
                        .to_owned(),
                ),
            }
        })
        .collect()
}

/// `<b>`, `</p>`, `<a href=…>`, `<br/>`, `<!-- … -->`: a `<` opening a tag name (or
/// `!`), closed by a later `>`. "a < b" and "<3" are not tags.
fn has_html_tag(text: &str) -> bool {
    text.match_indices('<').any(|(at, _)| {
        let rest = &text[at + 1..];
        let name = rest.strip_prefix('/').unwrap_or(rest);
        let opens = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '!');
        opens && rest.split('<').next().is_some_and(|tag| tag.contains('>'))
    })
}

/// `local@domain.tld`: something address-like around an `@`.
fn has_email_address(text: &str) -> bool {
    let local_char = |c: char| c.is_ascii_alphanumeric() || "._%+-".contains(c);
    let domain_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    text.match_indices('@').any(|(at, _)| {
        let local_ok = text[..at].chars().next_back().is_some_and(local_char);
        let domain: String = text[at + 1..]
            .chars()
            .take_while(|c| domain_char(*c))
            .collect();
        let domain = domain.trim_end_matches(['.', '-']);
        let labels: Vec<&str> = domain.split('.').collect();
        let tld_ok = labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
        local_ok && labels.len() >= 2 && labels.iter().all(|l| !l.is_empty()) && tld_ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_tags_are_found_but_comparisons_are_not() {
        for html in [
            "<b>hi</b>",
            "see </p>",
            "<a href=\"https://x.example\">x</a>",
            "line<br/>",
            "<!-- c -->",
        ] {
            assert!(has_html_tag(html), "{html}");
        }
        for plain in ["a < b and c > d", "<3 thanks", "5 <= 6", "no tags", "x <"] {
            assert!(!has_html_tag(plain), "{plain}");
        }
    }

    #[test]
    fn email_addresses_are_found() {
        for text in [
            "write to jane.doe@example.com",
            "a@b.co.uk please",
            "(x+y@mail.example.org)",
        ] {
            assert!(has_email_address(text), "{text}");
        }
        for text in [
            "see you @ noon",
            "@handle",
            "order@123",
            "price@5.00",
            "me@localhost",
        ] {
            assert!(!has_email_address(text), "{text}");
        }
    }

    #[test]
    fn every_type_has_its_contract_operation() {
        assert_eq!(
            classify("POST", &["messages", "confirmOrderDetails"]),
            Some("createConfirmOrderDetails")
        );
        assert_eq!(
            classify("POST", &["messages", "confirmCustomizationDetails"]),
            Some("confirmCustomizationDetails")
        );
        assert_eq!(classify("POST", &["messages", "nope"]), None);
        assert_eq!(classify("GET", &["attributes"]), Some(GET_ATTRIBUTES));
        for status in OrderStatus::ALL {
            for name in allowed(status) {
                assert!(message_type(name).is_some(), "{name}");
            }
        }
    }
}
