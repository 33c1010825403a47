//! Login with Amazon: `POST /auth/o2/token` with `grant_type=refresh_token`, as SP-API
//! clients use it (research §1.1). Issues opaque access tokens that expire by the clock.
//! While the seller's authorization is revoked (`Sandbox::revoke_refresh_token`) the
//! refresh token gets LWA's `invalid_grant`. It never logs a token or a secret.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::TimeDelta;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};

use super::{Shared, lock};

pub(super) async fn token(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(fields) = parse_fields(&headers, &body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body is not valid application/x-www-form-urlencoded or JSON.",
        );
    };
    let field = |name: &str| {
        fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };

    match field("grant_type") {
        None => return missing("grant_type"),
        Some("refresh_token") => {}
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "The authorization grant type is not supported by the authorization server.",
            );
        }
    }
    let (Some(client_id), Some(client_secret)) = (field("client_id"), field("client_secret"))
    else {
        return missing(if field("client_id").is_none() {
            "client_id"
        } else {
            "client_secret"
        });
    };
    let Some(refresh_token) = field("refresh_token") else {
        return missing("refresh_token");
    };

    let now = state.now();
    let (expires_in, expires_at) = {
        let amazon = lock(&state.amazon);
        let creds = &amazon.credentials;
        if client_id != creds.client_id || client_secret != creds.client_secret {
            return error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Client authentication failed",
            );
        }
        // A revoked authorization answers exactly like a wrong refresh token.
        if refresh_token != creds.refresh_token || state.refresh_revoked.load(Ordering::Acquire) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "The request has an invalid grant parameter : refresh_token",
            );
        }
        let seconds = i64::try_from(creds.expires_in).unwrap_or(i64::MAX);
        let lifetime = TimeDelta::try_seconds(seconds).unwrap_or(TimeDelta::MAX);
        (
            creds.expires_in,
            now.checked_add_signed(lifetime).unwrap_or(now),
        )
    };

    let access_token = new_access_token();
    {
        let mut tokens = lock(&state.tokens);
        // Forget dead tokens so a long `nightdesk sandbox` run does not grow forever.
        tokens.retain(|_, expiry| *expiry > now);
        tokens.insert(access_token.clone(), expires_at);
    }

    let mut response = Json(json!({
        "access_token": access_token,
        "refresh_token": refresh_token,
        "token_type": "bearer",
        "expires_in": expires_in,
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether `header` carries a token this sandbox issued and that has not expired.
pub(super) fn token_is_live(state: &Shared, header: Option<&HeaderValue>) -> bool {
    let Some(token) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let now = state.now();
    lock(&state.tokens)
        .get(token)
        .is_some_and(|expiry| *expiry > now)
}

/// The form fields, or a JSON object's string fields (the official auth library
/// POSTs JSON). `None` when the body is neither.
fn parse_fields(headers: &HeaderMap, body: &[u8]) -> Option<HashMap<String, String>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let looks_like_json = content_type.contains("json")
        || (content_type.is_empty() && body.trim_ascii_start().starts_with(b"{"));
    if looks_like_json {
        let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        return Some(
            map.into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
        );
    }
    if std::str::from_utf8(body).is_err() {
        return None;
    }
    Some(
        url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

/// `Atza|` followed by random text, like a real LWA access token.
fn new_access_token() -> String {
    let random: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(96)
        .map(char::from)
        .collect();
    format!("Atza|IwEB{random}")
}

fn missing(parameter: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        &format!("The request is missing a required parameter : {parameter}"),
    )
}

/// LWA's error shape: `{"error", "error_description"}`.
fn error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}
