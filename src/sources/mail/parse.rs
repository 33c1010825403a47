//! MIME → [`ParsedMail`]: the headers nightdesk needs, the best plain-text body and a list
//! of attachments (name, type, size; never their content). `mail-parser` does the MIME
//! work: charsets (ISO-8859-*, windows-125*, UTF-*), quoted-printable, base64, RFC 2047
//! encoded words and HTML to text.

use chrono::{DateTime, TimeZone, Utc};
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

/// The largest mail `parse` accepts. Marketplace relays cap messages well below this
/// (Amazon: 10 MB of attachments); anything larger is not a buyer message.
pub const MAX_MAIL_BYTES: usize = 40 * 1024 * 1024;

/// Headers kept for auto-reply, bulk and notification detection (lower case).
const KEPT_HEADERS: &[&str] = &[
    "auto-submitted",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "precedence",
    "list-id",
    "list-unsubscribe",
    "return-path",
    "x-failed-recipients",
];

/// Why a mail could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    #[error("the mail is empty")]
    Empty,
    #[error("the mail is {size} bytes, more than the {limit} bytes accepted")]
    TooLarge { size: usize, limit: usize },
    #[error("not an e-mail: no header could be read")]
    NotAMessage,
    #[error("the mail has no From address")]
    MissingFrom,
}

/// An attachment as recorded: never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    /// The file name the sender gave, if any.
    pub name: Option<String>,
    /// `type/subtype`, lower case (`application/octet-stream` when the part names none).
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
}

/// One mail, reduced to what nightdesk reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedMail {
    /// Without the angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// The first From address, lower case.
    pub from_address: String,
    pub from_name: Option<String>,
    /// Reply-To addresses, lower case (Shopify's contact form puts the customer here).
    pub reply_to: Vec<String>,
    /// To addresses, lower case.
    pub to: Vec<String>,
    /// Decoded; empty when the mail has none.
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
    /// The top-level `type/subtype`, lower case (`multipart/report` is a bounce).
    pub content_type: String,
    /// The best plain-text body: the text/plain parts, or the HTML converted to text when
    /// there are none. Line ends are `\n`.
    pub text: String,
    /// Whether `text` was converted from HTML.
    pub text_from_html: bool,
    /// The headers auto-detection reads ([`KEPT_HEADERS`]), names lower case, values
    /// unfolded and trimmed, in mail order.
    pub headers: Vec<(String, String)>,
    pub attachments: Vec<Attachment>,
}

impl ParsedMail {
    /// The first kept header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parse one raw RFC 5322 mail. Never panics; garbage is an error naming what is missing.
pub fn parse(raw: &[u8]) -> Result<ParsedMail, MailError> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(MailError::Empty);
    }
    if raw.len() > MAX_MAIL_BYTES {
        return Err(MailError::TooLarge {
            size: raw.len(),
            limit: MAX_MAIL_BYTES,
        });
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::NotAMessage)?;
    if message.parts.is_empty() || message.root_part().headers().is_empty() {
        return Err(MailError::NotAMessage);
    }

    let from = message.from().and_then(Address::first).and_then(|addr| {
        let address = addr.address.as_deref()?.trim().to_lowercase();
        address.contains('@').then(|| {
            let name = addr
                .name
                .as_deref()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned);
            (address, name)
        })
    });
    let Some((from_address, from_name)) = from else {
        return Err(MailError::MissingFrom);
    };

    let date = message
        .date()
        .filter(|d| d.is_valid())
        .and_then(|d| Utc.timestamp_opt(d.to_timestamp(), 0).single());

    let content_type = message
        .root_part()
        .content_type()
        .map(|ct| content_type_of(ct.ctype(), ct.subtype()))
        .unwrap_or_else(|| "text/plain".to_owned());

    let (text, text_from_html) = best_text(&message);

    let headers = message
        .root_part()
        .headers()
        .iter()
        .filter_map(|header| {
            let name = header.name().to_ascii_lowercase();
            if !KEPT_HEADERS.contains(&name.as_str()) {
                return None;
            }
            let start = header.offset_start() as usize;
            let end = header.offset_end() as usize;
            let value = message.raw_message.get(start..end)?;
            let value = String::from_utf8_lossy(value);
            Some((name, unfold(&value)))
        })
        .collect();

    Ok(ParsedMail {
        message_id: message.message_id().map(strip_brackets),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        from_address,
        from_name,
        reply_to: addresses(message.reply_to()),
        to: message.all_to().flat_map(|a| addresses(Some(a))).collect(),
        subject: message.subject().map(unfold).unwrap_or_default(),
        date,
        content_type,
        text,
        text_from_html,
        headers,
        attachments: attachments(&message),
    })
}

fn content_type_of(ctype: &str, subtype: Option<&str>) -> String {
    format!(
        "{}/{}",
        ctype.to_ascii_lowercase(),
        subtype.unwrap_or("octet-stream").to_ascii_lowercase()
    )
}

fn strip_brackets(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => vec![strip_brackets(id)],
        HeaderValue::TextList(list) => list.iter().map(|id| strip_brackets(id)).collect(),
        _ => Vec::new(),
    }
}

fn addresses(address: Option<&Address<'_>>) -> Vec<String> {
    address
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address.as_deref())
                .map(|addr| addr.trim().to_lowercase())
                .filter(|addr| addr.contains('@'))
                .collect()
        })
        .unwrap_or_default()
}

/// Header folding removed, runs of white space made one space.
fn unfold(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text/plain body parts joined; the HTML ones converted when there is no real
/// text/plain part.
fn best_text(message: &mail_parser::Message<'_>) -> (String, bool) {
    let mut plain = Vec::new();
    for id in &message.text_body {
        if let Some(PartType::Text(text)) = message.parts.get(*id as usize).map(|p| &p.body) {
            plain.push(text.to_string());
        }
    }
    if plain.iter().any(|t| !t.trim().is_empty()) {
        return (normalize(&plain.join("\n")), false);
    }
    let html: Vec<String> = (0..message.html_body_count())
        .filter_map(|i| message.body_html(i))
        .map(|html| html_to_text(&html))
        .collect();
    if html.is_empty() {
        return (normalize(&plain.join("\n")), false);
    }
    (normalize(&html.join("\n")), true)
}

/// HTML to text, keeping line structure: `mail-parser`'s converter strips tags, decodes
/// entities and breaks lines at `<br>` and `</p>`; block elements (`div`, `tr`, `li`…)
/// get a `<br>` added first, and `<blockquote>` content (quoted history) is prefixed
/// with `> ` so the quote stripper sees it.
fn html_to_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut marked = String::with_capacity(html.len() + 64);
    let mut copied = 0;
    let mut at = 0;
    while let Some(open) = lower.get(at..).and_then(|rest| rest.find('<')) {
        let start = at + open;
        let Some(len) = lower.get(start..).and_then(|rest| rest.find('>')) else {
            break;
        };
        let tag = lower.get(start + 1..start + len).unwrap_or_default();
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect();
        let insert = match name.as_str() {
            "blockquote" if closing => Some(QUOTE_CLOSE),
            "blockquote" => Some(QUOTE_OPEN),
            "div" | "tr" | "li" | "h1" | "h2" | "h3" | "h4" | "table" | "hr" => Some("<br>"),
            _ => None,
        };
        if let Some(insert) = insert {
            marked.push_str(html.get(copied..start).unwrap_or_default());
            marked.push_str(insert);
            copied = start;
        }
        at = start + len + 1;
    }
    marked.push_str(html.get(copied..).unwrap_or_default());

    let text = mail_parser::decoders::html::html_to_text(&marked);
    // Turn the markers into `> ` prefixes, line by line.
    let mut out = String::with_capacity(text.len());
    let mut depth = 0usize;
    for line in text.split('\n') {
        let opens = line.matches(QUOTE_OPEN_CHAR).count();
        let closes = line.matches(QUOTE_CLOSE_CHAR).count();
        let clean = line.replace([QUOTE_OPEN_CHAR, QUOTE_CLOSE_CHAR], "");
        let clean = clean.trim();
        let level = depth + opens;
        if level > 0 && !clean.is_empty() {
            out.push_str(&"> ".repeat(level));
        }
        out.push_str(clean);
        out.push('\n');
        depth = (depth + opens).saturating_sub(closes);
    }
    out
}

/// What stands for `<blockquote>` and `</blockquote>` while the converter runs: a line
/// break and a private-use character (no mail text contains one legitimately).
const QUOTE_OPEN_CHAR: char = '\u{E000}';
const QUOTE_CLOSE_CHAR: char = '\u{E001}';
const QUOTE_OPEN: &str = "<br>\u{E000} ";
const QUOTE_CLOSE: &str = "\u{E001}<br>";

/// `\r\n` to `\n`, non-breaking spaces to spaces, trailing spaces cut, at most one blank
/// line in a row, no leading or trailing blank lines.
fn normalize(text: &str) -> String {
    let text = text
        .replace("\r\n", "\n")
        .replace(['\r'], "\n")
        .replace('\u{a0}', " ");
    let mut out: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        let line = line.trim_end();
        if line.is_empty() && out.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out.join("\n")
}

/// Every attachment part that is not one of the bodies: name, type and decoded size.
fn attachments(message: &mail_parser::Message<'_>) -> Vec<Attachment> {
    message
        .attachments
        .iter()
        .filter(|id| !message.text_body.contains(id) && !message.html_body.contains(id))
        .filter_map(|id| message.parts.get(*id as usize))
        .map(|part| Attachment {
            name: part
                .attachment_name()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            content_type: part
                .content_type()
                .map(|ct| content_type_of(ct.ctype(), ct.subtype()))
                .unwrap_or_else(|| "application/octet-stream".to_owned()),
            size: match &part.body {
                PartType::Text(t) | PartType::Html(t) => t.len(),
                PartType::Binary(b) | PartType::InlineBinary(b) => b.len(),
                PartType::Message(m) => m.raw_message.len(),
                PartType::Multipart(_) => 0,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &str) -> ParsedMail {
        match parse(raw.as_bytes()) {
            Ok(mail) => mail,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert_eq!(parse(b""), Err(MailError::Empty));
        assert_eq!(parse(b"  \r\n"), Err(MailError::Empty));
        for garbage in [
            &b"\x00\xff\xfe garbage"[..],
            b"just some text without headers",
            b"Subject: no sender\r\n\r\nbody",
            b"From: \r\n\r\n",
            b"From: <not-an-address>\r\n\r\n",
            b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n--x--",
        ] {
            assert!(
                parse(garbage).is_err(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn too_large_is_refused_before_parsing() {
        let big = vec![b'a'; MAX_MAIL_BYTES + 1];
        assert_eq!(
            parse(&big),
            Err(MailError::TooLarge {
                size: MAX_MAIL_BYTES + 1,
                limit: MAX_MAIL_BYTES
            })
        );
    }

    #[test]
    fn headers_are_read_and_normalised() {
        let mail = parsed(
            "Message-ID: <abc@mx.example>\r\n\
             In-Reply-To: <prev@mx.example>\r\n\
             References: <first@mx.example> <prev@mx.example>\r\n\
             From: \"Jana M. - Amazon Marketplace\" <X7Y@Marketplace.Amazon.DE>\r\n\
             To: shop@example.com, Other <other@example.com>\r\n\
             Subject: =?UTF-8?Q?Anfrage_von_Amazon-Kunde_J=C3=BCrgen?=\r\n\
             Date: Tue, 3 Nov 2026 10:14:00 +0100\r\n\
             Auto-Submitted: auto-replied\r\n\
             \r\n\
             Hallo\r\n",
        );
        assert_eq!(mail.message_id.as_deref(), Some("abc@mx.example"));
        assert_eq!(mail.in_reply_to.as_deref(), Some("prev@mx.example"));
        assert_eq!(mail.references, ["first@mx.example", "prev@mx.example"]);
        assert_eq!(mail.from_address, "x7y@marketplace.amazon.de");
        assert_eq!(
            mail.from_name.as_deref(),
            Some("Jana M. - Amazon Marketplace")
        );
        assert_eq!(mail.to, ["shop@example.com", "other@example.com"]);
        assert_eq!(mail.subject, "Anfrage von Amazon-Kunde Jürgen");
        assert_eq!(
            mail.date.map(|d| d.to_rfc3339()),
            Some("2026-11-03T09:14:00+00:00".to_owned())
        );
        assert_eq!(mail.header("Auto-Submitted"), Some("auto-replied"));
        assert_eq!(mail.text, "Hallo");
        assert_eq!(mail.content_type, "text/plain");
    }

    #[test]
    fn html_only_keeps_lines_and_marks_blockquotes() {
        let mail = parsed(
            "From: a@example.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
             <html><body><p>Hello&nbsp;there,</p><p>where is it?<br>Thanks</p>\
             <blockquote><p>Old text</p></blockquote></body></html>",
        );
        assert!(mail.text_from_html);
        assert!(mail.text.contains("Hello there,"), "{}", mail.text);
        assert!(mail.text.contains("where is it?\nThanks"), "{}", mail.text);
        assert!(mail.text.contains("> Old text"), "{}", mail.text);
    }

    #[test]
    fn attachments_are_recorded_without_content() {
        let mail = parsed(
            "From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nSee photo\r\n\
             --b\r\nContent-Type: image/png; name=\"p.png\"\r\n\
             Content-Disposition: attachment; filename=\"p.png\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--b--\r\n",
        );
        assert_eq!(mail.text, "See photo");
        assert_eq!(
            mail.attachments,
            [Attachment {
                name: Some("p.png".into()),
                content_type: "image/png".into(),
                size: 5
            }]
        );
    }
}
