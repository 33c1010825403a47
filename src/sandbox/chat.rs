//! Chat webhook receivers. Slack incoming webhooks answer in plain text (`ok`, or an
//! error word such as `invalid_payload`); other kinds just take any JSON for now.
//! What was posted is read back from the journal.

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// `POST /hooks/slack/{*path}`: a Slack incoming webhook.
pub(super) async fn slack(body: Bytes) -> Response {
    let accepted = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(message)) => has_text(&message) || has_blocks(&message),
        _ => false,
    };
    let (status, text) = if accepted {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::BAD_REQUEST, "invalid_payload")
    };
    (status, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// `POST /hooks/{kind}/{*path}`: any other chat kind; any JSON is accepted.
pub(super) async fn generic(body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(_) => (StatusCode::OK, axum::Json(json!({}))).into_response(),
        Err(_) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid_payload"})),
        )
            .into_response(),
    }
}

fn has_text(message: &serde_json::Map<String, Value>) -> bool {
    message
        .get("text")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty())
}

fn has_blocks(message: &serde_json::Map<String, Value>) -> bool {
    message
        .get("blocks")
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty())
}
