//! Replies to buyers by e-mail: a buyer writes to the seller through a marketplace relay
//! (Amazon's come from `…@marketplace.amazon.com`), and the seller answers from the
//! seller's registered address to that relay address, which forwards it to the buyer.
//! [`SmtpReplySender`] builds such a reply ([`OutgoingReply`]) and submits it over SMTP
//! (the URL forms and the connection are the e-mail channel's, shared in
//! `crate::smtp`).
//!
//! # The mail
//! `MIME-Version: 1.0` and one `text/plain; charset=utf-8` part (lettre picks the
//! transfer encoding, so umlauts and accents survive any server), with:
//! - `Subject: Re: <the original subject>`, unless the original already starts with a
//!   reply prefix ([`reply_subject`]: `Re:`, `RE:`, `Aw:`/`AW:` (German), `Sv:` (Nordic),
//!   `Vs:` (Finnish), `Antw:` (Dutch), `Rif:` (Italian), `Res:` (Portuguese), in any case,
//!   also counted `Re[2]:` and French-spaced `Re :`). A forward prefix (`Fwd:`, `WG:`) is
//!   not a reply prefix, so `Re: WG: …` is right;
//! - `In-Reply-To: <the original's Message-ID>` and `References:` the original's
//!   References followed by its Message-ID (RFC 5322 §3.6.4), each in `<>`; ids that are
//!   not printable ASCII without spaces and brackets are left out (they come from the
//!   buyer's mail), and a chain longer than [`MAX_REFERENCES`] keeps its first and its
//!   latest ids;
//! - `Message-ID: <message_id>`, given by the caller and deterministic, so that a
//!   duplicate is recognisable (and threads with the first);
//! - `Content-Language` when the language is known and looks like a language tag;
//! - `Auto-Submitted: auto-replied` and `X-Auto-Response-Suppress: All` (RFC 3834 and
//!   Exchange's counterpart): an automatic reply says so, so that the other side's
//!   auto-responders do not answer it and no mail loop starts;
//! - a `Date`.
//!
//! # Failures
//! A reply is at most once (`Safety::AtMostOnce`): the outbox decides from
//! [`UpstreamError::may_have_acted`] whether a failed attempt may be tried again or
//! becomes `unknown` for a person to check. Every failure is therefore classified by
//! where in the dialogue it happened:
//!
//! | failure | retryable | may have acted |
//! |---|---|---|
//! | connection refused, DNS, TLS handshake, greeting `421` | yes | no |
//! | any `4xx` reply, at any step (RCPT `450`, after the final `.` `451`) | yes | no |
//! | any `5xx` reply, at any step (RCPT `550`, after the final `.` `554`) | no | no |
//! | `530`/`534`/`535`/`538` (authentication): `Credentials` | no | no |
//! | the mail cannot be built (bad address, bad Message-ID, no text) | no | no |
//! | I/O error or timeout before the server's `354` to DATA | yes | no |
//! | I/O error or timeout while the text or the answer to the final `.` is in flight | yes | **yes** |
//!
//! The last row is the ambiguous case: a server may queue the mail and lose the
//! connection before saying so.
//!
//! # Never
//! - send a reply again once an attempt may have acted: the caller must turn such an
//!   error into `unknown`, never retry it (this sender does not retry at all);
//! - log or keep the body, the subject or the addresses: receipts and `Debug` carry
//!   ids, lengths and the relay's domain only, and errors no address;
//! - show the SMTP URL or its password, in errors or `Debug`.
#![forbid(unsafe_code)]

use std::time::Duration;

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{
    ContentType, HeaderName, HeaderValue, InReplyTo, MIME_VERSION_1_0, MessageId, References,
};
use secrecy::SecretString;
use serde_json::json;

use crate::http::UpstreamError;
use crate::smtp::{self, SmtpServer};

/// Longest `References` chain kept: the first id and the latest ones.
pub const MAX_REFERENCES: usize = 20;

const AUTO_SUBMITTED: HeaderName = HeaderName::new_from_ascii_str("Auto-Submitted");
const AUTO_RESPONSE_SUPPRESS: HeaderName =
    HeaderName::new_from_ascii_str("X-Auto-Response-Suppress");
const CONTENT_LANGUAGE: HeaderName = HeaderName::new_from_ascii_str("Content-Language");

/// Prefixes that already mark a subject as a reply (compared ignoring case).
const REPLY_PREFIXES: &[&str] = &["re", "aw", "sv", "vs", "antw", "rif", "res"];

/// One reply to a buyer, through the marketplace's relay.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingReply {
    /// The seller's registered address: the relay accepts only that sender.
    pub from: String,
    pub from_name: Option<String>,
    /// The relay address the buyer's mail came from.
    pub to: String,
    /// The original mail's subject (`Re: ` is added as needed).
    pub subject: String,
    /// Plain text.
    pub body: String,
    /// The original's Message-ID, without `<>`.
    pub in_reply_to: Option<String>,
    /// The original's References, without `<>`, oldest first.
    pub references: Vec<String>,
    /// This reply's Message-ID, without `<>`; deterministic, given by the caller.
    pub message_id: String,
    /// ISO 639-1 (`de`), or a language tag (`de-AT`).
    pub language: Option<String>,
}

// By hand: the body, the subject and the addresses are the buyer's and the seller's.
impl std::fmt::Debug for OutgoingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingReply")
            .field("from_domain", &domain_of(&self.from))
            .field("to_domain", &domain_of(&self.to))
            .field("subject_chars", &self.subject.chars().count())
            .field("body_chars", &self.body.chars().count())
            .field("in_reply_to", &self.in_reply_to)
            .field("references", &self.references.len())
            .field("message_id", &self.message_id)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// Sends [`OutgoingReply`]s over SMTP, one connection per reply, never retrying.
pub struct SmtpReplySender {
    server: SmtpServer,
}

impl std::fmt::Debug for SmtpReplySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpReplySender")
            .field("smtp_url", &"[redacted]")
            .finish()
    }
}

impl SmtpReplySender {
    /// Check the SMTP URL (the e-mail channel's forms: `smtp://host:port`,
    /// `smtp://user:pass@host:587?tls=required`, `smtps://user:pass@host:465`); nothing
    /// is connected yet. The error text never shows the URL or any part of it.
    pub fn new(smtp_url: &SecretString) -> Result<Self, String> {
        Ok(Self {
            server: SmtpServer::from_url(smtp_url)?,
        })
    }

    /// How long one whole send may take, connecting included (60 s unless set).
    pub fn with_timeout(self, timeout: Duration) -> Self {
        Self {
            server: self.server.with_timeout(timeout),
        }
    }

    /// The mail for `reply` (see the module doc); public so that it can be checked
    /// without a server. A reply that cannot be built is a permanent, not-sent error.
    pub fn message(&self, reply: &OutgoingReply) -> Result<Message, UpstreamError> {
        let from = reply
            .from
            .trim()
            .parse()
            .map_err(|_| smtp::not_built("the seller's address is not an e-mail address"))?;
        let to = reply
            .to
            .trim()
            .parse()
            .map_err(|_| smtp::not_built("the relay address is not an e-mail address"))?;
        let name = reply
            .from_name
            .as_deref()
            .map(one_line)
            .filter(|n| !n.is_empty());
        let message_id = own_message_id(&reply.message_id)
            .ok_or_else(|| smtp::not_built("the reply's Message-ID is not id@domain"))?;
        if reply.body.trim().is_empty() {
            return Err(smtp::not_built("the reply has no text"));
        }

        let mut builder = Message::builder()
            .from(Mailbox::new(name, from))
            .to(Mailbox::new(None, to))
            .subject(reply_subject(&reply.subject))
            .date_now()
            .header(MessageId::from(format!("<{message_id}>")));
        let in_reply_to = reply.in_reply_to.as_deref().and_then(their_message_id);
        if let Some(parent) = &in_reply_to {
            builder = builder.header(InReplyTo::from(format!("<{parent}>")));
        }
        let references = references(&reply.references, in_reply_to.as_deref());
        if !references.is_empty() {
            let value = references
                .iter()
                .map(|id| format!("<{id}>"))
                .collect::<Vec<_>>()
                .join(" ");
            builder = builder.header(References::from(value));
        }
        if let Some(language) = reply.language.as_deref().and_then(language_tag) {
            builder = builder.raw_header(HeaderValue::new(CONTENT_LANGUAGE, language));
        }
        builder
            .raw_header(HeaderValue::new(AUTO_SUBMITTED, "auto-replied".to_owned()))
            .raw_header(HeaderValue::new(AUTO_RESPONSE_SUPPRESS, "All".to_owned()))
            .header(MIME_VERSION_1_0)
            .header(ContentType::TEXT_PLAIN)
            .body(reply.body.clone())
            .map_err(|_| smtp::not_built("lettre refused the mail"))
    }

    /// Send `reply` once. The receipt is secret-free and carries no buyer data:
    /// `{"message_id": "<…>", "to_domain": "marketplace.amazon.com", "smtp": "250 …"}`.
    /// An error says whether the reply may have been sent
    /// ([`UpstreamError::may_have_acted`]; see the module doc): never send it again then.
    pub async fn send(&self, reply: &OutgoingReply) -> Result<serde_json::Value, UpstreamError> {
        let message = self.message(reply)?;
        self.send_message(reply, &message).await
    }

    /// Send `message`, built from `reply` by [`SmtpReplySender::message`], once: for a
    /// caller that keeps a copy of exactly what went out.
    pub async fn send_message(
        &self,
        reply: &OutgoingReply,
        message: &Message,
    ) -> Result<serde_json::Value, UpstreamError> {
        let response = self.server.send(message).await?;
        Ok(json!({
            "message_id": format!("<{}>", own_message_id(&reply.message_id).unwrap_or_default()),
            "to_domain": domain_of(&reply.to),
            "smtp": smtp::reply_summary(&self.server, &response),
        }))
    }
}

/// `Re: ` and `original` on one line, unless `original` already starts with a reply
/// prefix (see the module doc).
pub fn reply_subject(original: &str) -> String {
    let subject = one_line(original);
    if has_reply_prefix(&subject) {
        subject
    } else if subject.is_empty() {
        "Re:".to_owned()
    } else {
        format!("Re: {subject}")
    }
}

fn has_reply_prefix(subject: &str) -> bool {
    let Some((head, _)) = subject.split_once(':') else {
        return false;
    };
    let head = head.trim_end();
    // A counter: `Re[2]`, `RE(3)`.
    let word = match head.find(['[', '(']) {
        Some(open) => {
            let counter = &head[open + 1..];
            let closed = counter
                .strip_suffix([']', ')'])
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !closed {
                return false;
            }
            head[..open].trim_end()
        }
        None => head,
    };
    REPLY_PREFIXES.iter().any(|p| word.eq_ignore_ascii_case(p))
}

/// The original's References then its Message-ID, without repeats; at most
/// [`MAX_REFERENCES`], keeping the first and the latest.
fn references(original: &[String], parent: Option<&str>) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for id in original
        .iter()
        .filter_map(|id| their_message_id(id))
        .chain(parent.map(str::to_owned))
    {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    if ids.len() > MAX_REFERENCES {
        let cut = ids.len() - (MAX_REFERENCES - 1);
        ids.drain(1..cut);
    }
    ids
}

/// A Message-ID from another mail, without `<>`: printable ASCII, no spaces or
/// brackets, at most 250 characters; anything else is left out.
fn their_message_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix('>'))
        .unwrap_or(id);
    let printable = id
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    (!id.is_empty() && id.len() <= 250 && printable).then(|| id.to_owned())
}

/// This reply's own Message-ID: as [`their_message_id`], and `left@right`.
fn own_message_id(id: &str) -> Option<String> {
    their_message_id(id).filter(|id| {
        id.split_once('@').is_some_and(|(left, right)| {
            !left.is_empty() && !right.is_empty() && !right.contains('@')
        })
    })
}

/// A language tag as `Content-Language` takes it (`de`, `de-AT`, `zh-Hant`): letters
/// first, then subtags of letters and digits; the primary subtag lower-cased.
fn language_tag(language: &str) -> Option<String> {
    let language = language.trim().replace('_', "-");
    let mut parts = language.split('-');
    let primary = parts.next()?;
    let primary_ok =
        (2..=3).contains(&primary.len()) && primary.bytes().all(|b| b.is_ascii_alphabetic());
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    (primary_ok && rest_ok).then(|| {
        let (primary, rest) = language.split_at(primary.len());
        format!("{}{rest}", primary.to_ascii_lowercase())
    })
}

/// The part after the last `@`, lower-cased: what a receipt may say about an address.
fn domain_of(address: &str) -> String {
    address
        .trim()
        .trim_end_matches('>')
        .rsplit_once('@')
        .map(|(_, domain)| domain.to_ascii_lowercase())
        .unwrap_or_default()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender() -> SmtpReplySender {
        SmtpReplySender::new(&SecretString::from("smtp://127.0.0.1:2525".to_owned()))
            .unwrap_or_else(|e| panic!("a sender: {e}"))
    }

    fn reply() -> OutgoingReply {
        OutgoingReply {
            from: "support@shop.example".into(),
            from_name: Some("Müller Shop".into()),
            to: "abc123xyz@marketplace.amazon.com".into(),
            subject: "Frage zur Lieferung (Bestellung: 302-1234567-1234567)".into(),
            body: "Guten Tag,\nIhre Bestellung ist unterwegs. Grüße\n".into(),
            in_reply_to: Some("0100018f.abc@email.amazonses.com".into()),
            references: vec!["first@mail.example".into()],
            message_id: "reply-1f2e@shop.example".into(),
            language: Some("de".into()),
        }
    }

    fn formatted(reply: &OutgoingReply) -> String {
        let message = sender()
            .message(reply)
            .unwrap_or_else(|e| panic!("a message: {e}"));
        String::from_utf8_lossy(&message.formatted()).into_owned()
    }

    #[test]
    fn subjects_get_one_reply_prefix() {
        for (original, expected) in [
            ("Question", "Re: Question"),
            ("Re: Question", "Re: Question"),
            ("RE: Question", "RE: Question"),
            ("re:Question", "re:Question"),
            ("AW: Frage", "AW: Frage"),
            ("Aw: Frage", "Aw: Frage"),
            ("SV: Fråga", "SV: Fråga"),
            ("Antw: Vraag", "Antw: Vraag"),
            ("Re[2]: Question", "Re[2]: Question"),
            ("RE (3): x", "RE (3): x"),
            ("Re : Question", "Re : Question"),
            ("WG: Frage", "Re: WG: Frage"),
            ("Fwd: Question", "Re: Fwd: Question"),
            ("Regarding: order", "Re: Regarding: order"),
            ("Order 113: late", "Re: Order 113: late"),
            ("  two\r\nlines ", "Re: two lines"),
            ("", "Re:"),
        ] {
            assert_eq!(reply_subject(original), expected, "{original:?}");
        }
        assert_eq!(reply_subject("RE(3): x"), "RE(3): x");
    }

    #[test]
    fn the_mail_has_the_threading_and_auto_reply_headers() {
        let text = formatted(&reply());
        for header in [
            "From: =?utf-8?b?TcO8bGxlciBTaG9w?= <support@shop.example>\r\n",
            "To: abc123xyz@marketplace.amazon.com\r\n",
            "Message-ID: <reply-1f2e@shop.example>\r\n",
            "In-Reply-To: <0100018f.abc@email.amazonses.com>\r\n",
            "References: <first@mail.example> <0100018f.abc@email.amazonses.com>\r\n",
            "Content-Language: de\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "X-Auto-Response-Suppress: All\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
            "Date: ",
        ] {
            assert!(text.contains(header), "{header:?} missing in\n{text}");
        }
        assert!(
            text.contains("Subject: Re: Frage zur Lieferung (Bestellung: 302-1234567-1234567)\r\n"),
            "{text}"
        );
        assert!(text.contains("MIME-Version: 1.0\r\n"), "{text}");
        let mut reply = reply();
        reply.subject = "Wo bleibt mein Paket? Grüße".into();
        let text = formatted(&reply);
        assert!(
            text.contains("Subject: Re: Wo bleibt mein Paket? =?utf-8?b?R3LDvMOfZQ==?=\r\n"),
            "{text}"
        );
        assert!(text.is_ascii(), "lettre encodes the text: {text}");
    }

    #[test]
    fn references_skip_bad_ids_repeat_none_and_are_capped() {
        let mut reply = reply();
        reply.references = vec![
            "<a@x>".into(),
            "bad id@x".into(),
            "0100018f.abc@email.amazonses.com".into(),
        ];
        reply.in_reply_to = Some("<0100018f.abc@email.amazonses.com>".into());
        let text = formatted(&reply);
        assert!(
            text.contains("References: <a@x> <0100018f.abc@email.amazonses.com>\r\n"),
            "{text}"
        );

        let many: Vec<String> = (0..40).map(|i| format!("m{i}@x")).collect();
        let kept = references(&many, Some("parent@x"));
        assert_eq!(kept.len(), MAX_REFERENCES);
        assert_eq!(kept.first().map(String::as_str), Some("m0@x"));
        assert_eq!(kept.last().map(String::as_str), Some("parent@x"));
        assert_eq!(kept.get(1).map(String::as_str), Some("m22@x"));

        reply.in_reply_to = Some("not an id".into());
        reply.references.clear();
        let text = formatted(&reply);
        assert!(
            !text.contains("In-Reply-To") && !text.contains("References"),
            "{text}"
        );
    }

    #[test]
    fn languages_are_tags_or_left_out() {
        assert_eq!(language_tag("DE").as_deref(), Some("de"));
        assert_eq!(language_tag("pt_BR").as_deref(), Some("pt-BR"));
        assert_eq!(language_tag("zh-Hant").as_deref(), Some("zh-Hant"));
        assert_eq!(language_tag("german"), None);
        assert_eq!(language_tag("de\r\nX-Evil: 1"), None);
        assert_eq!(language_tag(""), None);
        let mut reply = reply();
        reply.language = Some("??".into());
        assert!(!formatted(&reply).contains("Content-Language"));
    }

    #[test]
    fn a_mail_that_cannot_be_built_is_permanent_and_names_no_address() {
        let cases: [fn(&mut OutgoingReply); 4] = [
            |r| r.from = "not an address".into(),
            |r| r.to = "nobody".into(),
            |r| r.message_id = "no-at-sign".into(),
            |r| r.body = " \n".into(),
        ];
        for change in cases {
            let mut reply = reply();
            change(&mut reply);
            let Err(error) = sender().message(&reply) else {
                panic!("built: {reply:?}");
            };
            assert!(!error.is_retryable() && !error.may_have_acted(), "{error}");
            let text = format!("{error} {error:?}");
            assert!(
                !text.contains("nobody") && !text.contains("not an address"),
                "{text}"
            );
        }
    }

    #[test]
    fn debug_shows_no_buyer_data_and_no_url() {
        let debug = format!("{:?}", reply());
        assert!(
            !debug.contains("Guten") && !debug.contains("Frage") && !debug.contains("abc123xyz"),
            "{debug}"
        );
        assert!(
            debug.contains("marketplace.amazon.com") && debug.contains("body_chars"),
            "{debug}"
        );

        let url = SecretString::from("smtps://u:canary-pass-123@smtp.example:465".to_owned());
        let sender = SmtpReplySender::new(&url).unwrap_or_else(|e| panic!("{e}"));
        let debug = format!("{sender:?}");
        assert!(
            !debug.contains("canary") && !debug.contains("smtp.example"),
            "{debug}"
        );
        let Err(error) = SmtpReplySender::new(&SecretString::from(
            "smtp://u:canary-pass-123@host?tls=maybe".to_owned(),
        )) else {
            panic!("a bad tls parameter was accepted");
        };
        assert!(!error.contains("canary"), "{error}");
    }
}
