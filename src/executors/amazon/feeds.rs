//! Feeds API 2021-06-30 (`specs/amazon/feeds_2021-06-30.json`): a feed document and its
//! upload to the presigned URL, createFeed, getFeed / getFeeds, and the processing
//! report (getFeedDocument, then the document itself, gunzipped when Amazon says GZIP).
//!
//! createFeed is the one call here with an effect: it is sent once and never retried in
//! the call. createFeedDocument makes only an empty document and the upload replaces its
//! content, so both are retried like the reads. Presigned URLs are secrets: they stay in
//! a [`SecretString`] and never reach an error or a log.
#![forbid(unsafe_code)]

use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;

use crate::http::UpstreamError;
use crate::sources::amazon::UsagePlan;
use crate::sources::amazon::api::{Operation, Retries, SpApi, refused};
use crate::sources::amazon::orders::parse_time;

const CREATE_FEED_DOCUMENT: Operation = Operation {
    name: "createFeedDocument",
    // 0.5 per second, burst 15.
    plan: Some(UsagePlan {
        rate: 0.5,
        burst: 15,
    }),
    retries: Retries::InCall,
};
const UPLOAD: Operation = Operation {
    name: "feed document upload",
    plan: None,
    retries: Retries::InCall,
};
const CREATE_FEED: Operation = Operation {
    name: "createFeed",
    // 0.0083 per second (one per two minutes), burst 15.
    plan: Some(UsagePlan {
        rate: 0.0083,
        burst: 15,
    }),
    retries: Retries::Never,
};
const GET_FEED: Operation = Operation {
    name: "getFeed",
    // 2 per second, burst 15.
    plan: Some(UsagePlan {
        rate: 2.0,
        burst: 15,
    }),
    retries: Retries::InCall,
};
const GET_FEEDS: Operation = Operation {
    name: "getFeeds",
    // 0.0222 per second (one per 45 s), burst 10.
    plan: Some(UsagePlan {
        rate: 0.0222,
        burst: 10,
    }),
    retries: Retries::InCall,
};
const GET_FEED_DOCUMENT: Operation = Operation {
    name: "getFeedDocument",
    // 0.0222 per second (one per 45 s), burst 10.
    plan: Some(UsagePlan {
        rate: 0.0222,
        burst: 10,
    }),
    retries: Retries::InCall,
};
const DOWNLOAD: Operation = Operation {
    name: "feed document download",
    plan: None,
    retries: Retries::InCall,
};

/// getFeeds' largest page.
const PAGE_SIZE: u32 = 100;
/// A processing report larger than this (unpacked) is not read.
const MAX_DOCUMENT_BYTES: u64 = 64 * 1024 * 1024;

/// A feed document to upload to: its id and its presigned URL (valid five minutes).
#[derive(Debug)]
pub struct FeedDocument {
    pub id: String,
    url: SecretString,
}

/// `Feed.processingStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProcessingStatus {
    InQueue,
    InProgress,
    Done,
    Fatal,
    Cancelled,
}

impl ProcessingStatus {
    /// DONE, FATAL and CANCELLED do not change any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Done | Self::Fatal | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InQueue => "IN_QUEUE",
            Self::InProgress => "IN_PROGRESS",
            Self::Done => "DONE",
            Self::Fatal => "FATAL",
            Self::Cancelled => "CANCELLED",
        }
    }
}

/// A feed as getFeed and getFeeds tell it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedInfo {
    pub id: String,
    pub feed_type: String,
    pub marketplace_ids: Vec<String>,
    pub created: DateTime<Utc>,
    pub status: ProcessingStatus,
    /// The processing report's document, once the feed is DONE (or FATAL, sometimes).
    pub result_document_id: Option<String>,
}

/// `Feed` on the wire.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFeed {
    pub feed_id: String,
    pub feed_type: String,
    pub marketplace_ids: Option<Vec<String>>,
    pub created_time: String,
    pub processing_status: String,
    pub result_feed_document_id: Option<String>,
}

impl WireFeed {
    pub fn into_info(self) -> Result<FeedInfo, UpstreamError> {
        let what = || format!("feed {}", self.feed_id);
        let created = parse_time(&self.created_time).ok_or_else(|| UpstreamError::Malformed {
            what: what(),
            reason: format!(
                "createdTime {:?} is not an ISO 8601 time",
                self.created_time
            ),
        })?;
        let status: ProcessingStatus =
            serde_json::from_value(serde_json::Value::String(self.processing_status.clone()))
                .map_err(|_| UpstreamError::Malformed {
                    what: what(),
                    reason: format!(
                        "processingStatus {:?} is not one Amazon publishes",
                        self.processing_status
                    ),
                })?;
        Ok(FeedInfo {
            id: self.feed_id,
            feed_type: self.feed_type,
            marketplace_ids: self.marketplace_ids.unwrap_or_default(),
            created,
            status,
            result_document_id: self.result_feed_document_id.filter(|id| !id.is_empty()),
        })
    }
}

/// `GetFeedsResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetFeedsResponse {
    pub feeds: Vec<WireFeed>,
    pub next_token: Option<String>,
}

/// `CreateFeedDocumentResponse`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateFeedDocumentResponse {
    pub feed_document_id: String,
    pub url: SecretString,
}

/// `CreateFeedResponse`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateFeedResponse {
    pub feed_id: String,
}

/// `FeedDocument` (getFeedDocument).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireFeedDocument {
    pub feed_document_id: String,
    pub url: SecretString,
    pub compression_algorithm: Option<String>,
}

/// The Feeds API of one seller account.
pub struct FeedsClient {
    api: Arc<SpApi>,
}

impl FeedsClient {
    pub fn new(api: Arc<SpApi>) -> Self {
        Self { api }
    }

    /// createFeedDocument: a document id and the presigned URL to upload it to.
    pub async fn create_document(&self, content_type: &str) -> Result<FeedDocument, UpstreamError> {
        if content_type.trim().is_empty() {
            return Err(refused("a feed document needs a content type"));
        }
        let url = self.api.url(&["feeds", "2021-06-30", "documents"])?;
        let body = serde_json::json!({ "contentType": content_type });
        let reply = self
            .api
            .call(&CREATE_FEED_DOCUMENT, Method::POST, &url, &[], Some(&body))
            .await?;
        let parsed: CreateFeedDocumentResponse = reply.json("createFeedDocument response")?;
        if parsed.feed_document_id.is_empty() {
            return Err(UpstreamError::Malformed {
                what: "createFeedDocument response".into(),
                reason: "empty feedDocumentId".into(),
            });
        }
        Ok(FeedDocument {
            id: parsed.feed_document_id,
            url: parsed.url,
        })
    }

    /// Upload the feed content: an HTTP PUT to the presigned URL with the same
    /// Content-Type as the document was created with, and no access token.
    pub async fn upload(
        &self,
        doc: &FeedDocument,
        content_type: &str,
        body: &[u8],
    ) -> Result<(), UpstreamError> {
        self.api
            .put_presigned(&UPLOAD, &doc.url, content_type, body)
            .await
    }

    /// createFeed: the feed id. Sent once, never retried here: an error that
    /// [`may_have_acted`](UpstreamError::may_have_acted) leaves it open whether the feed
    /// exists (look with [`FeedsClient::feeds_since`]).
    pub async fn create_feed(
        &self,
        feed_type: &str,
        marketplace_ids: &[String],
        document_id: &str,
    ) -> Result<String, UpstreamError> {
        if feed_type.trim().is_empty() || document_id.trim().is_empty() {
            return Err(refused("createFeed needs a feed type and a document id"));
        }
        if marketplace_ids.is_empty() || marketplace_ids.len() > 25 {
            return Err(refused(format!(
                "createFeed takes 1 to 25 marketplace ids, not {}",
                marketplace_ids.len()
            )));
        }
        let url = self.api.url(&["feeds", "2021-06-30", "feeds"])?;
        let body = serde_json::json!({
            "feedType": feed_type,
            "marketplaceIds": marketplace_ids,
            "inputFeedDocumentId": document_id,
        });
        let reply = self
            .api
            .call(&CREATE_FEED, Method::POST, &url, &[], Some(&body))
            .await?;
        let parsed: CreateFeedResponse = reply.json("createFeed response")?;
        if parsed.feed_id.is_empty() {
            return Err(UpstreamError::Malformed {
                what: "createFeed response".into(),
                reason: "empty feedId".into(),
            });
        }
        Ok(parsed.feed_id)
    }

    /// getFeed.
    pub async fn get_feed(&self, feed_id: &str) -> Result<FeedInfo, UpstreamError> {
        if feed_id.trim().is_empty() {
            return Err(refused("getFeed needs a feed id"));
        }
        let url = self.api.url(&["feeds", "2021-06-30", "feeds", feed_id])?;
        let wire: WireFeed = self.api.get_json(&GET_FEED, &url, &[]).await?;
        wire.into_info()
    }

    /// getFeeds: the account's feeds of `feed_type` for these marketplaces created since
    /// `created_since`, every page (a next page is asked for with `nextToken` alone).
    pub async fn feeds_since(
        &self,
        feed_type: &str,
        marketplace_ids: &[String],
        created_since: DateTime<Utc>,
    ) -> Result<Vec<FeedInfo>, UpstreamError> {
        if feed_type.trim().is_empty() {
            return Err(refused("getFeeds needs a feed type"));
        }
        if marketplace_ids.len() > 10 {
            return Err(refused(format!(
                "getFeeds filters on at most 10 marketplace ids, not {}",
                marketplace_ids.len()
            )));
        }
        let url = self.api.url(&["feeds", "2021-06-30", "feeds"])?;
        let mut filters = vec![
            ("feedTypes", feed_type.to_owned()),
            ("pageSize", PAGE_SIZE.to_string()),
            (
                "createdSince",
                created_since.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
        ];
        if !marketplace_ids.is_empty() {
            filters.push(("marketplaceIds", marketplace_ids.join(",")));
        }
        let mut feeds = Vec::new();
        let mut next_token: Option<String> = None;
        // A token that comes back again would loop for ever; Amazon keeps 90 days of
        // feeds, far fewer pages than this.
        for _ in 0..1000 {
            let query = match &next_token {
                Some(token) => vec![("nextToken", token.clone())],
                None => filters.clone(),
            };
            let page: GetFeedsResponse = self.api.get_json(&GET_FEEDS, &url, &query).await?;
            for wire in page.feeds {
                let info = wire.into_info()?;
                // The filters are Amazon's; checked again so a loose answer cannot
                // make another feed look like ours.
                let in_marketplaces = marketplace_ids.is_empty()
                    || info.marketplace_ids.is_empty()
                    || info
                        .marketplace_ids
                        .iter()
                        .any(|m| marketplace_ids.contains(m));
                if info.feed_type == feed_type && info.created >= created_since && in_marketplaces {
                    feeds.push(info);
                }
            }
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(token) if next_token.as_ref() != Some(&token) => next_token = Some(token),
                Some(_) => {
                    return Err(UpstreamError::Malformed {
                        what: "getFeeds response".into(),
                        reason: "the same nextToken came back".into(),
                    });
                }
                None => return Ok(feeds),
            }
        }
        Err(UpstreamError::Malformed {
            what: "getFeeds response".into(),
            reason: "more than 1000 pages".into(),
        })
    }

    /// The content of a result document (a processing report): getFeedDocument, then
    /// the document from its presigned URL, gunzipped when it is GZIP.
    pub async fn result_document(&self, document_id: &str) -> Result<String, UpstreamError> {
        if document_id.trim().is_empty() {
            return Err(refused("getFeedDocument needs a document id"));
        }
        let url = self
            .api
            .url(&["feeds", "2021-06-30", "documents", document_id])?;
        let wire: WireFeedDocument = self.api.get_json(&GET_FEED_DOCUMENT, &url, &[]).await?;
        let what = || format!("feed document {}", wire.feed_document_id);
        let gzip = match wire.compression_algorithm.as_deref() {
            None | Some("") => false,
            Some(a) if a.eq_ignore_ascii_case("GZIP") => true,
            Some(other) => {
                return Err(UpstreamError::Malformed {
                    what: what(),
                    reason: format!("unknown compressionAlgorithm {other:?}"),
                });
            }
        };
        let bytes = self.api.get_presigned(&DOWNLOAD, &wire.url).await?;
        // Gzip is also recognised by its magic number, in case the store sends it
        // without Amazon saying so.
        let bytes = if gzip || bytes.starts_with(&[0x1f, 0x8b]) {
            gunzip(&bytes).map_err(|reason| UpstreamError::Malformed {
                what: what(),
                reason,
            })?
        } else {
            bytes
        };
        if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
            return Err(UpstreamError::Malformed {
                what: what(),
                reason: format!("larger than {MAX_DOCUMENT_BYTES} bytes"),
            });
        }
        // Reports are UTF-8; a stray byte must not hide the rest of the report.
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }
}

/// Unpack gzip, refusing more than [`MAX_DOCUMENT_BYTES`].
fn gunzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("gzip: {e}"))?;
    if out.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(format!("unpacks to more than {MAX_DOCUMENT_BYTES} bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::sources::amazon::api::ACCESS_TOKEN_HEADER;
    use crate::sources::amazon::api::fake::{Answer, Fake};
    use secrecy::ExposeSecret;
    use serde_json::json;

    const US: &str = "ATVPDKIKX0DER";

    fn spec() -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/specs/amazon/feeds_2021-06-30.json"
        ))
        .ok()?;
        serde_json::from_str(&text).ok()
    }

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

    fn gzip(text: &str) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder
            .write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("{e:?}"));
        encoder.finish().unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn parses_the_published_sandbox_examples() {
        let Some(spec) = spec() else {
            eprintln!("specs not found; skipping");
            return;
        };
        let doc: CreateFeedDocumentResponse =
            serde_json::from_value(sandbox(&spec, "/feeds/2021-06-30/documents", "post", "201"))
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(doc.feed_document_id, "3d4e42b5-1d6e-44e8-a89c-2abfca0625bb");
        assert!(doc.url.expose_secret().starts_with("https://"));

        let created: CreateFeedResponse =
            serde_json::from_value(sandbox(&spec, "/feeds/2021-06-30/feeds", "post", "202"))
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(created.feed_id, "3485934");

        let feed: WireFeed = serde_json::from_value(sandbox(
            &spec,
            "/feeds/2021-06-30/feeds/{feedId}",
            "get",
            "200",
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        let feed = feed.into_info().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(feed.id, "FeedId1");
        assert_eq!(feed.status, ProcessingStatus::Cancelled);
        assert!(feed.status.is_terminal());
        assert_eq!(feed.created.to_rfc3339(), "2024-03-11T13:16:24.630+00:00");

        let page: GetFeedsResponse =
            serde_json::from_value(sandbox(&spec, "/feeds/2021-06-30/feeds", "get", "200"))
                .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(page.feeds.len(), 1);
        assert!(page.next_token.is_some());
        let infos: Vec<FeedInfo> = page
            .feeds
            .into_iter()
            .map(|f| f.into_info().unwrap_or_else(|e| panic!("{e:?}")))
            .collect();
        assert_eq!(infos[0].feed_type, "POST_PRODUCT_DATA");

        let document: WireFeedDocument = serde_json::from_value(sandbox(
            &spec,
            "/feeds/2021-06-30/documents/{feedDocumentId}",
            "get",
            "200",
        ))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            document.feed_document_id,
            "0356cf79-b8b0-4226-b4b9-0ee058ea5760"
        );
        assert!(document.compression_algorithm.is_none());

        // Every 400 example is an ErrorList.
        for (path, method) in [
            ("/feeds/2021-06-30/documents", "post"),
            ("/feeds/2021-06-30/feeds", "post"),
            ("/feeds/2021-06-30/feeds", "get"),
            ("/feeds/2021-06-30/feeds/{feedId}", "get"),
            ("/feeds/2021-06-30/documents/{feedDocumentId}", "get"),
        ] {
            let body: crate::sources::amazon::orders::ErrorBody =
                serde_json::from_value(sandbox(&spec, path, method, "400"))
                    .unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(body.errors[0].code, "400", "{method} {path}");
        }
    }

    #[test]
    fn statuses_and_times_are_checked() {
        for (text, status, terminal) in [
            ("IN_QUEUE", ProcessingStatus::InQueue, false),
            ("IN_PROGRESS", ProcessingStatus::InProgress, false),
            ("DONE", ProcessingStatus::Done, true),
            ("FATAL", ProcessingStatus::Fatal, true),
            ("CANCELLED", ProcessingStatus::Cancelled, true),
        ] {
            let wire: WireFeed = serde_json::from_value(json!({
                "feedId": "1", "feedType": "T", "createdTime": "2026-11-01T00:00:00Z",
                "processingStatus": text, "resultFeedDocumentId": "doc"
            }))
            .unwrap_or_else(|e| panic!("{e:?}"));
            let info = wire.into_info().unwrap_or_else(|e| panic!("{e:?}"));
            assert_eq!(info.status, status);
            assert_eq!(info.status.is_terminal(), terminal);
            assert_eq!(info.status.as_str(), text);
            assert_eq!(info.result_document_id.as_deref(), Some("doc"));
        }
        let wire: WireFeed = serde_json::from_value(json!({
            "feedId": "1", "feedType": "T", "createdTime": "2026-11-01T00:00:00Z",
            "processingStatus": "EXPLODED"
        }))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(matches!(
            wire.into_info(),
            Err(UpstreamError::Malformed { .. })
        ));
        let wire: WireFeed = serde_json::from_value(json!({
            "feedId": "1", "feedType": "T", "createdTime": "last tuesday",
            "processingStatus": "DONE"
        }))
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(wire.into_info().is_err());
    }

    #[tokio::test]
    async fn the_feed_flow_against_a_fake() {
        let fake = Fake::start().await;
        let upload_url = fake.url("/store/doc-1?X-Amz-Signature=PRESIGNED-SECRET");
        fake.script(
            "POST",
            "/feeds/2021-06-30/documents",
            vec![Answer::json(
                201,
                json!({"feedDocumentId": "doc-1", "url": upload_url}),
            )],
        );
        fake.script("PUT", "/store/doc-1", vec![Answer::bytes(200, "")]);
        fake.script(
            "POST",
            "/feeds/2021-06-30/feeds",
            vec![Answer::json(202, json!({"feedId": "feed-9"}))],
        );
        let client = FeedsClient::new(fake.api());
        let content_type = "text/xml; charset=UTF-8";
        let doc = client
            .create_document(content_type)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(doc.id, "doc-1");
        assert!(!format!("{doc:?}").contains("PRESIGNED-SECRET"));
        client
            .upload(&doc, content_type, b"<AmazonEnvelope/>")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let feed_id = client
            .create_feed("POST_ORDER_ACKNOWLEDGEMENT_DATA", &[US.to_owned()], &doc.id)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(feed_id, "feed-9");

        let created = fake.seen("/feeds/2021-06-30/documents");
        assert_eq!(created.len(), 1);
        assert!(created[0].header(ACCESS_TOKEN_HEADER).is_some());
        assert_eq!(created[0].json(), json!({"contentType": content_type}));

        let put = fake.seen("/store/doc-1");
        assert_eq!(put.len(), 1);
        assert_eq!(put[0].method, "PUT");
        assert_eq!(put[0].header(ACCESS_TOKEN_HEADER), None, "no token to S3");
        assert_eq!(put[0].header("content-type").as_deref(), Some(content_type));
        assert_eq!(put[0].body, b"<AmazonEnvelope/>");
        assert!(
            put[0]
                .query
                .as_deref()
                .is_some_and(|q| q.contains("PRESIGNED-SECRET"))
        );

        let feeds = fake.seen("/feeds/2021-06-30/feeds");
        assert_eq!(feeds.len(), 1);
        assert!(feeds[0].header(ACCESS_TOKEN_HEADER).is_some());
        assert_eq!(
            feeds[0].json(),
            json!({"feedType": "POST_ORDER_ACKNOWLEDGEMENT_DATA", "marketplaceIds": [US], "inputFeedDocumentId": "doc-1"})
        );
    }

    #[tokio::test]
    async fn create_feed_is_sent_once_on_a_500() {
        let fake = Fake::start().await;
        fake.script(
            "POST",
            "/feeds/2021-06-30/feeds",
            vec![Answer::json(
                500,
                json!({"errors": [{"code": "InternalFailure", "message": "We encountered an internal error. Please try again."}]}),
            )],
        );
        let client = FeedsClient::new(fake.api());
        let error = client
            .create_feed("POST_PAYMENT_ADJUSTMENT_DATA", &[US.to_owned()], "doc-1")
            .await
            .unwrap_err();
        assert_eq!(fake.seen("/feeds/2021-06-30/feeds").len(), 1);
        assert!(error.may_have_acted());
        assert!(error.to_string().contains("InternalFailure"), "{error}");

        // Refused without a call.
        let error = client
            .create_feed("POST_PAYMENT_ADJUSTMENT_DATA", &[], "doc-1")
            .await
            .unwrap_err();
        assert!(!error.may_have_acted() && !error.is_retryable());
        assert_eq!(fake.seen("/feeds/2021-06-30/feeds").len(), 1);
    }

    #[tokio::test]
    async fn reads_retry_after_a_503_and_keep_error_codes() {
        let fake = Fake::start().await;
        fake.script(
            "GET",
            "/feeds/2021-06-30/feeds/feed-9",
            vec![
                Answer::json(
                    503,
                    json!({"errors": [{"code": "ServiceUnavailable", "message": "later"}]}),
                )
                .with_header("retry-after", "0"),
                Answer::json(
                    200,
                    json!({"feedId": "feed-9", "feedType": "POST_ORDER_ACKNOWLEDGEMENT_DATA",
                           "marketplaceIds": [US], "createdTime": "2026-11-01T10:00:00Z",
                           "processingStatus": "DONE", "resultFeedDocumentId": "report-1"}),
                ),
            ],
        );
        fake.script(
            "GET",
            "/feeds/2021-06-30/feeds/missing",
            vec![Answer::json(
                400,
                json!({"errors": [{"code": "InvalidInput", "message": "Invalid feed id", "details": "missing"}]}),
            )],
        );
        let client = FeedsClient::new(fake.api());
        let feed = client
            .get_feed("feed-9")
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(fake.seen("/feeds/2021-06-30/feeds/feed-9").len(), 2);
        assert_eq!(feed.status, ProcessingStatus::Done);
        assert_eq!(feed.result_document_id.as_deref(), Some("report-1"));
        assert_eq!(feed.marketplace_ids, vec![US.to_owned()]);

        let error = client.get_feed("missing").await.unwrap_err();
        assert_eq!(fake.seen("/feeds/2021-06-30/feeds/missing").len(), 1);
        let text = error.to_string();
        assert!(text.contains("HTTP 400"), "{text}");
        assert!(
            text.contains("InvalidInput: Invalid feed id (missing)"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn feeds_since_follows_next_token_alone() {
        let fake = Fake::start().await;
        let feed = |id: &str, feed_type: &str, created: &str| {
            json!({"feedId": id, "feedType": feed_type, "marketplaceIds": [US],
                   "createdTime": created, "processingStatus": "IN_QUEUE"})
        };
        fake.script(
            "GET",
            "/feeds/2021-06-30/feeds",
            vec![
                Answer::json(
                    200,
                    json!({"feeds": [feed("a", "POST_ORDER_ACKNOWLEDGEMENT_DATA", "2026-11-01T10:00:00Z"),
                                      feed("old", "POST_ORDER_ACKNOWLEDGEMENT_DATA", "2026-10-01T10:00:00Z")],
                           "nextToken": "page 2/+="}),
                ),
                Answer::json(
                    200,
                    json!({"feeds": [feed("b", "POST_ORDER_ACKNOWLEDGEMENT_DATA", "2026-11-01T11:00:00Z"),
                                      feed("other", "POST_PRODUCT_DATA", "2026-11-01T11:00:00Z")]}),
                ),
            ],
        );
        let client = FeedsClient::new(fake.api());
        let since = DateTime::parse_from_rfc3339("2026-11-01T09:00:00Z")
            .unwrap_or_else(|e| panic!("{e:?}"))
            .to_utc();
        let feeds = client
            .feeds_since("POST_ORDER_ACKNOWLEDGEMENT_DATA", &[US.to_owned()], since)
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
        let ids: Vec<&str> = feeds.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"]);
        let seen = fake.seen("/feeds/2021-06-30/feeds");
        assert_eq!(seen.len(), 2);
        let first = seen[0].query_pairs();
        assert!(first.contains(&(
            "feedTypes".to_owned(),
            "POST_ORDER_ACKNOWLEDGEMENT_DATA".to_owned()
        )));
        assert!(first.contains(&("marketplaceIds".to_owned(), US.to_owned())));
        assert!(first.contains(&("createdSince".to_owned(), "2026-11-01T09:00:00Z".to_owned())));
        assert!(seen[0].header(ACCESS_TOKEN_HEADER).is_some());
        assert_eq!(
            seen[1].query_pairs(),
            vec![("nextToken".to_owned(), "page 2/+=".to_owned())]
        );
    }

    #[tokio::test]
    async fn result_documents_are_fetched_and_gunzipped() {
        let fake = Fake::start().await;
        let report = "<AmazonEnvelope><Message><ProcessingReport/></Message></AmazonEnvelope>";
        fake.script(
            "GET",
            "/feeds/2021-06-30/documents/report-gz",
            vec![Answer::json(
                200,
                json!({"feedDocumentId": "report-gz", "compressionAlgorithm": "GZIP",
                       "url": fake.url("/store/report.gz?X-Amz-Signature=SECRET")}),
            )],
        );
        fake.script(
            "GET",
            "/store/report.gz",
            vec![Answer::bytes(200, gzip(report))],
        );
        fake.script(
            "GET",
            "/feeds/2021-06-30/documents/report-plain",
            vec![Answer::json(
                200,
                json!({"feedDocumentId": "report-plain", "url": fake.url("/store/report.xml")}),
            )],
        );
        fake.script("GET", "/store/report.xml", vec![Answer::bytes(200, report)]);
        fake.script(
            "GET",
            "/feeds/2021-06-30/documents/report-broken",
            vec![Answer::json(
                200,
                json!({"feedDocumentId": "report-broken", "compressionAlgorithm": "GZIP",
                       "url": fake.url("/store/broken.gz")}),
            )],
        );
        fake.script(
            "GET",
            "/store/broken.gz",
            vec![Answer::bytes(200, "not gzip at all")],
        );
        let client = FeedsClient::new(fake.api());
        assert_eq!(
            client
                .result_document("report-gz")
                .await
                .unwrap_or_else(|e| panic!("{e:?}")),
            report
        );
        assert_eq!(
            client
                .result_document("report-plain")
                .await
                .unwrap_or_else(|e| panic!("{e:?}")),
            report
        );
        let download = fake.seen("/store/report.gz");
        assert_eq!(download.len(), 1);
        assert_eq!(download[0].header(ACCESS_TOKEN_HEADER), None);
        let error = client.result_document("report-broken").await.unwrap_err();
        assert!(matches!(error, UpstreamError::Malformed { .. }), "{error}");
        assert!(!error.to_string().contains("SECRET"));
    }
}
