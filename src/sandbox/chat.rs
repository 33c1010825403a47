//! Chat receivers, each checking the body its service documents and answering in its
//! service's shape:
//! - `/hooks/slack/…`: Slack incoming webhook; `text` or `blocks`; plain-text `ok` or an
//!   error word such as `invalid_payload`.
//! - `/hooks/teams/…`: Microsoft Teams Workflows webhook; a `message` with Adaptive
//!   Card attachments; 202 with no body.
//! - `/hooks/discord/…`: Discord execute-webhook; `content` (≤ 2000 characters) and/or
//!   `embeds` (≤ 10); 204, or 200 with the message when `?wait=true`.
//! - `/hooks/google_chat/…`: Google Chat incoming webhook; `text` or `cardsV2`; 200
//!   with the created `Message`.
//! - `/hooks/webhook/…`: nightdesk's signed generic webhook (below).
//! - `/hooks/{other}/…`: any JSON, `{}`.
//!
//! The signed webhook checks `X-Nightdesk-Signature: sha256=<hex HMAC-SHA256(secret,
//! "<timestamp>.<raw body>")>` and `X-Nightdesk-Timestamp` (unix seconds, at most
//! 300 s from the sandbox clock) and answers 401 when either fails; it deduplicates on
//! `Idempotency-Key`: a key seen before answers 200 `{"duplicate":true}` and is not a
//! new effect.
//!
//! Accepted posts are kept in a [`ChatLog`] ([`super::Sandbox::chat_posts`]); the
//! journal has every request.

use std::collections::HashSet;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::SecondsFormat;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::amazon::Params;
use super::{Shared, journal, lock};

/// How far `X-Nightdesk-Timestamp` may be from the sandbox clock, in seconds.
const WEBHOOK_TOLERANCE_SECS: i64 = 300;
const DISCORD_MAX_CONTENT: usize = 2000;
const DISCORD_MAX_EMBEDS: usize = 10;
const ADAPTIVE_CARD: &str = "application/vnd.microsoft.card.adaptive";

/// What the chat receivers accepted.
#[derive(Debug, Default)]
pub(super) struct ChatLog {
    /// (kind, body), in arrival order.
    posts: Vec<(String, Value)>,
    webhook_keys: HashSet<String>,
    /// (Idempotency-Key, body) of unique webhook deliveries.
    webhook_effects: Vec<(String, Value)>,
}

impl ChatLog {
    pub(super) fn posts(&self, kind: &str) -> Vec<Value> {
        self.posts
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, body)| body.clone())
            .collect()
    }

    pub(super) fn webhook_effects(&self) -> Vec<(String, Value)> {
        self.webhook_effects.clone()
    }

    fn record(&mut self, kind: &str, body: Value) {
        self.posts.push((kind.to_owned(), body));
    }
}

/// Keeps an accepted post, secrets masked as in the journal.
fn record(state: &Shared, kind: &str, headers: &HeaderMap, body: &[u8]) {
    let value = journal::body_json(headers, body);
    lock(&state.chat).record(kind, value);
}

fn json_object(body: &[u8]) -> Option<Map<String, Value>> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

fn non_empty_str<'a>(message: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    message
        .get(key)
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
}

fn non_empty_array<'a>(message: &'a Map<String, Value>, key: &str) -> Option<&'a Vec<Value>> {
    message
        .get(key)
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
}

// ---------------------------------------------------------------------------------------
// Slack

/// `POST /hooks/slack/{*path}`: a Slack incoming webhook.
pub(super) async fn slack(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let accepted = json_object(&body).is_some_and(|message| {
        non_empty_str(&message, "text").is_some() || non_empty_array(&message, "blocks").is_some()
    });
    let (status, text) = if accepted {
        record(&state, "slack", &headers, &body);
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::BAD_REQUEST, "invalid_payload")
    };
    (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

// ---------------------------------------------------------------------------------------
// Microsoft Teams (Workflows)

/// `POST /hooks/teams/{*path}`: a Teams Workflows webhook taking Adaptive Cards.
pub(super) async fn teams(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match teams_problem(&body) {
        None => {
            record(&state, "teams", &headers, &body);
            StatusCode::ACCEPTED.into_response()
        }
        Some(message) => teams_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", &message),
    }
}

/// Why a Teams body is refused, if it is.
fn teams_problem(body: &[u8]) -> Option<String> {
    let Some(message) = json_object(body) else {
        return Some("The request body must be a JSON object.".to_owned());
    };
    if message.get("type").and_then(Value::as_str) != Some("message") {
        return Some("The body's type must be \"message\".".to_owned());
    }
    let Some(attachments) = non_empty_array(&message, "attachments") else {
        return Some("attachments must hold at least one Adaptive Card.".to_owned());
    };
    for (index, attachment) in attachments.iter().enumerate() {
        if attachment.get("contentType").and_then(Value::as_str) != Some(ADAPTIVE_CARD) {
            return Some(format!(
                "attachments[{index}].contentType must be {ADAPTIVE_CARD}."
            ));
        }
        let card = attachment.get("content");
        let field = |name: &str| card.and_then(|c| c.get(name));
        if field("type").and_then(Value::as_str) != Some("AdaptiveCard") {
            return Some(format!(
                "attachments[{index}].content.type must be AdaptiveCard."
            ));
        }
        if !field("version")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("1."))
        {
            return Some(format!(
                "attachments[{index}].content.version must be an Adaptive Card version 1.x."
            ));
        }
        if !field("body").is_some_and(Value::is_array) {
            return Some(format!(
                "attachments[{index}].content.body must be an array."
            ));
        }
    }
    None
}

fn teams_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Discord

/// `POST /hooks/discord/{*path}`: Discord's execute-webhook.
pub(super) async fn discord(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return discord_error(50109, "The request body contains invalid JSON.");
    };
    let Value::Object(message) = value else {
        return discord_error(50035, "Invalid Form Body");
    };
    let content = match message.get("content") {
        None | Some(Value::Null) => "",
        Some(Value::String(text)) => text.as_str(),
        Some(_) => return discord_field_error("content", "BASE_TYPE_STRING", "Must be a string."),
    };
    if content.chars().count() > DISCORD_MAX_CONTENT {
        return discord_field_error(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        );
    }
    let embeds = match message.get("embeds") {
        None | Some(Value::Null) => 0,
        Some(Value::Array(embeds)) => embeds.len(),
        Some(_) => return discord_field_error("embeds", "BASE_TYPE_ARRAY", "Must be an array."),
    };
    if embeds > DISCORD_MAX_EMBEDS {
        return discord_field_error(
            "embeds",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 10 or fewer in length.",
        );
    }
    if content.trim().is_empty() && embeds == 0 {
        return discord_error(50006, "Cannot send an empty message");
    }
    record(&state, "discord", &headers, &body);
    let wait = Params::parse(query.as_deref())
        .one("wait")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !wait {
        return StatusCode::NO_CONTENT.into_response();
    }
    let id = snowflake();
    Json(json!({
        "id": id,
        "type": 0,
        "content": content,
        "embeds": message.get("embeds").cloned().unwrap_or_else(|| json!([])),
        "channel_id": "1100000000000000000",
        "webhook_id": "1200000000000000000",
        "timestamp": state.clock.now().to_rfc3339_opts(SecondsFormat::Micros, false),
    }))
    .into_response()
}

fn discord_error(code: u32, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

/// Discord's 50035 with the field's error, as its API nests it.
fn discord_field_error(field: &str, code: &str, message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {field: {"_errors": [{"code": code, "message": message}]}},
        })),
    )
        .into_response()
}

/// A Discord-like id: 19 digits.
fn snowflake() -> String {
    format!(
        "13{:017}",
        rand::rng().random_range(0..100_000_000_000_000_000_u64)
    )
}

// ---------------------------------------------------------------------------------------
// Google Chat

/// `POST /hooks/google_chat/{*path}`: a Google Chat incoming webhook
/// (`…/v1/spaces/{space}/messages?key=…&token=…`).
pub(super) async fn google_chat(
    State(state): State<Arc<Shared>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(message) = json_object(&body) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Invalid JSON payload received.",
            "INVALID_ARGUMENT",
        );
    };
    let text = non_empty_str(&message, "text");
    let cards = non_empty_array(&message, "cardsV2");
    if let Some(cards) = cards
        && !cards
            .iter()
            .all(|c| c.get("card").is_some_and(Value::is_object))
    {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Invalid cardsV2: every entry needs a card object.",
            "INVALID_ARGUMENT",
        );
    }
    if text.is_none() && cards.is_none() {
        return google_error(
            StatusCode::BAD_REQUEST,
            "Message cannot be empty. Discarded empty message.",
            "INVALID_ARGUMENT",
        );
    }
    record(&state, "google_chat", &headers, &body);
    let segments: Vec<&str> = path.split('/').collect();
    let space = segments
        .windows(2)
        .find(|w| w[0] == "spaces" && !w[1].is_empty())
        .map_or("AAA", |w| w[1]);
    let id = format!("{}.{}", random_token(11), random_token(11));
    let mut created = Map::new();
    created.insert(
        "name".into(),
        json!(format!("spaces/{space}/messages/{id}")),
    );
    created.insert(
        "sender".into(),
        json!({"name": "users/114022495153014004089", "type": "BOT"}),
    );
    if let Some(text) = text {
        created.insert("text".into(), json!(text));
    }
    if let Some(cards) = cards {
        created.insert("cardsV2".into(), Value::Array(cards.clone()));
    }
    created.insert(
        "createTime".into(),
        json!(
            state
                .clock
                .now()
                .to_rfc3339_opts(SecondsFormat::Micros, true)
        ),
    );
    created.insert("space".into(), json!({"name": format!("spaces/{space}")}));
    Json(Value::Object(created)).into_response()
}

fn google_error(status: StatusCode, message: &str, google_status: &str) -> Response {
    (
        status,
        Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": google_status,
        }})),
    )
        .into_response()
}

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

// ---------------------------------------------------------------------------------------
// nightdesk's signed webhook

/// `POST /hooks/webhook/{*path}`: signature, timestamp, then Idempotency-Key.
pub(super) async fn webhook(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let Some(timestamp) = header_text("x-nightdesk-timestamp") else {
        return webhook_error(StatusCode::UNAUTHORIZED, "missing X-Nightdesk-Timestamp");
    };
    let Some(signature) = header_text("x-nightdesk-signature") else {
        return webhook_error(StatusCode::UNAUTHORIZED, "missing X-Nightdesk-Signature");
    };
    if !signature_matches(&state.webhook_secret, timestamp, &body, signature) {
        return webhook_error(StatusCode::UNAUTHORIZED, "signature mismatch");
    }
    let Ok(seconds) = timestamp.parse::<i64>() else {
        return webhook_error(
            StatusCode::UNAUTHORIZED,
            "X-Nightdesk-Timestamp is not unix seconds",
        );
    };
    let skew = state.clock.now().timestamp().abs_diff(seconds);
    if skew > WEBHOOK_TOLERANCE_SECS.unsigned_abs() {
        return webhook_error(
            StatusCode::UNAUTHORIZED,
            &format!("timestamp is {skew}s from now; at most {WEBHOOK_TOLERANCE_SECS}s allowed"),
        );
    }
    if json_object(&body).is_none() {
        return webhook_error(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    }
    let Some(key) = header_text("idempotency-key") else {
        return webhook_error(StatusCode::BAD_REQUEST, "missing Idempotency-Key");
    };
    let value = journal::body_json(&headers, &body);
    let mut log = lock(&state.chat);
    if !log.webhook_keys.insert(key.to_owned()) {
        return Json(json!({"duplicate": true})).into_response();
    }
    log.webhook_effects.push((key.to_owned(), value.clone()));
    log.record("webhook", value);
    Json(json!({"duplicate": false})).into_response()
}

/// Whether `signature` is `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
fn signature_matches(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_digest) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_digest) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // Constant-time comparison.
    mac.verify_slice(&expected).is_ok()
}

fn webhook_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

// ---------------------------------------------------------------------------------------
// Other kinds

/// `POST /hooks/{kind}/{*path}`: any other chat kind; any JSON is accepted.
pub(super) async fn generic(
    State(state): State<Arc<Shared>>,
    Path((kind, _path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(_) => {
            record(&state, &kind, &headers, &body);
            (StatusCode::OK, Json(json!({}))).into_response()
        }
        Err(_) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_payload"})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// Faults

/// An injected fault's answer in the `kind` service's shape.
pub(super) fn fault_response(kind: &str, status: StatusCode, retry_after: Option<u64>) -> Response {
    let code = status.as_u16();
    let reason = status.canonical_reason().unwrap_or("error");
    match kind {
        "slack" => {
            // Slack answers webhooks in plain text.
            let text = match code {
                429 => "rate_limited",
                404 => "no_service",
                403 => "invalid_token",
                410 => "channel_is_archived",
                500..=599 => "internal_error",
                _ => "invalid_payload",
            };
            (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
        }
        "teams" => {
            let (error, message) = match code {
                429 => (
                    "TooManyRequests".to_owned(),
                    format!(
                        "Rate limit is exceeded. Try again in {} seconds.",
                        retry_after.unwrap_or(1)
                    ),
                ),
                500..=599 => ("InternalServerError".to_owned(), reason.to_owned()),
                _ => (reason.replace(' ', ""), reason.to_owned()),
            };
            teams_error(status, &error, &message)
        }
        "discord" if code == 429 => {
            let seconds = retry_after.unwrap_or(1);
            let mut response = (
                status,
                Json(json!({
                    "message": "You are being rate limited.",
                    "retry_after": seconds as f64,
                    "global": false,
                })),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
        }
        "discord" => (status, Json(json!({"message": reason, "code": 0}))).into_response(),
        "google_chat" => {
            let google_status = match code {
                400 => "INVALID_ARGUMENT",
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "NOT_FOUND",
                429 => "RESOURCE_EXHAUSTED",
                503 => "UNAVAILABLE",
                _ => "INTERNAL",
            };
            google_error(status, reason, google_status)
        }
        _ => (status, Json(json!({"error": reason}))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_signature_is_hmac_of_timestamp_dot_body() -> Result<(), hmac::digest::InvalidLength>
    {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret")?;
        mac.update(b"1700000000.{\"a\":1}");
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(signature_matches(
            "s3cret",
            "1700000000",
            b"{\"a\":1}",
            &good
        ));
        assert!(!signature_matches(
            "other",
            "1700000000",
            b"{\"a\":1}",
            &good
        ));
        assert!(!signature_matches(
            "s3cret",
            "1700000001",
            b"{\"a\":1}",
            &good
        ));
        assert!(!signature_matches(
            "s3cret",
            "1700000000",
            b"{\"a\":1}",
            "sha256=zz"
        ));
        assert!(!signature_matches(
            "s3cret",
            "1700000000",
            b"{\"a\":1}",
            good.trim_start_matches("sha256=")
        ));
        Ok(())
    }

    #[test]
    fn teams_needs_an_adaptive_card() {
        let card = json!({"type": "message", "attachments": [{
            "contentType": ADAPTIVE_CARD,
            "content": {"type": "AdaptiveCard", "version": "1.4", "body": []}
        }]});
        assert_eq!(teams_problem(card.to_string().as_bytes()), None);
        for bad in [
            json!({"type": "message", "attachments": []}),
            json!({"text": "hi"}),
            json!({"type": "message", "attachments": [{"contentType": "text/plain", "content": {}}]}),
            json!({"type": "message", "attachments": [{
                "contentType": ADAPTIVE_CARD,
                "content": {"type": "AdaptiveCard", "version": "2.0", "body": []}
            }]}),
        ] {
            assert!(teams_problem(bad.to_string().as_bytes()).is_some(), "{bad}");
        }
    }
}
