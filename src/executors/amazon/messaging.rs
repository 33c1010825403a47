//! Messaging API v1 (`specs/amazon/messaging.json`): which message types Amazon allows
//! for an order now (getMessagingActionsForOrder), and sending one text message
//! (the create* operations, 201 with `{}`).
//!
//! A message is at most once: the create* calls are never retried here, and text that
//! Amazon would refuse (an unknown type, empty, over the type's limit) is refused before
//! any call. Message text is never logged and never kept in a receipt.
#![forbid(unsafe_code)]

use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;

use crate::http::UpstreamError;
use crate::sources::amazon::UsagePlan;
use crate::sources::amazon::api::{Operation, Retries, SpApi, refused, request_id};
use crate::sources::amazon::orders::{ApiError, describe};

/// Every Messaging operation nightdesk calls: 1 request per second, burst 5.
pub const MESSAGING_PLAN: UsagePlan = UsagePlan {
    rate: 1.0,
    burst: 5,
};

const GET_ACTIONS: Operation = Operation {
    name: "getMessagingActionsForOrder",
    plan: Some(MESSAGING_PLAN),
    retries: Retries::InCall,
};

/// A text message type: its action name (also its path segment), the operation that
/// creates it and the longest text it takes (the request schema's `maxLength`).
struct TextMessage {
    name: &'static str,
    operation: Operation,
    max_chars: usize,
}

const fn create(name: &'static str) -> Operation {
    Operation {
        name,
        plan: Some(MESSAGING_PLAN),
        retries: Retries::Never,
    }
}

const TEXT_MESSAGES: &[TextMessage] = &[
    TextMessage {
        name: "confirmCustomizationDetails",
        operation: create("confirmCustomizationDetails"),
        max_chars: 800,
    },
    TextMessage {
        name: "confirmDeliveryDetails",
        operation: create("createConfirmDeliveryDetails"),
        max_chars: 2000,
    },
    TextMessage {
        name: "confirmOrderDetails",
        operation: create("createConfirmOrderDetails"),
        max_chars: 2000,
    },
    TextMessage {
        name: "confirmServiceDetails",
        operation: create("createConfirmServiceDetails"),
        max_chars: 2000,
    },
    TextMessage {
        name: "unexpectedProblem",
        operation: create("createUnexpectedProblem"),
        max_chars: 2000,
    },
    TextMessage {
        name: "digitalAccessKey",
        operation: create("createDigitalAccessKey"),
        max_chars: 400,
    },
];

fn text_message(message_type: &str) -> Option<&'static TextMessage> {
    TEXT_MESSAGES.iter().find(|m| m.name == message_type)
}

/// The longest text (in characters) a text message type takes; `None` for a type that
/// is not a Messaging text message.
pub fn max_chars(message_type: &str) -> Option<usize> {
    text_message(message_type).map(|m| m.max_chars)
}

/// The text message types [`MessagingClient::send`] can send.
pub fn text_message_types() -> impl Iterator<Item = &'static str> {
    TEXT_MESSAGES.iter().map(|m| m.name)
}

/// `GetMessagingActionsForOrderResponse`, read leniently: the names may come from
/// `_links.actions[]` or `_embedded.actions[]` (`name`, `payload.name` or their links).
#[derive(Debug, Deserialize)]
pub struct ActionsResponse {
    #[serde(rename = "_links")]
    pub links: Option<ActionsLinks>,
    #[serde(rename = "_embedded")]
    pub embedded: Option<EmbeddedActions>,
    pub errors: Option<Vec<ApiError>>,
}

#[derive(Debug, Deserialize)]
pub struct ActionsLinks {
    pub actions: Option<Vec<Link>>,
}

/// `LinkObject`.
#[derive(Debug, Deserialize)]
pub struct Link {
    pub href: Option<String>,
    pub name: Option<String>,
}

impl Link {
    /// The name, or else the last path segment of the href.
    fn action_name(&self) -> Option<String> {
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            return Some(name.to_owned());
        }
        let href = self.href.as_deref()?;
        let path = href.split(['?', '#']).next()?;
        path.rsplit('/')
            .next()
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    }
}

#[derive(Debug, Deserialize)]
pub struct EmbeddedActions {
    pub actions: Option<Vec<EmbeddedAction>>,
}

/// `GetMessagingActionResponse`.
#[derive(Debug, Deserialize)]
pub struct EmbeddedAction {
    pub name: Option<String>,
    pub payload: Option<ActionPayload>,
    #[serde(rename = "_links")]
    pub links: Option<ActionLinks>,
}

#[derive(Debug, Deserialize)]
pub struct ActionPayload {
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ActionLinks {
    #[serde(rename = "self")]
    pub this: Option<Link>,
    pub schema: Option<Link>,
}

impl EmbeddedAction {
    fn action_name(&self) -> Option<String> {
        let direct = self
            .name
            .clone()
            .or_else(|| self.payload.as_ref().and_then(|p| p.name.clone()))
            .filter(|n| !n.is_empty());
        direct.or_else(|| {
            let links = self.links.as_ref()?;
            links
                .this
                .as_ref()
                .and_then(Link::action_name)
                .or_else(|| links.schema.as_ref().and_then(|l| l.name.clone()))
        })
    }
}

impl ActionsResponse {
    /// The allowed action names, each once, in the order Amazon listed them; an error
    /// when the answer holds no action list at all.
    pub fn action_names(&self) -> Result<Vec<String>, UpstreamError> {
        let links = self.links.as_ref().and_then(|l| l.actions.as_ref());
        let embedded = self.embedded.as_ref().and_then(|e| e.actions.as_ref());
        if links.is_none() && embedded.is_none() {
            let reason = match self.errors.as_deref() {
                Some(errors) if !errors.is_empty() => describe(errors),
                _ => "no _links.actions or _embedded.actions".to_owned(),
            };
            return Err(UpstreamError::Malformed {
                what: "getMessagingActionsForOrder response".into(),
                reason,
            });
        }
        let mut names: Vec<String> = Vec::new();
        let found = links
            .into_iter()
            .flatten()
            .filter_map(Link::action_name)
            .chain(
                embedded
                    .into_iter()
                    .flatten()
                    .filter_map(EmbeddedAction::action_name),
            );
        for name in found {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// The Messaging API of one seller account.
pub struct MessagingClient {
    api: Arc<SpApi>,
}

impl MessagingClient {
    pub fn new(api: Arc<SpApi>) -> Self {
        Self { api }
    }

    /// The message types Amazon allows for this order now (e.g. `confirmOrderDetails`).
    /// A read: retried in-call when retryable.
    pub async fn allowed_actions(
        &self,
        order_id: &str,
        marketplace_id: &str,
    ) -> Result<Vec<String>, UpstreamError> {
        check_ids(order_id, marketplace_id)?;
        let url = self.api.url(&["messaging", "v1", "orders", order_id])?;
        let query = [("marketplaceIds", marketplace_id.to_owned())];
        let response: ActionsResponse = self.api.get_json(&GET_ACTIONS, &url, &query).await?;
        response.action_names()
    }

    /// Send one text message of `message_type` with the create* operation of that type.
    /// Sent at most once: never retried here. An unknown type, or text that is empty or
    /// over the type's limit, is refused before any call (a 400-class error that did
    /// not act). The receipt is secret-free: the operation, status and Amazon's request
    /// id, never the text.
    pub async fn send(
        &self,
        order_id: &str,
        marketplace_id: &str,
        message_type: &str,
        text: &str,
    ) -> Result<serde_json::Value, UpstreamError> {
        let Some(kind) = text_message(message_type) else {
            let known: Vec<&str> = text_message_types().collect();
            return Err(refused(format!(
                "{message_type:?} is not a Messaging API text message type (one of {})",
                known.join(", ")
            )));
        };
        if text.trim().is_empty() {
            return Err(refused(format!("the {message_type} text is empty")));
        }
        let chars = text.chars().count();
        if chars > kind.max_chars {
            return Err(refused(format!(
                "the {message_type} text has {chars} characters; Amazon takes at most {}",
                kind.max_chars
            )));
        }
        check_ids(order_id, marketplace_id)?;
        let url = self
            .api
            .url(&["messaging", "v1", "orders", order_id, "messages", kind.name])?;
        let query = [("marketplaceIds", marketplace_id.to_owned())];
        let body = serde_json::json!({ "text": text });
        let reply = self
            .api
            .call(&kind.operation, Method::POST, &url, &query, Some(&body))
            .await?;
        created(kind.operation.name, &reply.body)?;
        let mut receipt = serde_json::json!({
            "operation": kind.operation.name,
            "status": reply.status.as_u16(),
        });
        if let Some(id) = request_id(&reply.headers) {
            receipt["request_id"] = serde_json::json!(id);
        }
        Ok(receipt)
    }
}

/// A create* 2xx body: empty or `{}`; a body with `errors`, or one that is not an
/// object, is malformed (and so may have acted: a person looks).
fn created(operation: &str, body: &str) -> Result<(), UpstreamError> {
    if body.trim().is_empty() {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct CreateResponse {
        errors: Option<Vec<ApiError>>,
    }
    let parsed: CreateResponse =
        serde_json::from_str(body).map_err(|e| UpstreamError::Malformed {
            what: format!("{operation} response"),
            reason: e.to_string(),
        })?;
    match parsed.errors {
        Some(errors) if !errors.is_empty() => Err(UpstreamError::Malformed {
            what: format!("{operation} response"),
            reason: format!("a success status with errors: {}", describe(&errors)),
        }),
        _ => Ok(()),
    }
}

fn check_ids(order_id: &str, marketplace_id: &str) -> Result<(), UpstreamError> {
    if order_id.trim().is_empty() {
        return Err(refused("no order id"));
    }
    if marketplace_id.trim().is_empty() {
        return Err(refused("no marketplace id"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::amazon::api::ACCESS_TOKEN_HEADER;
    use crate::sources::amazon::api::fake::{Answer, Fake};
    use serde_json::json;

    const ORDER: &str = "123-1234567-1234567";
    const US: &str = "ATVPDKIKX0DER";

    fn spec() -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/specs/amazon/messaging.json"
        ))
        .ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The static sandbox response of `method path` for `status`, first case.
    fn sandbox(
        spec: &serde_json::Value,
        path: &str,
        method: &str,
        status: &str,
    ) -> serde_json::Value {
        spec["paths"][path][method]["responses"][status]["x-amzn-api-sandbox"]["static"][0]
            ["response"]
            .clone()
    }

    #[test]
    fn limits_follow_the_request_schemas() {
        assert_eq!(max_chars("confirmCustomizationDetails"), Some(800));
        assert_eq!(max_chars("confirmDeliveryDetails"), Some(2000));
        assert_eq!(max_chars("confirmOrderDetails"), Some(2000));
        assert_eq!(max_chars("confirmServiceDetails"), Some(2000));
        assert_eq!(max_chars("unexpectedProblem"), Some(2000));
        assert_eq!(max_chars("digitalAccessKey"), Some(400));
        assert_eq!(max_chars("warranty"), None);
        assert_eq!(max_chars("negativeFeedbackRemoval"), None);
        let Some(spec) = spec() else {
            eprintln!("specs not found; skipping");
            return;
        };
        // Each limit is the spec's own maxLength for `text`.
        for (definition, message_type) in [
            (
                "CreateConfirmCustomizationDetailsRequest",
                "confirmCustomizationDetails",
            ),
            (
                "CreateConfirmDeliveryDetailsRequest",
                "confirmDeliveryDetails",
            ),
            ("CreateConfirmOrderDetailsRequest", "confirmOrderDetails"),
            (
                "CreateConfirmServiceDetailsRequest",
                "confirmServiceDetails",
            ),
            ("CreateUnexpectedProblemRequest", "unexpectedProblem"),
            ("CreateDigitalAccessKeyRequest", "digitalAccessKey"),
        ] {
            let limit = spec["definitions"][definition]["properties"]["text"]["maxLength"]
                .as_u64()
                .map(|n| n as usize);
            assert_eq!(limit, max_chars(message_type), "{definition}");
        }
        // And each operation is the one the spec has at that path.
        for m in TEXT_MESSAGES {
            let path = format!("/messaging/v1/orders/{{amazonOrderId}}/messages/{}", m.name);
            assert_eq!(
                spec["paths"][path.as_str()]["post"]["operationId"].as_str(),
                Some(m.operation.name),
                "{path}"
            );
        }
    }

    #[test]
    fn parses_the_published_sandbox_examples() {
        let Some(spec) = spec() else {
            eprintln!("specs not found; skipping");
            return;
        };
        let example = sandbox(&spec, "/messaging/v1/orders/{amazonOrderId}", "get", "200");
        let response: ActionsResponse =
            serde_json::from_value(example).unwrap_or_else(|e| panic!("{e:?}"));
        let names = response.action_names().unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            names.contains(&"confirmOrderDetails".to_owned()),
            "{names:?}"
        );
        assert!(names.contains(&"unexpectedProblem".to_owned()));
        assert_eq!(names.len(), 11);

        // The documented example carries names in `_embedded.actions[]._links`.
        let documented = spec["paths"]["/messaging/v1/orders/{amazonOrderId}"]["get"]["responses"]
            ["200"]["examples"]["application/hal+json"]
            .clone();
        let response: ActionsResponse =
            serde_json::from_value(documented).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            response.action_names().unwrap_or_else(|e| panic!("{e:?}")),
            vec!["negativeFeedbackRemoval"]
        );

        for m in TEXT_MESSAGES {
            let path = format!("/messaging/v1/orders/{{amazonOrderId}}/messages/{}", m.name);
            let ok = sandbox(&spec, &path, "post", "201");
            assert_eq!(ok, json!({}), "{path}");
            assert!(created(m.operation.name, &ok.to_string()).is_ok());
            let bad = sandbox(&spec, &path, "post", "400");
            let body: crate::sources::amazon::orders::ErrorBody =
                serde_json::from_value(bad).unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(describe(&body.errors), "InvalidInput: Invalid Input");
        }
    }

    #[test]
    fn embedded_names_and_errors_are_read() {
        let response: ActionsResponse = serde_json::from_value(json!({
            "_embedded": {"actions": [{"name": "confirmOrderDetails"}, {"payload": {"name": "unexpectedProblem"}}]}
        }))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            response.action_names().unwrap_or_else(|e| panic!("{e:?}")),
            vec!["confirmOrderDetails", "unexpectedProblem"]
        );
        let response: ActionsResponse = serde_json::from_value(json!({
            "errors": [{"code": "InvalidInput", "message": "Invalid Input"}]
        }))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let error = response.action_names().unwrap_err();
        assert!(error.to_string().contains("InvalidInput"), "{error}");
        let empty: ActionsResponse =
            serde_json::from_value(json!({"_links": {"actions": [], "self": {"href": "/x"}}}))
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(
            empty
                .action_names()
                .unwrap_or_else(|e| panic!("{e:?}"))
                .is_empty()
        );
    }

    #[test]
    fn create_bodies_with_errors_are_malformed() {
        assert!(created("op", "").is_ok());
        assert!(created("op", "{}").is_ok());
        assert!(created("op", r#"{"errors": []}"#).is_ok());
        let error = created("op", r#"{"errors":[{"code":"X","message":"y"}]}"#).unwrap_err();
        assert!(error.may_have_acted());
        assert!(matches!(
            created("op", "<html>"),
            Err(UpstreamError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn actions_are_read_with_the_token_and_the_marketplace() {
        let fake = Fake::start().await;
        let path = format!("/messaging/v1/orders/{ORDER}");
        fake.script(
            "GET",
            &path,
            vec![Answer::json(
                200,
                json!({"_links": {"self": {"href": "/x"}, "actions": [
                    {"href": "/messaging/v1/orders/x/messages/confirmOrderDetails?marketplaceIds=ATVPDKIKX0DER", "name": "confirmOrderDetails"},
                    {"href": "/messaging/v1/orders/x/messages/unexpectedProblem?marketplaceIds=ATVPDKIKX0DER"}
                ]}}),
            )],
        );
        let client = MessagingClient::new(fake.api());
        let names = client
            .allowed_actions(ORDER, US)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(names, vec!["confirmOrderDetails", "unexpectedProblem"]);
        let seen = fake.seen(&path);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "GET");
        assert!(
            seen[0]
                .header(ACCESS_TOKEN_HEADER)
                .is_some_and(|t| t.starts_with("Atza|"))
        );
        assert_eq!(
            seen[0].query_pairs(),
            vec![("marketplaceIds".to_owned(), US.to_owned())]
        );
    }

    #[tokio::test]
    async fn a_message_is_posted_once_with_its_text() {
        let fake = Fake::start().await;
        let path = format!("/messaging/v1/orders/{ORDER}/messages/confirmOrderDetails");
        fake.script(
            "POST",
            &path,
            vec![Answer::json(201, json!({})).with_header("x-amzn-RequestId", "req-1")],
        );
        let client = MessagingClient::new(fake.api());
        let receipt = client
            .send(ORDER, US, "confirmOrderDetails", "Hello & <welcome>")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            receipt,
            json!({"operation": "createConfirmOrderDetails", "status": 201, "request_id": "req-1"})
        );
        let seen = fake.seen(&path);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].json(), json!({"text": "Hello & <welcome>"}));
        assert!(seen[0].header(ACCESS_TOKEN_HEADER).is_some());
        assert_eq!(
            seen[0].query_pairs(),
            vec![("marketplaceIds".to_owned(), US.to_owned())]
        );
    }

    #[tokio::test]
    async fn a_500_on_send_is_not_retried_and_may_have_acted() {
        let fake = Fake::start().await;
        let path = format!("/messaging/v1/orders/{ORDER}/messages/unexpectedProblem");
        fake.script(
            "POST",
            &path,
            vec![Answer::json(
                500,
                json!({"errors": [{"code": "InternalFailure", "message": "We encountered an internal error."}]}),
            )],
        );
        let client = MessagingClient::new(fake.api());
        let error = client
            .send(ORDER, US, "unexpectedProblem", "Your parcel is delayed.")
            .await
            .unwrap_err();
        assert_eq!(fake.seen(&path).len(), 1, "sent exactly once");
        assert!(error.may_have_acted());
        assert!(
            error
                .to_string()
                .contains("InternalFailure: We encountered an internal error."),
            "{error}"
        );
        assert!(!error.to_string().contains("Atza|"));

        // A 429 is also left to the outbox (it did not act).
        fake.script(
            "POST",
            &path,
            vec![Answer::json(429, json!({"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota"}]}))],
        );
        let error = client
            .send(ORDER, US, "unexpectedProblem", "Your parcel is delayed.")
            .await
            .unwrap_err();
        assert_eq!(fake.seen(&path).len(), 2);
        assert!(!error.may_have_acted() && error.is_retryable());
    }

    #[tokio::test]
    async fn bad_text_is_refused_before_any_call() {
        let fake = Fake::start().await;
        let client = MessagingClient::new(fake.api());
        let too_long = "é".repeat(401);
        for (message_type, text) in [
            ("digitalAccessKey", too_long.as_str()),
            ("warranty", "text"),
            ("negativeFeedbackRemoval", "text"),
            ("confirmOrderDetails", "   "),
        ] {
            let error = client
                .send(ORDER, US, message_type, text)
                .await
                .unwrap_err();
            assert!(!error.is_retryable(), "{error}");
            assert!(!error.may_have_acted(), "{error}");
        }
        let error = client
            .send(ORDER, "", "confirmOrderDetails", "hi")
            .await
            .unwrap_err();
        assert!(!error.may_have_acted());
        // Exactly at the limit is fine to send (counted in characters, not bytes).
        assert_eq!("é".repeat(400).chars().count(), 400);
        assert!(fake.all_seen().is_empty());
        assert_eq!(fake.tokens_issued(), 0);
    }
}
