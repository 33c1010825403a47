//! The buyer-reply sender (`executors::mail`) against the sandbox's SMTP receiver, with
//! each of its faults, and against a real SMTP server: aiosmtpd on loopback, delivering
//! to a Maildir (`pip install aiosmtpd`; that test fails, saying so, when it is missing).
//!
//! What matters most: a reply is at most once, so every failure must say whether the
//! reply may have been sent (`may_have_acted`), and only the ambiguous case may say so.
#![forbid(unsafe_code)]

#[path = "common/aiosmtpd.rs"]
mod aiosmtpd;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aiosmtpd::Smtpd;
use mail_parser::{MessageParser, MimeHeaders};
use nightdesk::executors::mail::{OutgoingReply, SmtpReplySender};
use nightdesk::http::UpstreamError;
use nightdesk::sandbox::smtp::{ReceivedMail, SmtpFault, SmtpReceiver};
use secrecy::SecretString;

/// No send may take longer than this here.
const WAIT: Duration = Duration::from_secs(30);
const PASSWORD: &str = "canary-pass-123";
const BODY: &str = "Guten Tag Frau Müller,\n\nIhr Paket ist unterwegs und kommt morgen an. \
                    Ça vous convient ? ¡Gracias, Señor Zoë!\n\nViele Grüße\nIhr Shop-Team\n";

fn reply() -> OutgoingReply {
    OutgoingReply {
        from: "support@shop.example".into(),
        from_name: Some("Bücherstube Köln".into()),
        to: "7x2k9q3mzb4lw8n@marketplace.amazon.com".into(),
        subject: "Frage zur Bestellung 302-1234567-7654321: Wann kommt mein Buch?".into(),
        body: BODY.into(),
        in_reply_to: Some("0102018f3c.a1b2c3@eu-west-1.amazonses.com".into()),
        references: vec!["first.question@mail.buyer.example".into()],
        message_id: "reply.302-1234567-7654321.1f2e3d@shop.example".into(),
        language: Some("de".into()),
    }
}

async fn receiver() -> SmtpReceiver {
    match SmtpReceiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await {
        Ok(receiver) => receiver,
        Err(e) => panic!("start the SMTP receiver: {e}"),
    }
}

fn sender(url: &str) -> SmtpReplySender {
    match SmtpReplySender::new(&SecretString::from(url.to_owned())) {
        Ok(sender) => sender,
        Err(e) => panic!("a sender for {url}: {e}"),
    }
}

/// The receiver's URL with a user and [`PASSWORD`]: every send authenticates, so every
/// error below could have carried the password.
fn url_with_password(receiver: &SmtpReceiver) -> String {
    format!("smtp://seller:{PASSWORD}@{}", receiver.addr())
}

async fn send(
    sender: &SmtpReplySender,
    reply: &OutgoingReply,
) -> Result<serde_json::Value, UpstreamError> {
    match tokio::time::timeout(WAIT, sender.send(reply)).await {
        Ok(sent) => sent,
        Err(_) => panic!("no outcome within {WAIT:?}"),
    }
}

/// The error of a send that must fail, checked for the password.
async fn failure(sender: &SmtpReplySender) -> UpstreamError {
    match send(sender, &reply()).await {
        Ok(receipt) => panic!("sent: {receipt}"),
        Err(error) => {
            let text = format!("{error} {error:?} {sender:?}");
            assert!(!text.contains(PASSWORD), "the password shows: {text}");
            error
        }
    }
}

fn only(received: &[ReceivedMail]) -> &ReceivedMail {
    match received {
        [mail] => mail,
        _ => panic!("expected one mail, got {}", received.len()),
    }
}

/// Check a received reply's headers and text, parsed as a mail client would.
fn check_reply(raw: &[u8]) {
    let Some(mail) = MessageParser::default().parse(raw) else {
        panic!("unparseable mail: {}", String::from_utf8_lossy(raw));
    };
    let shown = String::from_utf8_lossy(raw);
    let from = mail.from().and_then(|a| a.first());
    assert_eq!(
        from.and_then(|a| a.address()),
        Some("support@shop.example"),
        "{shown}"
    );
    assert_eq!(
        from.and_then(|a| a.name()),
        Some("Bücherstube Köln"),
        "{shown}"
    );
    assert_eq!(
        mail.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("7x2k9q3mzb4lw8n@marketplace.amazon.com"),
        "{shown}"
    );
    assert_eq!(
        mail.subject(),
        Some("Re: Frage zur Bestellung 302-1234567-7654321: Wann kommt mein Buch?"),
        "{shown}"
    );
    assert_eq!(
        mail.message_id(),
        Some("reply.302-1234567-7654321.1f2e3d@shop.example"),
        "{shown}"
    );
    assert_eq!(
        mail.in_reply_to().as_text(),
        Some("0102018f3c.a1b2c3@eu-west-1.amazonses.com"),
        "{shown}"
    );
    let references: Vec<&str> = mail
        .references()
        .as_text_list()
        .map(|ids| ids.iter().map(|id| id.as_ref()).collect())
        .unwrap_or_default();
    assert_eq!(
        references,
        [
            "first.question@mail.buyer.example",
            "0102018f3c.a1b2c3@eu-west-1.amazonses.com"
        ],
        "{shown}"
    );
    assert_eq!(mail.content_language().as_text(), Some("de"), "{shown}");
    assert_eq!(
        mail.header("Auto-Submitted").and_then(|h| h.as_text()),
        Some("auto-replied"),
        "{shown}"
    );
    assert_eq!(
        mail.header("X-Auto-Response-Suppress")
            .and_then(|h| h.as_text()),
        Some("All"),
        "{shown}"
    );
    assert!(mail.date().is_some(), "{shown}");
    let content_type = mail.content_type();
    assert_eq!(content_type.map(|c| c.ctype()), Some("text"), "{shown}");
    assert_eq!(
        content_type.and_then(|c| c.subtype()),
        Some("plain"),
        "{shown}"
    );
    assert_eq!(
        content_type.and_then(|c| c.attribute("charset")),
        Some("utf-8"),
        "{shown}"
    );
    let body = mail.body_text(0).unwrap_or_default().replace("\r\n", "\n");
    assert_eq!(body.trim_end(), BODY.trim_end(), "{shown}");
}

#[tokio::test]
async fn a_reply_reaches_the_relay_from_the_seller_threaded_and_intact() {
    let receiver = receiver().await;
    let sender = sender(&url_with_password(&receiver));
    let receipt = match send(&sender, &reply()).await {
        Ok(receipt) => receipt,
        Err(e) => panic!("send: {e}"),
    };
    assert_eq!(
        receipt["message_id"], "<reply.302-1234567-7654321.1f2e3d@shop.example>",
        "{receipt}"
    );
    assert_eq!(receipt["to_domain"], "marketplace.amazon.com", "{receipt}");
    assert!(
        receipt["smtp"]
            .as_str()
            .is_some_and(|s| s.starts_with("250")),
        "{receipt}"
    );
    let text = receipt.to_string();
    assert!(
        !text.contains("7x2k9q3mzb4lw8n") && !text.contains("Müller") && !text.contains(PASSWORD),
        "the receipt carries buyer data or the password: {text}"
    );

    let received = receiver.received();
    let mail = only(&received);
    assert_eq!(mail.mail_from, "support@shop.example");
    assert_eq!(mail.rcpt_to, ["7x2k9q3mzb4lw8n@marketplace.amazon.com"]);
    check_reply(&mail.data);
    receiver.shutdown().await;
}

#[tokio::test]
async fn a_refused_recipient_was_not_sent_550_for_good_450_for_later() {
    let receiver = receiver().await;
    let sender = sender(&url_with_password(&receiver));

    receiver.set_fault(SmtpFault::RejectRecipient(550));
    let error = failure(&sender).await;
    assert!(!error.is_retryable(), "{error}");
    assert!(!error.may_have_acted(), "{error}");
    assert!(error.to_string().contains("550"), "{error}");

    receiver.set_fault(SmtpFault::RejectRecipient(450));
    let error = failure(&sender).await;
    assert!(error.is_retryable(), "{error}");
    assert!(!error.may_have_acted(), "{error}");
    assert!(error.to_string().contains("450"), "{error}");

    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_refusal_after_the_final_dot_was_not_sent() {
    let receiver = receiver().await;
    let sender = sender(&url_with_password(&receiver));

    receiver.set_fault(SmtpFault::RejectData(451));
    let error = failure(&sender).await;
    assert!(error.is_retryable() && !error.may_have_acted(), "{error}");

    receiver.set_fault(SmtpFault::RejectData(554));
    let error = failure(&sender).await;
    assert!(!error.is_retryable() && !error.may_have_acted(), "{error}");

    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_server_that_is_not_taking_mail_was_not_sent_and_retryable() {
    let receiver = receiver().await;
    receiver.set_fault(SmtpFault::ServiceUnavailable);
    let error = failure(&sender(&url_with_password(&receiver))).await;
    assert!(error.is_retryable(), "{error}");
    assert!(!error.may_have_acted(), "{error}");
    assert!(error.to_string().contains("421"), "{error}");
}

#[tokio::test]
async fn refused_credentials_are_credentials_and_not_sent() {
    let receiver = receiver().await;
    receiver.set_fault(SmtpFault::RejectAuth);
    let error = failure(&sender(&url_with_password(&receiver))).await;
    assert!(matches!(error, UpstreamError::Credentials(_)), "{error:?}");
    assert!(!error.is_retryable() && !error.may_have_acted(), "{error}");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_connection_lost_before_the_text_was_not_sent() {
    let receiver = receiver().await;
    receiver.set_fault(SmtpFault::DropBeforeData);
    let error = failure(&sender(&url_with_password(&receiver))).await;
    assert!(error.is_retryable(), "{error}");
    assert!(!error.may_have_acted(), "{error}");
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn a_connection_lost_after_the_final_dot_may_have_sent_and_it_did() {
    let receiver = receiver().await;
    receiver.set_fault(SmtpFault::DropAfterData);
    let error = failure(&sender(&url_with_password(&receiver))).await;
    assert!(error.may_have_acted(), "{error}");
    // Exactly why it must never be sent again: the server has it.
    let received = receiver.received();
    check_reply(&only(&received).data);
}

#[tokio::test]
async fn no_answer_to_the_final_dot_may_have_sent() {
    let receiver = receiver().await;
    receiver.set_fault(SmtpFault::StallAfterData);
    let sender = sender(&url_with_password(&receiver)).with_timeout(Duration::from_secs(1));
    let started = Instant::now();
    let error = failure(&sender).await;
    assert!(started.elapsed() < Duration::from_secs(10), "{error}");
    assert!(error.may_have_acted(), "{error}");
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test]
async fn a_closed_port_was_not_sent_and_is_retryable() {
    // Bound but never listening: connections are refused, and no other test can take the
    // port meanwhile.
    let reserved = match tokio::net::TcpSocket::new_v4()
        .and_then(|s| s.bind(([127, 0, 0, 1], 0).into()).map(|()| s))
    {
        Ok(socket) => socket,
        Err(e) => panic!("cannot reserve a loopback port: {e}"),
    };
    let port = match reserved.local_addr() {
        Ok(addr) => addr.port(),
        Err(e) => panic!("reserved port: {e}"),
    };
    let error = failure(&sender(&format!(
        "smtp://seller:{PASSWORD}@127.0.0.1:{port}"
    )))
    .await;
    assert!(error.is_retryable(), "{error}");
    assert!(!error.may_have_acted(), "{error}");
}

#[tokio::test]
async fn bad_urls_are_refused_without_the_password() {
    for url in [
        format!("http://seller:{PASSWORD}@host"),
        format!("smtp://seller:{PASSWORD}@host?tls=sometimes"),
        format!("smtp://seller:{PASSWORD}@:25"),
        PASSWORD.to_owned(),
    ] {
        match SmtpReplySender::new(&SecretString::from(url.clone())) {
            Ok(_) => panic!("accepted {url}"),
            Err(error) => assert!(!error.contains(PASSWORD), "{error}"),
        }
    }
}

#[tokio::test]
async fn a_real_smtp_server_delivers_the_reply_to_a_maildir() {
    let smtpd = Smtpd::start();
    let sender = sender(&format!("smtp://127.0.0.1:{}", smtpd.port));
    let receipt = match send(&sender, &reply()).await {
        Ok(receipt) => receipt,
        Err(e) => panic!("{e}; server log: {}", smtpd.logs()),
    };
    assert!(
        receipt["smtp"]
            .as_str()
            .is_some_and(|s| s.starts_with("250")),
        "{receipt}"
    );

    let delivered = smtpd.delivered();
    let [path] = delivered.as_slice() else {
        panic!("{delivered:?}; {}", smtpd.logs());
    };
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("the message: {e}"));
    check_reply(&raw);
    let Some(mail) = MessageParser::default().parse(&raw) else {
        panic!("unparseable");
    };
    // aiosmtpd's Mailbox handler adds the envelope as headers.
    assert_eq!(
        mail.header("X-MailFrom").and_then(|h| h.as_text()),
        Some("support@shop.example")
    );
    assert_eq!(
        mail.header("X-RcptTo").and_then(|h| h.as_text()),
        Some("7x2k9q3mzb4lw8n@marketplace.amazon.com")
    );
}
