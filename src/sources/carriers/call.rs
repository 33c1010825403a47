//! What every carrier connector does the same way around a call: building the HTTP
//! client, turning the configured base URL into endpoints, fetching an OAuth token and
//! reading the token endpoint's refusal, keeping the answers a connector reads and
//! turning the others into error statuses, and making a call again once with a fresh
//! token when the carrier refuses the cached one.
//!
//! Request shapes, answer parsing and status mapping stay in each carrier's module:
//! this module knows no carrier's wire format. It must never put a token, a secret, a
//! request or response body whole, or a URL that may carry credentials into an error,
//! a log line or `Debug` output: the texts it builds errors from are what the caller
//! already made secret-free.

use std::future::Future;

use reqwest::StatusCode;
use secrecy::SecretString;
use url::Url;

use super::token::{FetchedToken, TokenCache};
use super::{Carrier, CarrierError};
use crate::http::{self, Reply, UpstreamError};

/// The `User-Agent` of every carrier call.
const USER_AGENT: &str = concat!("nightdesk/", env!("CARGO_PKG_VERSION"));

/// The carrier's name as its own documents write it, for error texts.
pub fn display_name(carrier: Carrier) -> &'static str {
    match carrier {
        Carrier::Ups => "UPS",
        Carrier::Fedex => "FedEx",
        Carrier::Usps => "USPS",
        Carrier::Dhl => "DHL",
        Carrier::Dpd => "DPD",
    }
}

/// The HTTP client for `carrier`; a failure is reported under `operation` (the
/// connector's name for setting itself up).
pub fn http_client(
    carrier: Carrier,
    operation: &'static str,
) -> Result<reqwest::Client, CarrierError> {
    http::client(USER_AGENT).map_err(CarrierError::upstream(carrier, operation))
}

/// The configured base URL, which paths are later appended to with [`join`]; refused
/// unless it is an http(s) URL that can take a path. The error never repeats the URL.
pub fn parse_base_url(text: &str, carrier: Carrier) -> Result<Url, UpstreamError> {
    let refuse = |reason: String| UpstreamError::Malformed {
        what: format!("{} base URL", display_name(carrier)),
        reason,
    };
    let url = Url::parse(text.trim()).map_err(|e| refuse(e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
        return Err(refuse("not an http(s) URL that can take a path".to_owned()));
    }
    Ok(url)
}

/// `base` (from [`parse_base_url`]) + `segments`, each segment percent-encoded.
pub fn join(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    // `parse_base_url` refused URLs that cannot take a path.
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// `{base}/{path}`, refused unless it is an http(s) URL; the error never repeats the URL.
pub fn endpoint(base: &str, path: &str, carrier: Carrier) -> Result<Url, UpstreamError> {
    let text = format!("{}/{path}", base.trim().trim_end_matches('/'));
    match Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Ok(url),
        _ => Err(UpstreamError::Transport {
            retryable: false,
            delivered: http::Delivery::NotSent,
            message: format!(
                "the configured {} base URL is not an http(s) URL",
                display_name(carrier)
            ),
        }),
    }
}

/// A URL for `Debug` and log lines: any user name replaced by `user_shown_as` (empty:
/// dropped) and any password dropped.
pub fn without_userinfo(text: &str, user_shown_as: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            if !url.username().is_empty() || url.password().is_some() {
                // Both succeed on URLs with a host, which is what carries userinfo.
                let _ = url.set_username(user_shown_as);
                let _ = url.set_password(None);
            }
            url.to_string()
        }
        Err(_) => "<not a URL>".to_owned(),
    }
}

/// Sends a token request. A 2xx is read by `read`; any other answer by `refusal`, which
/// gives a secret-free detail (the carrier's codes and words, never the body whole) and
/// whether the answer refuses the credentials themselves: then it is
/// [`UpstreamError::Credentials`] (no retry helps until a person fixes them), otherwise
/// the error status.
pub async fn fetch_token(
    request: reqwest::RequestBuilder,
    read: impl FnOnce(&Reply) -> Result<FetchedToken, UpstreamError>,
    refusal: impl FnOnce(&Reply) -> (String, bool),
) -> Result<FetchedToken, UpstreamError> {
    let reply = http::send(request).await?;
    if reply.status.is_success() {
        return read(&reply);
    }
    let (detail, refused) = refusal(&reply);
    Err(status_error(&reply, detail, refused))
}

/// Whether a token endpoint's error answer refuses the credentials: a 401 or 403, or a
/// 400 whose `detail` names one of `words` (compared in lower case).
pub fn token_refused(status: StatusCode, detail: &str, words: &[&str]) -> bool {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => true,
        StatusCode::BAD_REQUEST => {
            let lower = detail.to_ascii_lowercase();
            words.iter().any(|w| lower.contains(w))
        }
        _ => false,
    }
}

/// `reply`'s status as an error with `detail` (secret-free) as its text;
/// [`UpstreamError::Credentials`] when `refuses_credentials`.
pub fn status_error(reply: &Reply, detail: String, refuses_credentials: bool) -> UpstreamError {
    if refuses_credentials {
        UpstreamError::Credentials(detail)
    } else {
        reply.error(&detail)
    }
}

/// Whether a status is one `http::with_retry` should see as an error to retry: 429 or a
/// 5xx.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `reply` when `kept` says the caller reads its status; otherwise that status as an
/// error (429 and 5xx are then retried by `http::with_retry`), with `describe`'s
/// secret-free text of the body.
pub fn keep_or_error(
    reply: Reply,
    kept: impl FnOnce(StatusCode) -> bool,
    describe: impl FnOnce(&str) -> String,
) -> Result<Reply, UpstreamError> {
    if kept(reply.status) {
        Ok(reply)
    } else {
        Err(reply.error(&describe(&reply.body)))
    }
}

/// `call` with the cached token from `token`; when `refused` says the carrier refused
/// it (it may end a token before the expiry it gave), the token is dropped from `tokens`
/// and `call` is made once more with a fresh one. The second answer is returned as it
/// is, refused or not: what a second refusal means is the caller's to say.
pub async fn with_token<T, E, TokenFut, CallFut>(
    tokens: &TokenCache,
    token: impl Fn() -> TokenFut,
    call: impl Fn(SecretString) -> CallFut,
    refused: impl Fn(&T) -> bool,
) -> Result<T, E>
where
    TokenFut: Future<Output = Result<SecretString, E>>,
    CallFut: Future<Output = Result<T, E>>,
{
    let answer = call(token().await?).await?;
    if !refused(&answer) {
        return Ok(answer);
    }
    tokens.invalidate().await;
    call(token().await?).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_never_repeated_in_errors() {
        let secret_url = "ftp://user:secret@example.com";
        for refused in [
            parse_base_url(secret_url, Carrier::Ups).map(|u| u.to_string()),
            endpoint(secret_url, "track", Carrier::Dhl).map(|u| u.to_string()),
        ] {
            match refused {
                Err(error) => assert!(!error.to_string().contains("secret"), "{error}"),
                Ok(url) => panic!("{url} should be refused"),
            }
        }
        match parse_base_url("https://example.com/prefix", Carrier::Fedex) {
            Ok(base) => assert_eq!(
                join(&base, &["track", "1Z 1"]).as_str(),
                "https://example.com/prefix/track/1Z%201"
            ),
            Err(e) => panic!("should parse: {e}"),
        }
    }

    #[test]
    fn userinfo_never_reaches_debug_text() {
        let text = "https://user:secret@example.com/";
        assert_eq!(without_userinfo(text, "***"), "https://***@example.com/");
        assert_eq!(without_userinfo(text, ""), "https://example.com/");
        assert_eq!(
            without_userinfo("https://example.com/", "***"),
            "https://example.com/"
        );
    }

    #[test]
    fn only_credential_answers_of_a_token_endpoint_are_refusals() {
        let words = ["invalid_client"];
        assert!(token_refused(StatusCode::UNAUTHORIZED, "", &words));
        assert!(token_refused(StatusCode::FORBIDDEN, "", &words));
        assert!(token_refused(
            StatusCode::BAD_REQUEST,
            "INVALID_CLIENT: bad",
            &words
        ));
        assert!(!token_refused(StatusCode::BAD_REQUEST, "bad grant", &words));
        assert!(!token_refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "invalid_client",
            &words
        ));
    }
}
