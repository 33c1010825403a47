//! The `mail:` section: the seller mailboxes buyer mail arrives in, how replies go out,
//! and the 24-hour clock.
//!
//! ```yaml
//! mail:
//!   schedule: "* * * * *"            # how often the mailboxes are read
//!   sla_alert_after_hours: 20         # SlaAtRisk for a message still unanswered by then
//!   acknowledgement_templates: [acknowledge]   # replies that do not stop the clock
//!   mailboxes:
//!     - account: us                   # the Amazon account whose buyers write here
//!       address: seller@example.com   # the seller's registered address: replies come from it
//!       name: Example Shop            # optional display name on replies
//!       maildir: /var/mail/seller     # either a Maildir folder …
//!       imap:                         # … or an IMAP folder
//!         host: imap.example.com
//!         port: 993                   # default 993 (tls), 143 (starttls, plain)
//!         security: tls               # tls | starttls | plain (plain: loopback only)
//!         user: seller@example.com
//!         password: env:IMAP_PASSWORD
//!         folder: INBOX
//!       smtp: env:SMTP_URL            # smtps://user:pass@host or smtp://…?tls=required
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{SecretRef, Validator};
use crate::schedule::Schedule;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    #[serde(default)]
    schedule: Option<String>,
    #[serde(default)]
    sla_alert_after_hours: Option<i64>,
    #[serde(default)]
    acknowledgement_templates: Option<Vec<String>>,
    #[serde(default)]
    mailboxes: Vec<RawMailbox>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMailbox {
    account: String,
    address: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    maildir: Option<String>,
    #[serde(default)]
    imap: Option<RawImap>,
    #[serde(default)]
    smtp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImap {
    host: String,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    security: Option<String>,
    user: String,
    password: String,
    #[serde(default)]
    folder: Option<String>,
    #[serde(default)]
    ca_file: Option<String>,
}

/// The mail section, validated.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub schedule: Schedule,
    /// Hours after arrival at which an unanswered message raises `SlaAtRisk`.
    pub sla_alert_after_hours: i64,
    /// Templates whose replies acknowledge but do not answer (the clock keeps running).
    pub acknowledgement_templates: Vec<String>,
    pub mailboxes: Vec<MailboxConfig>,
}

/// One seller mailbox.
#[derive(Debug, Clone)]
pub struct MailboxConfig {
    /// The Amazon account (by name) whose buyers write here.
    pub account: String,
    /// The seller's registered address, lower case.
    pub address: String,
    pub display_name: Option<String>,
    pub source: MailSource,
    /// The outgoing server's URL (a secret: it carries the password); without it,
    /// replies wait for a person.
    pub smtp: Option<SecretRef>,
}

/// Where a mailbox is read.
#[derive(Debug, Clone)]
pub enum MailSource {
    Maildir(PathBuf),
    Imap {
        host: String,
        port: u16,
        /// `tls`, `starttls` or `plain`.
        security: String,
        user: String,
        password: SecretRef,
        folder: String,
        ca_file: Option<PathBuf>,
    },
}

impl Validator {
    pub(super) fn mail(
        &mut self,
        raw: RawMail,
        base: &Path,
        accounts: &[String],
    ) -> Option<MailConfig> {
        let schedule = self.schedule(
            "mail.schedule",
            raw.schedule.as_deref().unwrap_or("* * * * *"),
        );
        let hours = self.range(
            "mail.sla_alert_after_hours",
            raw.sla_alert_after_hours.unwrap_or(20),
            1,
            23,
        );
        let acknowledgement_templates = raw
            .acknowledgement_templates
            .unwrap_or_else(|| vec!["acknowledge".to_owned()]);
        let mut mailboxes = Vec::new();
        for (i, mailbox) in raw.mailboxes.into_iter().enumerate() {
            if let Some(m) = self.mailbox(&format!("mail.mailboxes[{i}]"), mailbox, base, accounts)
            {
                mailboxes.push(m);
            }
        }
        Some(MailConfig {
            schedule: schedule?,
            sla_alert_after_hours: hours,
            acknowledgement_templates,
            mailboxes,
        })
    }

    fn mailbox(
        &mut self,
        key: &str,
        raw: RawMailbox,
        base: &Path,
        accounts: &[String],
    ) -> Option<MailboxConfig> {
        if !accounts.contains(&raw.account) {
            self.error(
                &format!("{key}.account"),
                format!("{:?} is not an account under amazon.accounts", raw.account),
            );
        }
        let address = raw.address.trim().to_ascii_lowercase();
        if address.parse::<lettre::Address>().is_err() {
            self.error(
                &format!("{key}.address"),
                format!("{:?} is not an e-mail address", raw.address),
            );
        }
        let smtp = raw
            .smtp
            .as_deref()
            .and_then(|s| self.secret(&format!("{key}.smtp"), s, base));
        let source = match (raw.maildir, raw.imap) {
            (Some(dir), None) => {
                let path = PathBuf::from(dir);
                Some(MailSource::Maildir(if path.is_relative() {
                    base.join(path)
                } else {
                    path
                }))
            }
            (None, Some(imap)) => self.imap(&format!("{key}.imap"), imap, base),
            (Some(_), Some(_)) => {
                self.error(
                    key,
                    "a mailbox is either a maildir or an imap folder, not both",
                );
                None
            }
            (None, None) => {
                self.error(key, "a mailbox needs a maildir or an imap folder");
                None
            }
        };
        Some(MailboxConfig {
            account: raw.account,
            address,
            display_name: raw.name,
            source: source?,
            smtp,
        })
    }

    fn imap(&mut self, key: &str, raw: RawImap, base: &Path) -> Option<MailSource> {
        let security = raw.security.unwrap_or_else(|| "tls".to_owned());
        let default_port = match security.as_str() {
            "tls" => 993,
            "starttls" | "plain" => 143,
            other => {
                self.error(
                    &format!("{key}.security"),
                    format!("{other:?} is not one of tls, starttls, plain"),
                );
                143
            }
        };
        if security == "plain" && !is_loopback(&raw.host) {
            self.error(
                &format!("{key}.security"),
                "plain IMAP sends the password unencrypted; it is allowed on loopback only",
            );
        }
        if raw.host.trim().is_empty() {
            self.error(&format!("{key}.host"), "the host is empty");
        }
        let password = self.secret(&format!("{key}.password"), &raw.password, base);
        let ca_file = raw.ca_file.map(|f| {
            let path = PathBuf::from(f);
            if path.is_relative() {
                base.join(path)
            } else {
                path
            }
        });
        Some(MailSource::Imap {
            host: raw.host,
            port: raw.port.unwrap_or(default_port),
            security,
            user: raw.user,
            password: password?,
            folder: raw.folder.unwrap_or_else(|| "INBOX".to_owned()),
            ca_file,
        })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
