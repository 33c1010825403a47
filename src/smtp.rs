//! SMTP submission, shared by the e-mail channel ([`crate::channels::email`]) and the
//! buyer-reply sender ([`crate::executors::mail`]): the SMTP URL, the connection and one
//! classification of every failure.
//!
//! # The URL
//! The SMTP URL is a secret and takes the forms `smtp://user:pass@host:587?tls=required`
//! (STARTTLS), `smtp://user:pass@host:587?tls=opportunistic` (STARTTLS when offered),
//! `smtps://user:pass@host:465` (TLS from the start) and `smtp://host:port` (plain, for a
//! local relay or tests); percent-encode `@`, `:` and `/` in the user name and password.
//! A path (`smtp://host/client.example`) names the client in EHLO. No error text shows
//! the URL or its password: [`SmtpServer::scrub`] blanks them out of whatever is kept.
//!
//! # The dialogue and what a failure means
//! lettre's transport runs the whole dialogue in one call and its errors do not say
//! which step failed, so the dialogue is driven here step by step with lettre's
//! [`AsyncSmtpConnection`], and every failure is classified by the step it happened in:
//!
//! | failure | step | retryable | may have been sent |
//! |---|---|---|---|
//! | connect refused, DNS, TLS handshake, greeting | connect | yes | no |
//! | any SMTP reply 4xx (greeting 421, RCPT 450, after the final `.` 451, …) | any | yes | no |
//! | SMTP reply 530, 534, 535, 538 (authentication) | any | no (`Credentials`) | no |
//! | any other SMTP reply 5xx (RCPT 550, after the final `.` 554, …) | any | no | no |
//! | lettre refuses by itself (no common AUTH mechanism, no STARTTLS, no 8BITMIME) | before MAIL | no | no |
//! | I/O error, unreadable reply, timeout | up to the `354` answer to DATA | yes | no |
//! | I/O error, unreadable reply, timeout | while the message is sent or its answer awaited | yes | **maybe** |
//!
//! A negative reply always means the server did not take the message (RFC 5321 §4.2.5:
//! only a 250 after the final `.` hands responsibility over). Before the server said
//! `354` to DATA no message text has left, so a broken connection there cannot have
//! delivered anything. Once the text is on its way, a lost answer leaves it open: the
//! server may have queued it and dropped the connection before saying so. That is
//! `Delivery::Maybe`, which an at-most-once sender must never resend.
//!
//! SMTP replies are reported as `Transport` errors with the reply code in the text, not
//! as `Status`: that variant's codes are HTTP's (5xx retried, 4xx not), the reverse of
//! SMTP's.
//!
//! The whole dialogue has one deadline ([`SEND_TIMEOUT`] unless set): lettre's own
//! timeout covers the TCP connect only, and a server that stops answering must not hold
//! an attempt forever.

use std::net::IpAddr;
use std::time::Duration;

use lettre::Message;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Quit, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::http::{self, Delivery, UpstreamError};

/// How long one whole SMTP dialogue may take, connecting included.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the polite QUIT after a dialogue may take.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2);

const URL_FORMS: &str = "expected smtp://user:pass@host:587?tls=required, \
                                    smtps://user:pass@host:465 or smtp://host:port";

/// Where the dialogue was when it failed; decides whether the message may have gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// TCP connect, implicit TLS, the greeting and EHLO.
    Connect,
    /// STARTTLS and the second EHLO.
    StartTls,
    Auth,
    /// MAIL FROM, RCPT TO and DATA, up to the server's `354`.
    Envelope,
    /// The message text, the final `.` and the server's answer to it.
    Content,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Connect => "connect",
            Step::StartTls => "STARTTLS",
            Step::Auth => "AUTH",
            Step::Envelope => "envelope",
            Step::Content => "message",
        }
    }

    /// Whether a failure without a reply, at this step, may have come after the server
    /// took the message.
    fn may_have_sent(self) -> bool {
        self == Step::Content
    }
}

/// An SMTP server to submit to, from its URL. Connects anew for every message.
pub(crate) struct SmtpServer {
    /// For connecting: a domain name or an IP address without brackets.
    host: String,
    port: u16,
    tls: Tls,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
    /// Strings no error text may show: the URL, its password (as written and decoded).
    redact: Vec<SecretString>,
}

impl SmtpServer {
    /// Check the URL (see the module doc) and keep what connecting needs; nothing is
    /// connected yet. The error text never shows the URL or any part of it.
    pub(crate) fn from_url(smtp_url: &SecretString) -> Result<Self, String> {
        let raw = smtp_url.expose_secret();
        let url = url::Url::parse(raw)
            .map_err(|e| format!("the SMTP URL does not parse ({e}); {URL_FORMS}"))?;
        let tls_param = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let host = match url.host() {
            Some(url::Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(format!("the SMTP URL has no host; {URL_FORMS}")),
        };
        let tls_parameters = || {
            TlsParameters::new(host.clone()).map_err(|_| {
                format!("the mail library refused the SMTP URL (its TLS settings); {URL_FORMS}")
            })
        };
        let (tls, default_port) = match (url.scheme(), tls_param.as_deref()) {
            ("smtp", None) => (Tls::None, 25),
            ("smtp", Some("required")) => (Tls::Required(tls_parameters()?), 587),
            ("smtp", Some("opportunistic")) => (Tls::Opportunistic(tls_parameters()?), 587),
            ("smtps", _) => (Tls::Wrapper(tls_parameters()?), 465),
            ("smtp", Some(_)) => {
                return Err(format!(
                    "the SMTP URL's tls parameter must be `required` or `opportunistic`; {URL_FORMS}"
                ));
            }
            _ => {
                return Err(format!(
                    "the SMTP URL's scheme must be smtp or smtps; {URL_FORMS}"
                ));
            }
        };
        let mut redact = vec![SecretString::from(raw.to_owned())];
        let credentials = match url.password() {
            Some(password) => {
                if !password.is_empty() {
                    redact.push(SecretString::from(password.to_owned()));
                }
                let decoded = percent_decode(password).ok_or_else(|| {
                    format!("the SMTP URL's password is not UTF-8 once decoded; {URL_FORMS}")
                })?;
                if !decoded.is_empty() && decoded != password {
                    redact.push(SecretString::from(decoded.clone()));
                }
                let user = percent_decode(url.username()).ok_or_else(|| {
                    format!("the SMTP URL's user name is not UTF-8 once decoded; {URL_FORMS}")
                })?;
                Some(Credentials::new(user, decoded))
            }
            None => None,
        };
        let name = url.path().trim_matches('/');
        let hello = if name.is_empty() {
            ClientId::default()
        } else {
            ClientId::Domain(name.to_owned())
        };
        Ok(Self {
            host,
            port: url.port().unwrap_or(default_port),
            tls,
            credentials,
            hello,
            timeout: SEND_TIMEOUT,
            redact,
        })
    }

    /// The whole dialogue's deadline, instead of [`SEND_TIMEOUT`].
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `text` with every secret this server holds blanked out.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.redact.iter().fold(text.to_owned(), |text, secret| {
            let secret = secret.expose_secret();
            if secret.is_empty() {
                text
            } else {
                text.replace(secret, "[redacted]")
            }
        })
    }

    /// Submit `message` to its envelope's recipients in one new connection; the
    /// server's answer to the final `.`. Failures are classified (see the module doc)
    /// and secret-free.
    pub(crate) async fn send(&self, message: &Message) -> Result<Response, UpstreamError> {
        let deadline = Instant::now() + self.timeout;
        let envelope = message.envelope();
        let body = message.formatted();

        let mut mail_options = Vec::new();
        let non_ascii_address = envelope
            .from()
            .into_iter()
            .chain(envelope.to())
            .any(|a| !AsRef::<str>::as_ref(a).is_ascii());

        let mut conn = self
            .step(deadline, Step::Connect, async {
                let tls = match &self.tls {
                    Tls::Wrapper(parameters) => Some(parameters.clone()),
                    _ => None,
                };
                AsyncSmtpConnection::connect_tokio1(
                    (self.host.as_str(), self.port),
                    Some(self.timeout),
                    &self.hello,
                    tls,
                    None::<IpAddr>,
                )
                .await
            })
            .await
            .map_err(|failed| failed.error)?;
        let result = async {
            let starttls = match &self.tls {
                Tls::Required(parameters) => Some(parameters),
                Tls::Opportunistic(parameters) if conn.can_starttls() => Some(parameters),
                _ => None,
            };
            if let Some(parameters) = starttls {
                self.step(
                    deadline,
                    Step::StartTls,
                    conn.starttls(parameters.clone(), &self.hello),
                )
                .await?;
            }
            if let Some(credentials) = &self.credentials {
                self.step(
                    deadline,
                    Step::Auth,
                    conn.auth(DEFAULT_MECHANISMS, credentials),
                )
                .await?;
            }
            // As lettre's own `send`: SMTPUTF8 and 8BITMIME when needed, and refused
            // before MAIL when the server does not offer them.
            if non_ascii_address {
                if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                    return Err(Failed::answered(refused(
                        "an address is not ASCII and the server does not offer SMTPUTF8",
                    )));
                }
                mail_options.push(MailParameter::SmtpUtfEight);
            }
            if !body.is_ascii() {
                if !conn.server_info().supports_feature(Extension::EightBitMime) {
                    return Err(Failed::answered(refused(
                        "the message is not ASCII and the server does not offer 8BITMIME",
                    )));
                }
                mail_options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
            }
            self.step(
                deadline,
                Step::Envelope,
                conn.command(Mail::new(envelope.from().cloned(), mail_options)),
            )
            .await?;
            for to in envelope.to() {
                self.step(
                    deadline,
                    Step::Envelope,
                    conn.command(Rcpt::new(to.clone(), Vec::new())),
                )
                .await?;
            }
            self.step(deadline, Step::Envelope, conn.command(Data))
                .await?;
            self.step(deadline, Step::Content, conn.message(&body))
                .await
        }
        .await;
        // Say goodbye, briefly, to a server that still answers; a failed QUIT changes
        // nothing. After a broken connection or a timeout, just close it.
        match result {
            Ok(response) => {
                let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.command(Quit)).await;
                Ok(response)
            }
            Err(Failed { error, answered }) => {
                if answered {
                    let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.abort()).await;
                }
                Err(error)
            }
        }
    }

    /// Run one step of the dialogue before `deadline`, classifying its failure.
    async fn step<T>(
        &self,
        deadline: Instant,
        step: Step,
        call: impl Future<Output = Result<T, SmtpError>>,
    ) -> Result<T, Failed> {
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(Failed {
                answered: error.status().is_some() || error.is_client(),
                error: self.classify(step, &error),
            }),
            Err(_) => Err(Failed {
                error: timed_out(step, self.timeout),
                answered: false,
            }),
        }
    }

    /// A lettre error at `step`, classified (see the module doc), secrets blanked out.
    fn classify(&self, step: Step, error: &SmtpError) -> UpstreamError {
        let message = http::summarize(&self.scrub(&error.to_string()));
        if let Some(code) = error.status() {
            let code = u16::from(code);
            let message = format!("SMTP {message} (at {})", step.name());
            if matches!(code, 530 | 534 | 535 | 538) {
                return UpstreamError::Credentials(message);
            }
            // The server said no, whenever it said it: the message was not taken.
            return UpstreamError::Transport {
                retryable: (400..500).contains(&code),
                delivered: Delivery::NotSent,
                message,
            };
        }
        let message = format!("SMTP {}: {message}", step.name());
        if error.is_client() && !step.may_have_sent() {
            // Refused by lettre itself before anything was sent (no common AUTH
            // mechanism, no STARTTLS on offer, …): no retry helps.
            return UpstreamError::Transport {
                retryable: false,
                delivered: Delivery::NotSent,
                message,
            };
        }
        UpstreamError::Transport {
            retryable: true,
            delivered: if step.may_have_sent() {
                Delivery::Maybe
            } else {
                Delivery::NotSent
            },
            message,
        }
    }
}

/// A failed step, classified.
struct Failed {
    error: UpstreamError,
    /// The server answered (or lettre refused by itself): the connection is still in
    /// step, so a QUIT makes sense.
    answered: bool,
}

impl Failed {
    fn answered(error: UpstreamError) -> Self {
        Self {
            error,
            answered: true,
        }
    }
}

/// No answer before the deadline: like a broken connection at that step.
fn timed_out(step: Step, timeout: Duration) -> UpstreamError {
    UpstreamError::Transport {
        retryable: true,
        delivered: if step.may_have_sent() {
            Delivery::Maybe
        } else {
            Delivery::NotSent
        },
        message: format!(
            "SMTP {}: no answer within {}s",
            step.name(),
            timeout.as_secs_f32()
        ),
    }
}

/// Refused here, before MAIL: nothing was sent and a retry meets the same server.
fn refused(reason: &str) -> UpstreamError {
    UpstreamError::Transport {
        retryable: false,
        delivered: Delivery::NotSent,
        message: format!("SMTP: {reason}"),
    }
}

/// `%XX` escapes decoded, as lettre decodes the URL's user name and password; `None`
/// when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (byte, escaped) {
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 3;
            }
            _ => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The `Transport` error for a message that could not be built (a bad address, …):
/// nothing was sent and the same input fails again.
pub(crate) fn not_built(reason: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Transport {
        retryable: false,
        delivered: Delivery::NotSent,
        message: format!("could not build the e-mail: {reason}"),
    }
}

/// A secret-free one-line summary of the server's final answer: `250 2.0.0 Ok: queued`.
pub(crate) fn reply_summary(server: &SmtpServer, response: &Response) -> String {
    let reply = format!(
        "{} {}",
        response.code(),
        response.first_line().unwrap_or_default()
    );
    http::summarize(&server.scrub(&reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(url: &str) -> SecretString {
        SecretString::from(url.to_owned())
    }

    #[test]
    fn the_url_forms_are_read() {
        let server = SmtpServer::from_url(&secret("smtp://127.0.0.1:2525"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((server.host.as_str(), server.port), ("127.0.0.1", 2525));
        assert!(matches!(server.tls, Tls::None) && server.credentials.is_none());

        let server = SmtpServer::from_url(&secret(
            "smtp://me%40shop.example:p%3Ass@smtp.example?tls=required",
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(server.port, 587);
        assert!(matches!(server.tls, Tls::Required(_)));
        assert_eq!(server.scrub("p:ss p%3Ass"), "[redacted] [redacted]");

        let server = SmtpServer::from_url(&secret("smtps://u:p@[::1]/client.example"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((server.host.as_str(), server.port), ("::1", 465));
        assert!(matches!(server.tls, Tls::Wrapper(_)));
        assert_eq!(server.hello, ClientId::Domain("client.example".into()));

        let server = SmtpServer::from_url(&secret("smtp://h:2525?tls=opportunistic"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(server.tls, Tls::Opportunistic(_)));
    }

    #[test]
    fn bad_urls_are_refused_without_the_secret() {
        for url in [
            "canary-pass-123",
            "http://user:canary-pass-123@host",
            "smtp://user:canary-pass-123@host?tls=sometimes",
            "smtp://user:canary-pass-123@:25",
            "smtp://user:canary-pass-123@host:99999",
            "smtp://user:canary-pass-%FF@host",
        ] {
            match SmtpServer::from_url(&secret(url)) {
                Ok(_) => panic!("{url} accepted"),
                Err(error) => assert!(!error.contains("canary"), "{error}"),
            }
        }
    }

    #[test]
    fn timeouts_are_maybe_only_once_the_message_is_on_its_way() {
        for step in [Step::Connect, Step::StartTls, Step::Auth, Step::Envelope] {
            let error = timed_out(step, SEND_TIMEOUT);
            assert!(error.is_retryable() && !error.may_have_acted(), "{error}");
        }
        let error = timed_out(Step::Content, SEND_TIMEOUT);
        assert!(error.is_retryable() && error.may_have_acted(), "{error}");
    }

    #[test]
    fn percent_decoding_follows_lettre() {
        assert_eq!(percent_decode("a%40b%3a%2F").as_deref(), Some("a@b:/"));
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%zz").as_deref(), Some("%zz"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%FF"), None);
    }
}
