//! SP-API plumbing the Amazon executors share for one seller account: the LWA token in
//! `x-amz-access-token`, one token bucket per operation at its usage plan, readable
//! error summaries from `{"errors":[…]}`, and presigned document transfers.
//!
//! Whether a call may be repeated inside the call is the operation's own, fixed choice
//! ([`Retries`]): reads and harmless writes (a feed document, its upload) retry with
//! [`http::with_retry`]; writes with an effect (createFeed, the Messaging create* calls)
//! are sent exactly once and the outbox decides what follows, from
//! [`UpstreamError::may_have_acted`].
//!
//! Neither the access token nor a presigned URL ever reaches an error, a log or a
//! receipt: reqwest errors are stripped of their URL, and a document store's error body
//! is reduced to its `Code` and `Message`.
#![forbid(unsafe_code)]

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use url::Url;

use crate::http::{self, Delivery, Reply, RetryPolicy, UpstreamError};
use crate::sources::amazon::lwa::LwaClient;
use crate::sources::amazon::orders::{ErrorBody, describe};
use crate::sources::amazon::pacing::{Pacer, UsagePlan};

/// The header SP-API reads the LWA access token from.
pub const ACCESS_TOKEN_HEADER: &str = "x-amz-access-token";
/// The header SP-API states the caller's current rate for the operation in.
pub const RATE_LIMIT_HEADER: &str = "x-amzn-RateLimit-Limit";
/// The header SP-API names its request with (quoted to Amazon support).
pub const REQUEST_ID_HEADER: &str = "x-amzn-RequestId";

/// Whether a call may be sent again inside the call when it fails retryably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// A read, or a write without an effect of its own: retried with backoff.
    InCall,
    /// A write with an effect: sent once; the caller (the outbox) decides.
    Never,
}

/// One operation: its name (for logs and errors), its usage plan (`None`: not an
/// SP-API operation, e.g. a presigned transfer) and its retry choice.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub name: &'static str,
    pub plan: Option<UsagePlan>,
    pub retries: Retries,
}

/// The shared plumbing of one seller account on one regional endpoint.
pub struct SpApi {
    http: reqwest::Client,
    endpoint: Url,
    lwa: LwaClient,
    retry: RetryPolicy,
    /// One token bucket per operation, shared by every client of this account.
    pacer: Pacer,
}

impl SpApi {
    pub fn new(http: reqwest::Client, endpoint: Url, lwa: LwaClient, retry: RetryPolicy) -> Self {
        Self {
            http,
            endpoint,
            lwa,
            retry,
            pacer: Pacer::new(),
        }
    }

    /// The endpoint URL of a path given as segments; each segment is percent-encoded,
    /// so an id can never change the path.
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, UpstreamError> {
        let mut url = self.endpoint.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| UpstreamError::Malformed {
                what: "SP-API endpoint".into(),
                reason: "not a base URL".into(),
            })?
            .clear()
            .extend(segments);
        Ok(url)
    }

    /// Wait for a token of `operation`'s bucket, if it has a usage plan.
    async fn pace(&self, operation: &Operation) {
        if let Some(plan) = operation.plan {
            self.pacer.acquire(operation.name, plan).await;
        }
    }

    /// What the answer says about the operation's usage plan: follow a stated rate,
    /// and empty the bucket on a 429.
    fn learn_plan(&self, operation: &Operation, reply: &Reply) {
        let Some(plan) = operation.plan else {
            return;
        };
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            crate::telemetry::upstream_throttled("amazon", operation.name);
            self.pacer.throttled(operation.name, plan);
            return;
        }
        let stated = reply
            .headers
            .get(RATE_LIMIT_HEADER)
            .and_then(|v| v.to_str().ok());
        if let Some(stated) = stated
            && let Some(pace) = self.pacer.observe_limit(operation.name, plan, stated)
        {
            tracing::info!(
                operation = operation.name,
                rate = pace.granted,
                burst = pace.burst,
                "SP-API states a different usage plan; pacing to it."
            );
        }
    }

    /// The pace of an operation (for status output and tests).
    pub fn current_pace(&self, operation: &str) -> Option<crate::sources::amazon::pacing::Pace> {
        self.pacer.pace(operation)
    }

    /// Run `call` once or with in-call retries, as `operation` allows.
    async fn run<T, F, Fut>(&self, operation: &Operation, call: F) -> Result<T, UpstreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, UpstreamError>>,
    {
        match operation.retries {
            Retries::InCall => http::with_retry(self.retry, operation.name, call).await,
            Retries::Never => {
                let mut call = call;
                call().await
            }
        }
    }

    /// One SP-API call with the access token; the 2xx reply, or the error status with
    /// Amazon's `code: message` kept. A 403 drops the cached token so the next call
    /// asks LWA for a fresh one.
    pub(crate) async fn call<B: Serialize + Sync>(
        &self,
        operation: &Operation,
        method: Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Reply, UpstreamError> {
        self.call_as(operation, method, url, query, body, None)
            .await
    }

    /// [`Self::call`], authorised by `restricted` (a Restricted Data Token) instead of
    /// the access token when given.
    pub(crate) async fn call_as<B: Serialize + Sync>(
        &self,
        operation: &Operation,
        method: Method,
        url: &Url,
        query: &[(&str, String)],
        body: Option<&B>,
        restricted: Option<&SecretString>,
    ) -> Result<Reply, UpstreamError> {
        let attempt = || async {
            // A 403 to a cached access token usually means Amazon revoked or expired it
            // early: drop it and send once more with a fresh one. A 403 is a refusal
            // before any effect, so even a write may be resent.
            let mut refreshed = false;
            loop {
                self.pace(operation).await;
                let token = match restricted {
                    Some(rdt) => rdt.clone(),
                    None => self.lwa.access_token().await.map_err(token_failure)?,
                };
                let mut request = self
                    .http
                    .request(method.clone(), url.clone())
                    .header(ACCESS_TOKEN_HEADER, token.expose_secret());
                if !query.is_empty() {
                    request = request.query(query);
                }
                if let Some(body) = body {
                    request = request.json(body);
                }
                let reply = http::send(request).await?;
                self.learn_plan(operation, &reply);
                crate::telemetry::upstream_called(
                    "amazon",
                    operation.name,
                    reply.status.as_u16(),
                    self.pacer
                        .pace(operation.name)
                        .map(|p| (p.granted, p.burst)),
                );
                if reply.status.is_success() {
                    return Ok(reply);
                }
                if reply.status == StatusCode::FORBIDDEN && restricted.is_none() {
                    self.lwa.invalidate().await;
                    if !refreshed {
                        refreshed = true;
                        continue;
                    }
                }
                let summary = error_summary(&reply);
                tracing::warn!(
                    operation = operation.name,
                    status = reply.status.as_u16(),
                    error = %summary,
                    "SP-API answered with an error."
                );
                return Err(reply.error(&summary));
            }
        };
        self.run(operation, attempt).await
    }

    /// A GET whose 2xx body is parsed as `T`.
    pub(crate) async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        operation: &Operation,
        url: &Url,
        query: &[(&str, String)],
    ) -> Result<T, UpstreamError> {
        let reply = self
            .call::<()>(operation, Method::GET, url, query, None)
            .await?;
        reply.json(&format!("{} response", operation.name))
    }

    /// A GET authorised by a Restricted Data Token, 2xx body parsed as `T`.
    pub(crate) async fn get_json_restricted<T: serde::de::DeserializeOwned>(
        &self,
        operation: &Operation,
        url: &Url,
        query: &[(&str, String)],
        restricted: &SecretString,
    ) -> Result<T, UpstreamError> {
        let reply = self
            .call_as::<()>(operation, Method::GET, url, query, None, Some(restricted))
            .await?;
        reply.json(&format!("{} response", operation.name))
    }

    /// A POST with a JSON body, 2xx body parsed as `T`.
    pub(crate) async fn post_json<B: Serialize + Sync, T: serde::de::DeserializeOwned>(
        &self,
        operation: &Operation,
        url: &Url,
        body: &B,
    ) -> Result<T, UpstreamError> {
        let reply = self
            .call(operation, Method::POST, url, &[], Some(body))
            .await?;
        reply.json(&format!("{} response", operation.name))
    }

    /// PUT `body` to a presigned URL with `content_type` and no access token.
    pub(crate) async fn put_presigned(
        &self,
        operation: &Operation,
        url: &SecretString,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), UpstreamError> {
        let target = presigned(operation, url)?;
        let attempt = || async {
            self.pace(operation).await;
            let request = self
                .http
                .put(target.clone())
                .header(CONTENT_TYPE, content_type)
                .body(body.to_vec());
            let (status, headers, bytes) = send_bytes(request).await?;
            if status.is_success() {
                return Ok(());
            }
            Err(storage_error(operation, status, &headers, &bytes))
        };
        self.run(operation, attempt).await
    }

    /// GET a presigned URL (no access token); the body as bytes.
    pub(crate) async fn get_presigned(
        &self,
        operation: &Operation,
        url: &SecretString,
    ) -> Result<Vec<u8>, UpstreamError> {
        let target = presigned(operation, url)?;
        let attempt = || async {
            self.pace(operation).await;
            let (status, headers, bytes) = send_bytes(self.http.get(target.clone())).await?;
            if status.is_success() {
                return Ok(bytes);
            }
            Err(storage_error(operation, status, &headers, &bytes))
        };
        self.run(operation, attempt).await
    }
}

/// No access token means the SP-API request never left: whatever LWA answered, the
/// operation cannot have acted (kept as `Credentials` when the grant itself is refused).
fn token_failure(error: UpstreamError) -> UpstreamError {
    match error {
        UpstreamError::Credentials(_) => error,
        other => UpstreamError::Transport {
            retryable: other.is_retryable(),
            delivered: Delivery::NotSent,
            message: format!("no LWA access token, request not sent: {other}"),
        },
    }
}

/// `code: message (details)` of an SP-API error body, else the body shortened; with the
/// request id when Amazon sent one.
pub(crate) fn error_summary(reply: &Reply) -> String {
    let text = match serde_json::from_str::<ErrorBody>(&reply.body) {
        Ok(body) if !body.errors.is_empty() => http::summarize(&describe(&body.errors)),
        _ if reply.body.trim().is_empty() => "no error body".to_owned(),
        _ => http::summarize(&reply.body),
    };
    match request_id(&reply.headers) {
        Some(id) => format!("{text} (request {id})"),
        None => text,
    }
}

/// Amazon's request id, if it sent a sane one.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 100
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
}

/// A "refused before sending" error: not retryable, and certainly not acted on.
pub(crate) fn refused(reason: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Status {
        status: 400,
        retry_after: None,
        summary: format!("refused before sending, nothing was sent: {reason}"),
    }
}

/// Parse a presigned URL without ever quoting it.
fn presigned(operation: &Operation, url: &SecretString) -> Result<Url, UpstreamError> {
    let parsed = Url::parse(url.expose_secret()).map_err(|e| UpstreamError::Malformed {
        what: format!("{} URL", operation.name),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(UpstreamError::Malformed {
            what: format!("{} URL", operation.name),
            reason: format!("unsupported scheme {:?}", parsed.scheme()),
        });
    }
    Ok(parsed)
}

/// Send and read the whole answer as bytes (documents may be gzip).
async fn send_bytes(
    request: reqwest::RequestBuilder,
) -> Result<(StatusCode, HeaderMap, Vec<u8>), UpstreamError> {
    let response = request.send().await.map_err(UpstreamError::from_reqwest)?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .bytes()
        .await
        .map_err(UpstreamError::from_reqwest)?;
    Ok((status, headers, bytes.to_vec()))
}

/// A document store's error: only its `Code` and `Message` are kept (its body may
/// quote the signature, the string to sign or the canonical request).
fn storage_error(
    operation: &Operation,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> UpstreamError {
    let text = String::from_utf8_lossy(body);
    let summary = match storage_error_fields(&text) {
        Some(fields) => http::summarize(&fields),
        None => "no readable error body".to_owned(),
    };
    let summary = format!("{}: {summary}", operation.name);
    tracing::warn!(
        operation = operation.name,
        status = status.as_u16(),
        error = %summary,
        "The document store answered with an error."
    );
    UpstreamError::status(status, headers, &summary)
}

/// `Code: Message` of an S3-style XML error body.
fn storage_error_fields(body: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(body);
    let mut current: Option<&'static str> = None;
    let mut code = String::new();
    let mut message = String::new();
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) => {
                current = match e.local_name().as_ref() {
                    b"Code" => Some("Code"),
                    b"Message" => Some("Message"),
                    _ => None,
                };
            }
            Ok(Event::Text(t)) => {
                let Ok(t) = t.decode() else { continue };
                match current {
                    Some("Code") => code.push_str(&t),
                    Some("Message") => message.push_str(&t),
                    _ => {}
                }
            }
            Ok(Event::End(_)) => current = None,
            Ok(Event::Eof) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let code = code.trim();
    let message = message.trim();
    match (code.is_empty(), message.is_empty()) {
        (true, true) => None,
        (false, true) => Some(code.to_owned()),
        (true, false) => Some(message.to_owned()),
        (false, false) => Some(format!("{code}: {message}")),
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A loopback SP-API for the client tests: an LWA token endpoint and scripted
    //! answers per `METHOD path`, recording every request it sees.

    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex, PoisonError};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::{OriginalUri, State};
    use axum::http::{HeaderMap, Method, StatusCode};
    use axum::response::{IntoResponse, Response};
    use url::Url;

    use super::SpApi;
    use crate::clock::SystemClock;
    use crate::http::RetryPolicy;
    use crate::sources::amazon::lwa::{LwaClient, LwaCredentials};

    #[derive(Debug, Clone)]
    pub struct Seen {
        pub method: String,
        pub path: String,
        pub query: Option<String>,
        pub headers: HeaderMap,
        pub body: Vec<u8>,
    }

    impl Seen {
        pub fn header(&self, name: &str) -> Option<String> {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }

        pub fn query_pairs(&self) -> Vec<(String, String)> {
            url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        }

        pub fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap_or_default()
        }
    }

    #[derive(Debug, Clone)]
    pub struct Answer {
        pub status: u16,
        pub headers: Vec<(&'static str, String)>,
        pub body: Vec<u8>,
    }

    impl Answer {
        pub fn json(status: u16, body: serde_json::Value) -> Self {
            Self {
                status,
                headers: vec![("content-type", "application/json".into())],
                body: body.to_string().into_bytes(),
            }
        }

        pub fn bytes(status: u16, body: impl Into<Vec<u8>>) -> Self {
            Self {
                status,
                headers: Vec::new(),
                body: body.into(),
            }
        }

        pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
            self.headers.push((name, value.to_owned()));
            self
        }
    }

    #[derive(Default)]
    struct State_ {
        seen: Vec<Seen>,
        /// `METHOD path` → answers; the last one is repeated.
        script: HashMap<String, VecDeque<Answer>>,
        tokens_issued: usize,
    }

    #[derive(Clone, Default)]
    pub struct Fake {
        state: Arc<Mutex<State_>>,
        pub base: Option<Url>,
    }

    pub const TOKEN_PREFIX: &str = "Atza|fake-token-";

    impl Fake {
        /// Serve on 127.0.0.1:0.
        pub async fn start() -> Self {
            let mut fake = Fake::default();
            let app = Router::new()
                .fallback(handle)
                .with_state(fake.state.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .unwrap_or_else(|e| panic!("bind loopback: {e:?}"));
            let addr = listener
                .local_addr()
                .unwrap_or_else(|e| panic!("local addr: {e:?}"));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            fake.base = Some(
                Url::parse(&format!("http://{addr}/"))
                    .unwrap_or_else(|e| panic!("base url: {e:?}")),
            );
            fake
        }

        pub fn url(&self, path: &str) -> String {
            self.base
                .as_ref()
                .and_then(|b| b.join(path).ok())
                .map(|u| u.to_string())
                .unwrap_or_default()
        }

        /// Answer `METHOD path` with these, in order (the last one is repeated).
        pub fn script(&self, method: &str, path: &str, answers: Vec<Answer>) {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .script
                .insert(format!("{method} {path}"), answers.into());
        }

        /// Requests seen on `path` (the LWA endpoint is left out unless asked).
        pub fn seen(&self, path: &str) -> Vec<Seen> {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state
                .seen
                .iter()
                .filter(|s| s.path == path)
                .cloned()
                .collect()
        }

        pub fn all_seen(&self) -> Vec<Seen> {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.seen.clone()
        }

        pub fn tokens_issued(&self) -> usize {
            self.state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .tokens_issued
        }

        /// An `SpApi` on this fake with fast retries.
        pub fn api(&self) -> Arc<SpApi> {
            let base = self
                .base
                .clone()
                .unwrap_or_else(|| panic!("the fake was not started"));
            let http =
                crate::http::client("nightdesk-test").unwrap_or_else(|e| panic!("client: {e:?}"));
            let lwa = LwaClient::new(
                http.clone(),
                base.join("/auth/o2/token")
                    .unwrap_or_else(|e| panic!("lwa url: {e:?}")),
                LwaCredentials {
                    client_id: "amzn1.application-oa2-client.test".into(),
                    client_secret: "client-secret".to_owned().into(),
                    refresh_token: "Atzr|refresh".to_owned().into(),
                },
                Arc::new(SystemClock),
                RetryPolicy::fast(),
            );
            Arc::new(SpApi::new(http, base, lwa, RetryPolicy::fast()))
        }
    }

    async fn handle(
        State(state): State<Arc<Mutex<State_>>>,
        method: Method,
        OriginalUri(uri): OriginalUri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        let path = uri.path().to_owned();
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        if path == "/auth/o2/token" {
            state.tokens_issued += 1;
            let token = format!("{TOKEN_PREFIX}{}", state.tokens_issued);
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": 3600})
                    .to_string(),
            )
                .into_response();
        }
        state.seen.push(Seen {
            method: method.to_string(),
            path: path.clone(),
            query: uri.query().map(str::to_owned),
            headers,
            body: body.to_vec(),
        });
        let key = format!("{method} {path}");
        let answer = match state.script.get_mut(&key) {
            Some(queue) if queue.len() > 1 => queue.pop_front(),
            Some(queue) => queue.front().cloned(),
            None => None,
        };
        let Some(answer) = answer else {
            return (
                StatusCode::NOT_FOUND,
                serde_json::json!({"errors": [{"code": "NotFound", "message": format!("no script for {key}")}]})
                    .to_string(),
            )
                .into_response();
        };
        let mut response = (
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            answer.body,
        )
            .into_response();
        for (name, value) in answer.headers {
            if let Ok(value) = value.parse() {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Answer, Fake, TOKEN_PREFIX};
    use super::*;
    use std::sync::Arc;

    const READ: Operation = Operation {
        name: "testRead",
        plan: Some(UsagePlan {
            rate: 1000.0,
            burst: 100,
        }),
        retries: Retries::InCall,
    };

    #[test]
    fn urls_encode_each_segment_and_drop_the_base_path() {
        let http = reqwest::Client::new();
        let base = Url::parse("https://sellingpartnerapi-na.amazon.com/ignored?x=1")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let lwa = LwaClient::new(
            http.clone(),
            Url::parse("https://api.amazon.com/auth/o2/token").unwrap_or_else(|e| panic!("{e:?}")),
            crate::sources::amazon::lwa::LwaCredentials {
                client_id: "id".into(),
                client_secret: "s".to_owned().into(),
                refresh_token: "r".to_owned().into(),
            },
            Arc::new(crate::clock::SystemClock),
            RetryPolicy::fast(),
        );
        let api = SpApi::new(http, base, lwa, RetryPolicy::fast());
        let url = api
            .url(&["feeds", "2021-06-30", "feeds", "a/b?c#d"])
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            url.as_str(),
            "https://sellingpartnerapi-na.amazon.com/feeds/2021-06-30/feeds/a%2Fb%3Fc%23d"
        );
    }

    #[test]
    fn error_summaries_keep_code_message_and_request_id() {
        let mut headers = HeaderMap::new();
        headers.insert(
            REQUEST_ID_HEADER,
            "abc-123".parse().unwrap_or_else(|e| panic!("{e:?}")),
        );
        let reply = Reply {
            status: StatusCode::BAD_REQUEST,
            headers,
            body: r#"{"errors":[{"code":"InvalidInput","message":"Invalid Input","details":"bad id"}]}"#
                .into(),
        };
        assert_eq!(
            error_summary(&reply),
            "InvalidInput: Invalid Input (bad id) (request abc-123)"
        );
    }

    #[test]
    fn storage_errors_keep_only_code_and_message() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code>\
            <Message>The request signature we calculated does not match</Message>\
            <StringToSign>AWS4-HMAC-SHA256 secret-ish</StringToSign>\
            <SignatureProvided>deadbeef</SignatureProvided></Error>";
        let fields = storage_error_fields(body).unwrap_or_else(|| panic!("expected a value"));
        assert_eq!(
            fields,
            "SignatureDoesNotMatch: The request signature we calculated does not match"
        );
        assert!(storage_error_fields("garbage <<<").is_none());
    }

    #[test]
    fn token_failures_never_count_as_sent() {
        let lwa_down = UpstreamError::Status {
            status: 500,
            retry_after: None,
            summary: "LWA".into(),
        };
        let mapped = token_failure(lwa_down);
        assert!(!mapped.may_have_acted());
        assert!(mapped.is_retryable());
        let refused_grant = token_failure(UpstreamError::Credentials("invalid_grant".into()));
        assert!(matches!(refused_grant, UpstreamError::Credentials(_)));
    }

    #[tokio::test]
    async fn a_403_is_sent_once_more_with_a_fresh_token() {
        let fake = Fake::start().await;
        let denied = || {
            Answer::json(
                403,
                serde_json::json!({"errors":[{"code":"Unauthorized","message":"Access to requested resource is denied."}]}),
            )
        };
        fake.script(
            "GET",
            "/x",
            vec![
                denied(),
                Answer::json(200, serde_json::json!({})),
                denied(),
                denied(),
            ],
        );
        let api = fake.api();
        let url = api.url(&["x"]).unwrap_or_else(|e| panic!("{e:?}"));
        // A revoked token: dropped, and the call succeeds with a fresh one.
        let first: Result<serde_json::Value, _> = api.get_json(&READ, &url, &[]).await;
        assert!(first.is_ok(), "{first:?}");
        let seen = fake.seen("/x");
        assert_eq!(seen.len(), 2);
        assert_eq!(
            seen[0].header(ACCESS_TOKEN_HEADER).as_deref(),
            Some("Atza|fake-token-1")
        );
        assert_eq!(
            seen[1].header(ACCESS_TOKEN_HEADER).as_deref(),
            Some("Atza|fake-token-2")
        );
        // A real refusal (the role is missing): one fresh try, then the error.
        let second: Result<serde_json::Value, _> = api.get_json(&READ, &url, &[]).await;
        let Err(error) = second else {
            panic!("{second:?}")
        };
        assert!(error.to_string().contains("Unauthorized"), "{error}");
        assert!(!error.to_string().contains(TOKEN_PREFIX));
        assert_eq!(fake.seen("/x").len(), 4);
        assert_eq!(fake.tokens_issued(), 3);
    }

    #[tokio::test]
    async fn presigned_errors_never_quote_the_url() {
        let fake = Fake::start().await;
        fake.script(
            "PUT",
            "/bucket/doc",
            vec![Answer::bytes(
                403,
                "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
            )],
        );
        let api = fake.api();
        let op = Operation {
            name: "upload",
            plan: None,
            retries: Retries::InCall,
        };
        let url = SecretString::from(fake.url("/bucket/doc?X-Amz-Signature=SIGNATURE-SECRET"));
        let result = api.put_presigned(&op, &url, "text/plain", b"x").await;
        let Err(error) = result else {
            panic!("{result:?}")
        };
        let text = format!("{error} {error:?}");
        assert!(text.contains("AccessDenied: Request has expired"), "{text}");
        assert!(!text.contains("SIGNATURE-SECRET") && !text.contains("127.0.0.1"));
        // 403 is not retryable: one request.
        assert_eq!(fake.seen("/bucket/doc").len(), 1);

        // A URL that does not parse is malformed, and is not quoted either.
        let bad = SecretString::from("not a url SIGNATURE-SECRET".to_owned());
        let error = api.get_presigned(&op, &bad).await.unwrap_err();
        assert!(matches!(error, UpstreamError::Malformed { .. }));
        assert!(!error.to_string().contains("SIGNATURE-SECRET"));
    }
}
