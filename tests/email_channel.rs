//! The e-mail channel against a real SMTP server: aiosmtpd on loopback, delivering to a
//! Maildir (`pip install aiosmtpd`; the test fails, saying so, when it is missing).
#![forbid(unsafe_code)]

#[path = "common/aiosmtpd.rs"]
mod aiosmtpd;

use std::path::Path;
use std::process::Command;

use aiosmtpd::Smtpd;
use nightdesk::channels::email::{EmailChannel, message_id};
use nightdesk::channels::{Alert, AlertLine, Channel};
use nightdesk::http::{Delivery, UpstreamError};
use secrecy::SecretString;

/// The headers and decoded body of a message, read by Python's own e-mail parser.
fn parse(path: &Path) -> serde_json::Value {
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
with open(sys.argv[1], "rb") as f:
    m = email.message_from_binary_file(f, policy=email.policy.default)
names = ["From", "To", "Subject", "Auto-Submitted", "X-Nightdesk-Key", "Message-ID", "X-RcptTo", "Date"]
out = {n: (str(m[n]) if m[n] is not None else None) for n in names}
out["content_type"] = m.get_content_type()
out["charset"] = m.get_content_charset()
out["body"] = m.get_content()
print(json.dumps(out))
"#;
    let output = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("python3 runs: {e}"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("JSON from the parser: {e}"))
}

fn group() -> Alert {
    let mut alert = Alert::single(
        "late_shipment",
        "order:amazon/113-1",
        "Order 113-1 ships late — tell the buyer",
        "late_shipment|order:amazon/113-1|alert|9f2c",
    );
    alert.total = 40;
    for i in 2..=3 {
        alert.lines.push(AlertLine {
            subject: format!("order:amazon/113-{i}"),
            text: format!("Order 113-{i} ships late"),
        });
    }
    alert
}

#[tokio::test]
async fn the_email_channel_delivers_a_grouped_alert_as_one_plain_text_mail() {
    let smtpd = Smtpd::start();
    let url = SecretString::from(format!("smtp://127.0.0.1:{}", smtpd.port));
    let to = [
        "ops@shop.example".to_owned(),
        "Owner <owner@shop.example>".to_owned(),
    ];
    let channel = EmailChannel::new(&url, "nightdesk <alerts@shop.example>", &to)
        .unwrap_or_else(|e| panic!("{e}"));
    let alert = group();

    let receipt = channel
        .send(&alert)
        .await
        .unwrap_or_else(|e| panic!("{e}; server log: {}", smtpd.logs()));
    assert!(
        receipt["smtp"]
            .as_str()
            .is_some_and(|s| s.starts_with("250")),
        "{receipt}"
    );
    assert_eq!(receipt["message_id"], message_id(&alert.key));

    let delivered = smtpd.delivered();
    assert_eq!(delivered.len(), 1, "{delivered:?}; {}", smtpd.logs());
    let raw = std::fs::read_to_string(&delivered[0]).unwrap_or_else(|e| panic!("the message: {e}"));
    assert!(raw.contains("Auto-Submitted: auto-generated"), "{raw}");

    let mail = parse(&delivered[0]);
    assert_eq!(mail["From"], "nightdesk <alerts@shop.example>", "{mail}");
    assert_eq!(
        mail["To"], "ops@shop.example, Owner <owner@shop.example>",
        "{mail}"
    );
    assert_eq!(
        mail["Subject"], "[nightdesk] 40 alerts from rule late_shipment",
        "{mail}"
    );
    assert_eq!(mail["Auto-Submitted"], "auto-generated", "{mail}");
    assert_eq!(mail["X-Nightdesk-Key"], alert.key.as_str(), "{mail}");
    assert_eq!(
        mail["Message-ID"],
        message_id(&alert.key).as_str(),
        "{mail}"
    );
    let rcpt = mail["X-RcptTo"].as_str().unwrap_or_default();
    assert!(
        rcpt.contains("ops@shop.example") && rcpt.contains("owner@shop.example"),
        "{mail}"
    );
    assert!(mail["Date"].is_string(), "{mail}");
    assert_eq!(mail["content_type"], "text/plain", "{mail}");
    assert_eq!(mail["charset"], "utf-8", "{mail}");
    let body = mail["body"].as_str().unwrap_or_default();
    assert_eq!(
        body.replace("\r\n", "\n").trim_end(),
        alert.plain_text(),
        "{mail}"
    );
    assert!(body.contains("… and 37 more"), "{body}");
}

#[tokio::test]
async fn the_email_channel_reports_a_closed_port_as_retryable_without_the_password() {
    // Bound but never listening: connections are refused, and no other test can take the
    // port meanwhile (a port bound and released could go to a parallel test's server).
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
    let url = SecretString::from(format!("smtp://nightdesk:canary-pass-123@127.0.0.1:{port}"));
    let channel = EmailChannel::new(&url, "alerts@shop.example", &["ops@shop.example".into()])
        .unwrap_or_else(|e| panic!("{e}"));
    let error = match channel.send(&group()).await {
        Ok(receipt) => panic!("sent to a closed port: {receipt}"),
        Err(error) => error,
    };
    assert!(error.is_retryable(), "{error}");
    assert!(
        matches!(
            error,
            UpstreamError::Transport {
                delivered: Delivery::NotSent,
                ..
            }
        ),
        "{error:?}"
    );
    let text = format!("{error} {error:?} {channel:?}");
    assert!(!text.contains("canary-pass-123"), "{text}");
}
