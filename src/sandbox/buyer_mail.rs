//! The scenario's buyer mails, as a marketplace relay delivers them: from an anonymised
//! relay address to the seller's mailbox, with a Message-ID and a Date relative to the
//! sandbox's start. [`deliver`] writes them into a Maildir (`tmp/` then `new/`, as a
//! delivery agent does) for the demo and the tests; a mail already delivered (in `new/`
//! or `cur/`) is not delivered again.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use serde::{Deserialize, Serialize};

use super::scenario::When;

/// One buyer mail of the scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioMail {
    /// Short name: it makes the Message-ID and the file name.
    pub id: String,
    pub from_name: String,
    /// The relay address the buyer writes from (`…@marketplace.amazon.com`).
    pub from: String,
    pub subject: String,
    pub body: String,
    /// When the relay delivered it (`3h` = three hours before the sandbox started).
    pub received: When,
    /// Extra headers (`Auto-Submitted: auto-replied` for an out-of-office answer).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl ScenarioMail {
    pub fn message_id(&self) -> String {
        format!("{}.sandbox@marketplace.amazon.com", self.id)
    }

    /// The mail as RFC 5322 bytes, addressed to `to`.
    pub fn to_rfc5322(&self, to: &str, now: DateTime<Utc>) -> Result<Vec<u8>, String> {
        let from: Mailbox = format!("\"{}\" <{}>", self.from_name, self.from)
            .parse()
            .map_err(|e| format!("mail {}: from: {e}", self.id))?;
        let to: Mailbox = to
            .parse()
            .map_err(|e| format!("mail {}: to: {e}", self.id))?;
        let date: std::time::SystemTime = self.received.resolve(now).into();
        let mut message = Message::builder()
            .from(from)
            .to(to)
            .subject(self.subject.clone())
            .date(date)
            .message_id(Some(format!("<{}>", self.message_id())))
            .header(ContentType::TEXT_PLAIN)
            .body(self.body.clone())
            .map_err(|e| format!("mail {}: {e}", self.id))?;
        for (name, value) in &self.headers {
            let name = HeaderName::new_from_ascii(name.clone())
                .map_err(|e| format!("mail {}: header {name}: {e}", self.id))?;
            message
                .headers_mut()
                .insert_raw(HeaderValue::new(name, value.clone()));
        }
        Ok(message.formatted())
    }

    fn file_name(&self) -> String {
        format!("sandbox-{}.nightdesk", self.id)
    }
}

/// Deliver `mails` to `to` into the Maildir at `root` (created if needed). Returns how
/// many were new.
pub fn deliver(
    mails: &[ScenarioMail],
    to: &str,
    root: &Path,
    now: DateTime<Utc>,
) -> Result<usize, String> {
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(root.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", root.join(sub).display()))?;
    }
    let mut delivered = 0;
    for mail in mails {
        let name = mail.file_name();
        let seen = root.join("new").join(&name).exists()
            || root.join("cur").join(format!("{name}:2,S")).exists();
        if seen {
            continue;
        }
        let bytes = mail.to_rfc5322(to, now)?;
        let staged = root.join("tmp").join(&name);
        std::fs::write(&staged, bytes)
            .and_then(|()| std::fs::rename(&staged, root.join("new").join(&name)))
            .map_err(|e| format!("cannot deliver mail {}: {e}", mail.id))?;
        delivered += 1;
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::mail::{parse, understand};
    use chrono::TimeZone;

    fn mail() -> ScenarioMail {
        ScenarioMail {
            id: "wo-ist".into(),
            from_name: "Jürgen Weiß".into(),
            from: "q4k8m2x7z1p9@marketplace.amazon.com".into(),
            subject: "Wo ist mein Paket? Bestellung 111-2205936-7748102".into(),
            body: "Hallo, mein Paket ist noch nicht angekommen. Können Sie mir sagen, wo es gerade ist? Grüße".into(),
            received: When::hours_ago(3),
            headers: BTreeMap::new(),
        }
    }

    #[test]
    fn a_scenario_mail_reads_back_as_the_relay_mail_it_stands_for() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
            .single()
            .unwrap_or_default();
        let bytes = mail().to_rfc5322("seller@example.com", now);
        let Ok(bytes) = bytes else {
            panic!("{bytes:?}")
        };
        let parsed = parse(&bytes);
        let Ok(parsed) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(
            parsed.message_id.as_deref(),
            Some("wo-ist.sandbox@marketplace.amazon.com")
        );
        assert_eq!(parsed.date, Some(now - chrono::Duration::hours(3)));
        let understood = understand(&parsed, &[]);
        assert_eq!(understood.order_id.as_deref(), Some("111-2205936-7748102"));
        assert_eq!(understood.language.as_deref(), Some("de"));
        assert!(
            understood.new_text.contains("Können"),
            "{}",
            understood.new_text
        );
        assert_eq!(understood.do_not_answer, None);
    }

    #[test]
    fn delivering_twice_delivers_once() {
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else { panic!("{dir:?}") };
        let now = Utc::now();
        assert_eq!(
            deliver(&[mail()], "seller@example.com", dir.path(), now),
            Ok(1)
        );
        assert_eq!(
            deliver(&[mail()], "seller@example.com", dir.path(), now),
            Ok(0)
        );
        let moved = std::fs::rename(
            dir.path().join("new").join("sandbox-wo-ist.nightdesk"),
            dir.path().join("cur").join("sandbox-wo-ist.nightdesk:2,S"),
        );
        assert!(moved.is_ok());
        assert_eq!(
            deliver(&[mail()], "seller@example.com", dir.path(), now),
            Ok(0)
        );
    }
}
