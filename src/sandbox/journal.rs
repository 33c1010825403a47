//! The journal: every request the sandbox received, in order, with secrets masked.
//! Tests read it to see what a client actually sent; `nightdesk sandbox` can also
//! append it to a file as JSON lines.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{SandboxError, lock};

/// Field names (lower case) whose values never reach the journal. Restricted Data
/// Tokens travel in `x-amz-access-token` like access tokens; a body or query naming one
/// is masked too.
const SECRET_FIELDS: [&str; 5] = [
    "client_secret",
    "refresh_token",
    "access_token",
    "x-amz-access-token",
    "restricteddatatoken",
];

/// Query parameters masked besides [`SECRET_FIELDS`]: the presigned-URL signature and
/// the Google Chat webhook's `key` and `token`.
const SECRET_QUERY: [&str; 3] = ["x-amz-signature", "key", "token"];

/// Headers whose values never reach the journal (their presence does).
const SECRET_HEADERS: [&str; 9] = [
    "dhl-api-key",
    "wm_sec.access_token",
    "x-shopify-access-token",
    "x-amz-access-token",
    "authorization",
    "cookie",
    "x-amz-security-token",
    "proxy-authorization",
    "x-nightdesk-signature",
];

/// The mask written in place of a secret.
pub const MASK: &str = "***";

/// One request as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// 1, 2, 3, … in the order answers were decided.
    pub seq: u64,
    /// When the request arrived, by the sandbox's clock.
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    /// The raw query string (secrets masked), without `?`; empty when none.
    pub query: String,
    /// The SP-API `operationId` (`getOrders`, `createConfirmOrderDetails`, `createFeed`,
    /// …), `uploadFeedDocument` / `downloadFeedDocument` for the presigned document URLs,
    /// `lwa.token`, `chat.<kind>` (`chat.slack`, `chat.webhook`, …) or `unknown`.
    pub operation: String,
    /// The status actually sent; 499 when the client went away before the answer.
    pub status: u16,
    /// Whether an injected fault shaped the answer.
    #[serde(default)]
    pub fault: bool,
    /// Request headers, lower-case names; credentials masked.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body as JSON, form body as an object of fields, other text as a string,
    /// no body as null. Secret fields masked.
    pub body: Value,
}

/// In-memory journal plus optional JSON-lines file. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(super) struct Journal {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<JournalEntry>,
    file: Option<(PathBuf, File)>,
}

impl Journal {
    pub(super) fn open(path: Option<&Path>) -> Result<Self, SandboxError> {
        let file = match path {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| SandboxError::Journal {
                        path: path.to_path_buf(),
                        source,
                    })?;
                Some((path.to_path_buf(), file))
            }
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Mutex::new(Inner {
                entries: Vec::new(),
                file,
            })),
        })
    }

    /// Numbers the entry and stores it. The file is written under the same lock so its
    /// lines are in `seq` order; lines are small, so blocking I/O here is acceptable.
    pub(super) fn record(&self, mut entry: JournalEntry) {
        let mut inner = lock(&self.inner);
        entry.seq = inner.entries.len() as u64 + 1;
        if let Some((path, file)) = inner.file.as_mut() {
            let mut line = serde_json::to_string(&entry).unwrap_or_default();
            line.push('\n');
            if let Err(e) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
                tracing::warn!(path = %path.display(), error = %e, "sandbox journal write failed");
            }
        }
        inner.entries.push(entry);
    }

    pub(super) fn snapshot(&self) -> Vec<JournalEntry> {
        lock(&self.inner).entries.clone()
    }
}

/// Records an entry when dropped unfinished, so a request whose client hung up
/// (e.g. during an injected delay) is still journaled, with status 499.
pub(super) struct PendingEntry {
    journal: Journal,
    entry: Option<JournalEntry>,
}

impl PendingEntry {
    pub(super) fn new(journal: Journal, entry: JournalEntry) -> Self {
        Self {
            journal,
            entry: Some(entry),
        }
    }

    pub(super) fn update(&mut self, change: impl FnOnce(&mut JournalEntry)) {
        if let Some(entry) = self.entry.as_mut() {
            change(entry);
        }
    }

    pub(super) fn finish(mut self, status: u16) {
        if let Some(mut entry) = self.entry.take() {
            entry.status = status;
            self.journal.record(entry);
        }
    }
}

impl Drop for PendingEntry {
    fn drop(&mut self) {
        if let Some(mut entry) = self.entry.take() {
            entry.status = 499;
            self.journal.record(entry);
        }
    }
}

/// Request headers for the journal, credentials masked.
pub(super) fn headers_json(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str().to_ascii_lowercase();
            let value = if SECRET_HEADERS.contains(&name.as_str()) {
                MASK.to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect()
}

/// The request body for the journal: JSON as JSON, a form as an object, else text.
pub(super) fn body_json(headers: &HeaderMap, body: &[u8]) -> Value {
    if body.is_empty() {
        return Value::Null;
    }
    let is_form = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    let mut value = if is_form {
        Value::Object(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        serde_json::from_slice(body)
            .unwrap_or_else(|_| Value::String(mask_xml(&String::from_utf8_lossy(body))))
    };
    mask_value(&mut value);
    value
}

/// Masks the text of XML elements that carry secrets (DPD's SOAP `password` and
/// `authToken`), whatever their namespace prefix.
fn mask_xml(text: &str) -> String {
    static SECRET_ELEMENTS: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| {
            regex::Regex::new(r"(?is)(<(?:[\w.-]+:)?(?:password|authToken)\b[^>]*>)[^<]*(</)").ok()
        });
    match SECRET_ELEMENTS.as_ref() {
        Some(pattern) => pattern
            .replace_all(text, format!("${{1}}{MASK}${{2}}"))
            .into_owned(),
        // The pattern is a literal that compiles; were it not to, mask everything.
        None => MASK.to_owned(),
    }
}

/// Masks secret fields at any depth.
fn mask_value(value: &mut Value) {
    match value {
        Value::Object(map) => mask_map(map),
        Value::Array(items) => items.iter_mut().for_each(mask_value),
        _ => {}
    }
}

fn mask_map(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        if SECRET_FIELDS.contains(&key.to_ascii_lowercase().as_str()) {
            *value = Value::String(MASK.to_owned());
        } else {
            mask_value(value);
        }
    }
}

/// The query string for the journal, secret parameters masked.
pub(super) fn query_text(query: Option<&str>) -> String {
    let Some(query) = query else {
        return String::new();
    };
    let is_secret = |key: &str| {
        let key = key.to_ascii_lowercase();
        SECRET_FIELDS.contains(&key.as_str()) || SECRET_QUERY.contains(&key.as_str())
    };
    let has_secret = url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| is_secret(&k));
    if !has_secret {
        return query.to_owned();
    }
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        out.append_pair(&k, if is_secret(&k) { MASK } else { &v });
    }
    out.finish()
}

#[cfg(test)]
mod tests_xml {
    use super::*;

    #[test]
    fn soap_passwords_and_tokens_are_masked() {
        let body = "<soapenv:Header><ns:authentication><delisId>sandboxdelis</delisId>\
                    <authToken>abc123</authToken></ns:authentication></soapenv:Header>\
                    <ns1:getAuth><delisId>d</delisId><ns1:password>hunter2</ns1:password></ns1:getAuth>";
        let masked = mask_xml(body);
        assert!(
            !masked.contains("abc123") && !masked.contains("hunter2"),
            "{masked}"
        );
        assert!(masked.contains("<authToken>***</authToken>"), "{masked}");
        assert!(
            masked.contains("<delisId>sandboxdelis</delisId>"),
            "{masked}"
        );
        let mut headers = HeaderMap::new();
        headers.insert("DHL-API-Key", axum::http::HeaderValue::from_static("k"));
        assert_eq!(headers_json(&headers)["dhl-api-key"], MASK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn secrets_are_masked_everywhere() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amz-access-token",
            HeaderValue::from_static("Atza|secret"),
        );
        headers.insert(
            "content-type",
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let body = body_json(
            &headers,
            b"grant_type=refresh_token&refresh_token=Atzr%7Cx&client_id=id&client_secret=s",
        );
        assert_eq!(body["refresh_token"], MASK);
        assert_eq!(body["client_secret"], MASK);
        assert_eq!(body["client_id"], "id");
        assert_eq!(headers_json(&headers)["x-amz-access-token"], MASK);

        let json = body_json(
            &HeaderMap::new(),
            br#"{"nested":[{"Client_Secret":"s"}],"text":"hi"}"#,
        );
        assert_eq!(json["nested"][0]["Client_Secret"], MASK);
        let rdt = body_json(
            &HeaderMap::new(),
            br#"{"restrictedDataToken":"Atz.sprdt|x","expiresIn":3600}"#,
        );
        assert_eq!(rdt["restrictedDataToken"], MASK);
        assert_eq!(rdt["expiresIn"], 3600);
        assert_eq!(json["text"], "hi");
        assert_eq!(body_json(&HeaderMap::new(), b"not json"), "not json");
        assert_eq!(body_json(&HeaderMap::new(), b""), Value::Null);

        assert_eq!(
            query_text(Some("a=1&refresh_token=zz")),
            "a=1&refresh_token=***"
        );
        assert_eq!(query_text(Some("MarketplaceIds=X")), "MarketplaceIds=X");
        assert_eq!(
            query_text(Some("X-Amz-Expires=300&X-Amz-Signature=abc")),
            "X-Amz-Expires=300&X-Amz-Signature=***"
        );
        assert_eq!(query_text(Some("key=k&token=t")), "key=***&token=***");
        let mut signed = HeaderMap::new();
        signed.insert(
            "x-nightdesk-signature",
            HeaderValue::from_static("sha256=00"),
        );
        assert_eq!(headers_json(&signed)["x-nightdesk-signature"], MASK);
    }
}
