//! IMAP: the seller's mailbox, where the marketplaces relay buyer mail. [`ImapMailbox`] is
//! a [`Mailbox`]: it opens one folder read-only (`EXAMINE`), hands out the mails whose UID
//! is above the checkpoint's, oldest first, as raw bytes (`BODY.PEEK[]`), and records the
//! folder's UIDVALIDITY so that a rebuilt folder is read again from the start, and said
//! so. [`Mailbox::wait_for_mail`] uses IDLE on a second connection where the server has it.
//! TLS is rustls (aws-lc-rs) with the platform's roots plus an optional extra CA file;
//! implicit TLS, STARTTLS, or plaintext to a loopback address only.
//!
//! What it must never do:
//! - change the mailbox: no `SELECT`, no flag (the folder is only `EXAMINE`d and bodies
//!   are fetched with `BODY.PEEK`), no delete, no move, no expunge;
//! - log or keep anything of a mail (bodies, headers, addresses): logs name the mailbox
//!   and UIDs only, and errors carry the server's status text, never a response's data;
//! - show the password: not in `Debug`, names, logs or errors (error texts are scrubbed
//!   of it too), and never send it in the clear to anything but a loopback address;
//! - move the checkpoint past a mail it did not hand out, except one too large to parse
//!   ([`MAX_MAIL_BYTES`]), which is skipped with a warning so one mail cannot block the
//!   mailbox forever.

use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::error::Error as ImapError;
use async_imap::extensions::idle::IdleResponse;
use async_imap::imap_proto::{MailboxDatum, Response, Status};
use async_imap::types::UnsolicitedResponse;
use async_trait::async_trait;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::mailbox::{Batch, FetchedMail, MailCheckpoint, Mailbox, MailboxError};
use super::parse::MAX_MAIL_BYTES;

/// Connecting, the TLS handshake and every command but a body fetch.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// One fetched mail may be tens of megabytes: each response of a body fetch gets this long.
const BODY_TIMEOUT: Duration = Duration::from_secs(300);
/// RFC 2177: re-issue IDLE at least every 29 minutes; stay well below.
const IDLE_MAX: Duration = Duration::from_secs(25 * 60);
/// Server texts in errors are cut to this many characters.
const DETAIL_MAX: usize = 300;

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImapSecurity {
    /// Implicit TLS (IMAPS, usually port 993).
    Tls,
    /// Plaintext, upgraded with STARTTLS before login (usually port 143).
    StartTls,
    /// No TLS at all: only to a loopback address or `localhost` (tests, a local proxy).
    Plain,
}

/// Where and how to read mail.
#[derive(Debug, Clone)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: ImapSecurity,
    pub user: String,
    /// Redacted in `Debug` by `secrecy`.
    pub password: SecretString,
    /// The folder to read, e.g. `INBOX` (ASCII names only: no modified UTF-7 here).
    pub folder: String,
    /// An extra trusted root (PEM), for a server with a self-signed or private CA.
    pub ca_file: Option<PathBuf>,
}

type Session = async_imap::Session<Transport>;

/// Buyer mail over IMAP. See the module doc.
pub struct ImapMailbox {
    name: String,
    settings: ImapSettings,
    /// `None` for [`ImapSecurity::Plain`].
    tls: Option<(TlsConnector, ServerName<'static>)>,
    /// The connection `fetch` uses, kept between calls; taken out while in use, so a
    /// cancelled or failed call never leaves a half-read connection behind.
    fetch_session: Mutex<Option<Session>>,
    /// The connection `wait_for_mail` IDLEs on.
    idle_session: Mutex<Option<Session>>,
    /// The server has no IDLE: `wait_for_mail` just sleeps.
    no_idle: AtomicBool,
}

impl std::fmt::Debug for ImapMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapMailbox")
            .field("name", &self.name)
            .field("security", &self.settings.security)
            .field("port", &self.settings.port)
            .finish_non_exhaustive()
    }
}

impl ImapMailbox {
    /// Checks the settings and prepares TLS; connects only on the first `fetch`.
    pub fn new(settings: ImapSettings) -> Result<Self, MailboxError> {
        let name = format!(
            "imap:{}@{}/{}",
            settings.user, settings.host, settings.folder
        );
        let setup = |detail: String| MailboxError::Setup {
            mailbox: name.clone(),
            detail,
        };
        if settings.host.trim().is_empty() {
            return Err(setup("no IMAP host given".into()));
        }
        if settings.user.is_empty() {
            return Err(setup("no IMAP user given".into()));
        }
        if let Some(problem) = folder_problem(&settings.folder) {
            return Err(setup(problem));
        }
        if settings.port == 0 {
            return Err(setup("IMAP port 0 is not a port".into()));
        }
        let tls = match settings.security {
            ImapSecurity::Plain => {
                if !is_loopback_host(&settings.host) {
                    return Err(setup(format!(
                        "plaintext IMAP is allowed only to a loopback address or localhost, \
                         not {}: use TLS or STARTTLS",
                        settings.host
                    )));
                }
                None
            }
            ImapSecurity::Tls | ImapSecurity::StartTls => {
                let config = tls_config(settings.ca_file.as_deref()).map_err(&setup)?;
                let host = settings.host.trim_start_matches('[').trim_end_matches(']');
                let server_name = ServerName::try_from(host.to_owned())
                    .map_err(|e| setup(format!("{host} is not a host name TLS can check: {e}")))?;
                Some((TlsConnector::from(Arc::new(config)), server_name))
            }
        };
        Ok(ImapMailbox {
            name,
            settings,
            tls,
            fetch_session: Mutex::new(None),
            idle_session: Mutex::new(None),
            no_idle: AtomicBool::new(false),
        })
    }

    fn unavailable(&self, detail: impl Into<String>) -> MailboxError {
        MailboxError::Unavailable {
            mailbox: self.name.clone(),
            detail: self.scrub(detail.into()),
        }
    }

    fn setup_error(&self, detail: impl Into<String>) -> MailboxError {
        MailboxError::Setup {
            mailbox: self.name.clone(),
            detail: self.scrub(detail.into()),
        }
    }

    /// Cuts a detail to [`DETAIL_MAX`] characters and removes the password from it, should
    /// a server ever echo it.
    fn scrub(&self, detail: String) -> String {
        let mut detail: String = if detail.chars().count() > DETAIL_MAX {
            let mut cut: String = detail.chars().take(DETAIL_MAX).collect();
            cut.push('…');
            cut
        } else {
            detail
        };
        let password = self.settings.password.expose_secret();
        if !password.is_empty() && detail.contains(password) {
            detail = detail.replace(password, "[REDACTED]");
        }
        detail
    }

    /// An error of the IMAP library at `step`, classified.
    fn imap_error(&self, step: Step, error: ImapError) -> MailboxError {
        let what = step.what();
        match error {
            ImapError::No(text) | ImapError::Bad(text) => {
                let text = server_text(&text);
                match step {
                    _ if is_transient(&text) => {
                        self.unavailable(format!("{what}: the server is busy: {text}"))
                    }
                    Step::Login => MailboxError::Credentials {
                        mailbox: self.name.clone(),
                        detail: self.scrub(format!("user {}: {text}", self.settings.user)),
                    },
                    Step::Examine => self.setup_error(format!(
                        "cannot open folder {}: {text}",
                        self.settings.folder
                    )),
                    Step::StartTls => self.setup_error(format!(
                        "the server refused STARTTLS ({text}); use implicit TLS?"
                    )),
                    _ => self.unavailable(format!("{what}: the server said: {text}")),
                }
            }
            ImapError::Validate(e) => match step {
                Step::Login => MailboxError::Credentials {
                    mailbox: self.name.clone(),
                    detail: format!("the user name or password cannot be sent with LOGIN: {e}"),
                },
                _ => self.setup_error(format!("{what}: {e}")),
            },
            ImapError::Io(e) => self.unavailable(format!("{what}: {}", io_text(&e))),
            ImapError::ConnectionLost => {
                self.unavailable(format!("{what}: the server closed the connection"))
            }
            // Parse errors may quote a response, which may be a piece of a mail.
            ImapError::Parse(_) => {
                self.unavailable(format!("{what}: could not parse the server's answer"))
            }
            other => self.unavailable(format!("{what}: {other}")),
        }
    }

    /// Runs one command with [`COMMAND_TIMEOUT`].
    async fn within<T>(
        &self,
        step: Step,
        fut: impl Future<Output = Result<T, ImapError>>,
    ) -> Result<T, MailboxError> {
        match timeout(COMMAND_TIMEOUT, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(self.imap_error(step, e)),
            Err(_) => Err(self.unavailable(format!(
                "{}: no answer within {} s",
                step.what(),
                COMMAND_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Connects, protects the connection as configured, logs in and opens the folder
    /// read-only. Returns the session and the folder's state.
    async fn connect(&self) -> Result<(Session, async_imap::types::Mailbox), MailboxError> {
        let s = &self.settings;
        let tcp = match timeout(
            COMMAND_TIMEOUT,
            TcpStream::connect((s.host.as_str(), s.port)),
        )
        .await
        {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                return Err(self.unavailable(format!("cannot connect to port {}: {e}", s.port)));
            }
            Err(_) => {
                return Err(self.unavailable(format!(
                    "no connection to port {} within {} s",
                    s.port,
                    COMMAND_TIMEOUT.as_secs()
                )));
            }
        };
        let _ = tcp.set_nodelay(true);
        let client = match (s.security, &self.tls) {
            (ImapSecurity::Tls, Some(tls)) => {
                let mut client = async_imap::Client::new(self.handshake(tls, tcp).await?);
                self.greeting(&mut client).await?;
                client
            }
            (ImapSecurity::StartTls, Some(tls)) => {
                let mut client = async_imap::Client::new(Transport::Plain(tcp));
                self.greeting(&mut client).await?;
                self.within(
                    Step::StartTls,
                    client.run_command_and_check_ok("STARTTLS", None),
                )
                .await?;
                // Whatever the server sent after its OK was sent before TLS: into_inner
                // drops it with the buffer (no command injection across the upgrade).
                let Transport::Plain(tcp) = client.into_inner() else {
                    return Err(self.setup_error("STARTTLS on a TLS connection"));
                };
                async_imap::Client::new(self.handshake(tls, tcp).await?)
            }
            (ImapSecurity::Plain, _) => {
                let mut client = async_imap::Client::new(Transport::Plain(tcp));
                self.greeting(&mut client).await?;
                client
            }
            (_, None) => return Err(self.setup_error("TLS is not set up")),
        };
        let mut session = match timeout(
            COMMAND_TIMEOUT,
            client.login(&s.user, s.password.expose_secret()),
        )
        .await
        {
            Ok(Ok(session)) => session,
            Ok(Err((e, _client))) => return Err(self.imap_error(Step::Login, e)),
            Err(_) => {
                return Err(self.unavailable(format!(
                    "login: no answer within {} s",
                    COMMAND_TIMEOUT.as_secs()
                )));
            }
        };
        let folder = self
            .within(Step::Examine, session.examine(&s.folder))
            .await?;
        Ok((session, folder))
    }

    async fn handshake(
        &self,
        (connector, server_name): &(TlsConnector, ServerName<'static>),
        tcp: TcpStream,
    ) -> Result<Transport, MailboxError> {
        match timeout(COMMAND_TIMEOUT, connector.connect(server_name.clone(), tcp)).await {
            Ok(Ok(tls)) => Ok(Transport::Tls(Box::new(tls))),
            Ok(Err(e)) => Err(self.unavailable(format!("TLS: {e}"))),
            Err(_) => Err(self.unavailable(format!(
                "TLS: no handshake within {} s",
                COMMAND_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Reads the server's greeting; a `BYE` means it will not talk now.
    async fn greeting(
        &self,
        client: &mut async_imap::Client<Transport>,
    ) -> Result<(), MailboxError> {
        let greeting = self
            .within(Step::Greeting, async {
                client.read_response().await.map_err(ImapError::Io)
            })
            .await?;
        let Some(greeting) = greeting else {
            return Err(self.unavailable("the server closed the connection before greeting"));
        };
        match greeting.parsed() {
            Response::Data {
                status: Status::Bye,
                outcome,
            } => Err(self.unavailable(format!(
                "the server said BYE: {}",
                outcome.information.as_deref().unwrap_or("")
            ))),
            Response::Data { .. } => Ok(()),
            _ => Err(self.unavailable("the server's greeting is not IMAP")),
        }
    }

    /// The kept connection if it still answers, else a new one; the folder is opened
    /// read-only either way.
    async fn session_for(
        &self,
        kept: Option<Session>,
    ) -> Result<(Session, async_imap::types::Mailbox), MailboxError> {
        if let Some(mut session) = kept
            && self.within(Step::Noop, session.noop()).await.is_ok()
            && let Ok(folder) = self
                .within(Step::Examine, session.examine(&self.settings.folder))
                .await
        {
            return Ok((session, folder));
        }
        // A kept connection that fails is simply replaced; a real problem (the folder
        // is gone, the server is down) shows again on the new one.
        self.connect().await
    }

    async fn fetch_on(
        &self,
        session: &mut Session,
        folder: &async_imap::types::Mailbox,
        since: &MailCheckpoint,
        limit: usize,
    ) -> Result<Batch, MailboxError> {
        let Some(uid_validity) = folder.uid_validity else {
            return Err(self.setup_error(format!(
                "the server reports no UIDVALIDITY for folder {}: it cannot be read safely",
                self.settings.folder
            )));
        };
        let restarted = match since.uid_validity {
            Some(old) if old != uid_validity => Some(format!(
                "UIDVALIDITY of {} changed from {old} to {uid_validity}; read from the start",
                self.settings.folder
            )),
            _ => None,
        };
        let after = if restarted.is_some() {
            None
        } else {
            since.last_uid
        };
        let mut batch = Batch {
            mails: Vec::new(),
            checkpoint: MailCheckpoint {
                uid_validity: Some(uid_validity),
                last_uid: after,
            },
            restarted,
            more: false,
        };
        let Some(first) = after.unwrap_or(0).checked_add(1) else {
            return Ok(batch); // u32::MAX was handed out: no UID can follow.
        };
        let nothing_new = folder.exists == 0 || folder.uid_next.is_some_and(|next| next <= first);
        if nothing_new {
            return Ok(batch);
        }

        // 1. The UIDs and sizes above the checkpoint (cheap), 2. the bodies of those
        // handed out this time.
        let mut listed = Vec::new();
        {
            let mut stream = self
                .within(
                    Step::Fetch,
                    session.uid_fetch(format!("{first}:*"), "(UID RFC822.SIZE)"),
                )
                .await?;
            while let Some(item) = self
                .within(Step::Fetch, async { Ok(stream.next().await) })
                .await?
            {
                let fetch = item.map_err(|e| self.imap_error(Step::Fetch, e))?;
                if let Some(uid) = fetch.uid {
                    listed.push(Listed {
                        uid,
                        size: fetch.size,
                    });
                }
            }
        }
        let plan = plan(listed, after.unwrap_or(0), limit);
        let mut bodies: std::collections::HashMap<u32, Vec<u8>> = Default::default();
        if !plan.download.is_empty() {
            let mut stream = self
                .within(
                    Step::Fetch,
                    session.uid_fetch(uid_set(&plan.download), "(UID RFC822.SIZE BODY.PEEK[])"),
                )
                .await?;
            loop {
                let item = match timeout(BODY_TIMEOUT, stream.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) => break,
                    Err(_) => {
                        return Err(self.unavailable(format!(
                            "fetching mail: no answer within {} s",
                            BODY_TIMEOUT.as_secs()
                        )));
                    }
                };
                let fetch = item.map_err(|e| self.imap_error(Step::Fetch, e))?;
                // Unsolicited FETCH responses (another client's flag change) carry no
                // body; a UID not asked for is ignored too.
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body())
                    && plan.download.binary_search(&uid).is_ok()
                {
                    bodies.insert(uid, body.to_vec());
                }
            }
        }
        // A mail asked for but not returned: gone (expunged meanwhile) is skipped; still
        // there means the server failed to send it, and the batch ends before it.
        let missing: Vec<u32> = plan
            .download
            .iter()
            .copied()
            .filter(|uid| !bodies.contains_key(uid))
            .collect();
        let mut cut = None;
        if !missing.is_empty() {
            let mut still_there = Vec::new();
            let mut stream = self
                .within(Step::Fetch, session.uid_fetch(uid_set(&missing), "(UID)"))
                .await?;
            while let Some(item) = self
                .within(Step::Fetch, async { Ok(stream.next().await) })
                .await?
            {
                let fetch = item.map_err(|e| self.imap_error(Step::Fetch, e))?;
                if let Some(uid) = fetch.uid
                    && missing.binary_search(&uid).is_ok()
                {
                    still_there.push(uid);
                }
            }
            cut = still_there.into_iter().min();
        }

        let mut covered = after;
        for uid in plan.consumed.iter().copied() {
            if cut.is_some_and(|cut| uid >= cut) {
                batch.more = true;
                break;
            }
            covered = Some(uid);
            let raw = bodies.remove(&uid);
            // Too large by the listed size, or by the bytes actually sent.
            let too_large = plan.too_large.binary_search(&uid).is_ok()
                || raw.as_ref().is_some_and(|raw| raw.len() > MAX_MAIL_BYTES);
            if too_large {
                tracing::warn!(
                    mailbox = %self.name,
                    uid,
                    limit_bytes = MAX_MAIL_BYTES,
                    "mail larger than nightdesk reads: skipped"
                );
            } else if let Some(raw) = raw {
                batch.mails.push(FetchedMail {
                    position: uid.to_string(),
                    raw,
                });
            }
            // Neither: expunged since the listing; nothing to hand out.
        }
        if let Some(cut) = cut
            && covered == after
        {
            return Err(self.unavailable(format!(
                "the server did not send mail UID {cut} of folder {}",
                self.settings.folder
            )));
        }
        batch.more |= plan.more;
        batch.checkpoint.last_uid = covered;
        Ok(batch)
    }

    /// IDLE on `session` until the server reports new mail or `deadline`. Returns the
    /// session (IDLE ended with DONE) for the next wait.
    async fn idle_on(&self, session: Session, deadline: Instant) -> Result<Session, MailboxError> {
        let mut handle = session.idle();
        self.within(Step::Idle, handle.init()).await?;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            let (wait, _stop) = handle.wait_with_timeout(remaining);
            match timeout(remaining, wait).await {
                Err(_) | Ok(Ok(IdleResponse::Timeout)) => break,
                Ok(Ok(IdleResponse::NewData(data))) => {
                    if let Response::MailboxData(MailboxDatum::Exists(_)) = data.parsed() {
                        break;
                    }
                    // RECENT, FETCH (flags), EXPUNGE: not new mail; keep waiting.
                }
                // The response stream ended: the server closed the connection.
                Ok(Ok(IdleResponse::ManualInterrupt)) => {
                    return Err(self.unavailable("IDLE: the server closed the connection"));
                }
                Ok(Err(e)) => return Err(self.imap_error(Step::Idle, e)),
            }
        }
        self.within(Step::Idle, handle.done()).await
    }
}

#[async_trait]
impl Mailbox for ImapMailbox {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self, since: &MailCheckpoint, limit: usize) -> Result<Batch, MailboxError> {
        let mut kept = self.fetch_session.lock().await;
        let (mut session, folder) = self.session_for(kept.take()).await?;
        let batch = self.fetch_on(&mut session, &folder, since, limit).await?;
        // Kept only after a clean read: any error above dropped (closed) it.
        *kept = Some(session);
        Ok(batch)
    }

    async fn commit(&self, _positions: &[String]) -> Result<(), MailboxError> {
        // The checkpoint is all IMAP needs; the mailbox is never changed.
        Ok(())
    }

    async fn wait_for_mail(&self, max: Duration) -> Result<(), MailboxError> {
        let max = max.min(IDLE_MAX);
        if max.is_zero() {
            return Ok(());
        }
        if self.no_idle.load(Ordering::Relaxed) {
            tokio::time::sleep(max).await;
            return Ok(());
        }
        let deadline = Instant::now() + max;
        let mut kept = self.idle_session.lock().await;
        let reused = kept.is_some();
        let (mut session, _folder) = self.session_for(kept.take()).await?;
        // New mail the server reported since the last IDLE (at its DONE, or at the NOOP
        // that checked the kept connection): return at once.
        let mut arrived = false;
        while let Ok(note) = session.unsolicited_responses.try_recv() {
            arrived |= matches!(note, UnsolicitedResponse::Exists(_));
        }
        if arrived && reused {
            *kept = Some(session);
            return Ok(());
        }
        if !reused {
            let capabilities = self
                .within(Step::Capability, session.capabilities())
                .await?;
            if !capabilities.has_str("IDLE") {
                self.no_idle.store(true, Ordering::Relaxed);
                drop(kept);
                drop(session);
                tokio::time::sleep_until(deadline).await;
                return Ok(());
            }
        }
        let session = self.idle_on(session, deadline).await?;
        *kept = Some(session);
        Ok(())
    }
}

/// The steps errors are named after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    StartTls,
    Login,
    Capability,
    Noop,
    Examine,
    Fetch,
    Idle,
}

impl Step {
    fn what(self) -> &'static str {
        match self {
            Step::Greeting => "greeting",
            Step::StartTls => "STARTTLS",
            Step::Login => "login",
            Step::Capability => "CAPABILITY",
            Step::Noop => "NOOP",
            Step::Examine => "EXAMINE",
            Step::Fetch => "FETCH",
            Step::Idle => "IDLE",
        }
    }
}

/// One line of the UID listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listed {
    uid: u32,
    size: Option<u32>,
}

/// What one fetch reads, from the listing of UIDs above the checkpoint.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// The UIDs whose bodies are fetched, ascending.
    download: Vec<u32>,
    /// The UIDs skipped for their size, ascending.
    too_large: Vec<u32>,
    /// Both, ascending: what the checkpoint may move past.
    consumed: Vec<u32>,
    /// More mails wait beyond `limit`.
    more: bool,
}

/// Plans one fetch: the UIDs above `after` (a server answers `UID FETCH n:*` with the
/// highest message even when its UID is below n: those are dropped here), oldest first,
/// at most `limit` to download; mails over [`MAX_MAIL_BYTES`] are skipped and do not count.
fn plan(mut listed: Vec<Listed>, after: u32, limit: usize) -> Plan {
    listed.retain(|l| l.uid > after);
    listed.sort_by_key(|l| l.uid);
    listed.dedup_by_key(|l| l.uid);
    let mut plan = Plan::default();
    for l in listed {
        let too_large = l
            .size
            .is_some_and(|size| usize::try_from(size).map_or(true, |s| s > MAX_MAIL_BYTES));
        if too_large {
            plan.too_large.push(l.uid);
        } else if plan.download.len() < limit {
            plan.download.push(l.uid);
        } else {
            plan.more = true;
            break;
        }
        plan.consumed.push(l.uid);
    }
    plan
}

/// An IMAP sequence set for ascending UIDs, runs collapsed: `3:5,9`.
fn uid_set(uids: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < uids.len() {
        let start = uids[i];
        let mut end = start;
        while i + 1 < uids.len() && end.checked_add(1) == Some(uids[i + 1]) {
            i += 1;
            end = uids[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// A host plaintext may go to: `localhost` or a loopback address.
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Why a folder name cannot be used, if it cannot.
fn folder_problem(folder: &str) -> Option<String> {
    if folder.is_empty() {
        return Some("no IMAP folder given (INBOX?)".into());
    }
    if !folder
        .chars()
        .all(|c| c.is_ascii() && !c.is_ascii_control())
    {
        return Some(format!(
            "folder {folder:?}: only printable ASCII folder names are supported"
        ));
    }
    None
}

/// The server's own words out of async-imap's `code: …, info: Some("…")`.
fn server_text(text: &str) -> String {
    match text.find("info: Some(\"") {
        Some(at) => {
            let info = &text[at + "info: Some(\"".len()..];
            info.strip_suffix("\")")
                .unwrap_or(info)
                .replace("\\\"", "\"")
        }
        None => text.to_owned(),
    }
}

/// RFC 5530 codes that say "try again later".
fn is_transient(text: &str) -> bool {
    ["[UNAVAILABLE]", "[INUSE]", "[SERVERBUG]", "[LIMIT]"]
        .iter()
        .any(|code| text.contains(code))
}

/// An I/O error's text, unless it is async-imap's parse failure, which quotes the
/// unparsed bytes (possibly a mail's).
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    if text.contains("during parsing of") {
        "could not parse the server's answer".into()
    } else {
        text
    }
}

/// rustls with aws-lc-rs; the platform's roots plus `ca_file`.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("CA file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("CA file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("CA file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("CA file {}: no certificate in it", path.display()));
        }
    }
    if roots.is_empty() {
        return Err("no trusted root certificates: none on this system and no ca_file".into());
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The connection under async-imap: plain TCP (before STARTTLS, or to loopback) or TLS.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Plain(_) => "Transport::Plain",
            Transport::Tls(_) => "Transport::Tls",
        })
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(host: &str, security: ImapSecurity) -> ImapSettings {
        ImapSettings {
            host: host.into(),
            port: 143,
            security,
            user: "seller@example.com".into(),
            password: SecretString::from("hunter2-very-secret"),
            folder: "INBOX".into(),
            ca_file: None,
        }
    }

    fn listed(uids: &[u32]) -> Vec<Listed> {
        uids.iter()
            .map(|&uid| Listed {
                uid,
                size: Some(1000),
            })
            .collect()
    }

    #[test]
    fn the_highest_message_a_server_returns_below_the_range_is_dropped() {
        // `UID FETCH 8:*` when the highest UID is 7: the server answers with UID 7.
        let plan = plan(listed(&[7]), 7, 10);
        assert_eq!(plan, Plan::default());
        let plan = super::plan(listed(&[3, 7, 8, 9]), 7, 10);
        assert_eq!(plan.download, vec![8, 9]);
        assert_eq!(plan.consumed, vec![8, 9]);
        assert!(!plan.more);
    }

    #[test]
    fn oldest_first_at_most_limit_and_more_when_more_wait() {
        let plan = plan(listed(&[12, 10, 11, 14, 13, 11]), 0, 3);
        assert_eq!(plan.download, vec![10, 11, 12]);
        assert_eq!(plan.consumed, vec![10, 11, 12]);
        assert!(plan.more);
        let exactly = super::plan(listed(&[10, 11, 12]), 0, 3);
        assert!(!exactly.more);
        let none = super::plan(listed(&[10]), 0, 0);
        assert!(none.download.is_empty() && none.consumed.is_empty() && none.more);
    }

    #[test]
    fn too_large_mails_are_skipped_without_counting_but_consumed() {
        let big = Some(u32::try_from(MAX_MAIL_BYTES).map_or(u32::MAX, |m| m + 1));
        let listed = vec![
            Listed { uid: 5, size: big },
            Listed {
                uid: 6,
                size: Some(10),
            },
            Listed { uid: 7, size: big },
            Listed { uid: 8, size: None },
            Listed {
                uid: 9,
                size: Some(10),
            },
        ];
        let plan = plan(listed, 4, 2);
        assert_eq!(plan.too_large, vec![5, 7]);
        assert_eq!(plan.download, vec![6, 8]);
        // The checkpoint may pass 5..=8, not 9 (it was not handed out).
        assert_eq!(plan.consumed, vec![5, 6, 7, 8]);
        assert!(plan.more);
        // Only large mails left: all consumed, nothing more.
        let only_big = super::plan(vec![Listed { uid: 20, size: big }], 19, 5);
        assert_eq!(only_big.consumed, vec![20]);
        assert!(only_big.download.is_empty() && !only_big.more);
    }

    #[test]
    fn uid_sets_collapse_runs() {
        assert_eq!(uid_set(&[]), "");
        assert_eq!(uid_set(&[4]), "4");
        assert_eq!(uid_set(&[3, 4, 5, 9, 11, 12]), "3:5,9,11:12");
        assert_eq!(uid_set(&[u32::MAX - 1, u32::MAX]), "4294967294:4294967295");
    }

    #[test]
    fn plaintext_only_to_loopback() {
        for host in [
            "127.0.0.1",
            "127.3.4.5",
            "localhost",
            "LOCALHOST",
            "::1",
            "[::1]",
        ] {
            assert!(
                ImapMailbox::new(settings(host, ImapSecurity::Plain)).is_ok(),
                "{host}"
            );
        }
        for host in [
            "imap.example.com",
            "10.0.0.1",
            "192.168.1.2",
            "localhost.example.com",
        ] {
            match ImapMailbox::new(settings(host, ImapSecurity::Plain)) {
                Err(MailboxError::Setup { detail, .. }) => {
                    assert!(detail.contains("plaintext"), "{detail}")
                }
                other => panic!("{host}: {other:?}"),
            }
        }
    }

    #[test]
    fn debug_and_name_never_show_the_password() {
        let s = settings("127.0.0.1", ImapSecurity::Plain);
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("seller@example.com"));
        let Ok(mailbox) = ImapMailbox::new(s) else {
            panic!("new")
        };
        assert_eq!(mailbox.name(), "imap:seller@example.com@127.0.0.1/INBOX");
        assert!(!format!("{mailbox:?}").contains("hunter2"));
    }

    #[test]
    fn error_details_are_scrubbed_of_the_password_and_classified() {
        let Ok(mailbox) = ImapMailbox::new(settings("127.0.0.1", ImapSecurity::Plain)) else {
            panic!("new")
        };
        let no = ImapError::No(
            "code: None, info: Some(\"[AUTHENTICATIONFAILED] bad hunter2-very-secret\")".into(),
        );
        let e = mailbox.imap_error(Step::Login, no);
        let MailboxError::Credentials { detail, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            detail,
            "user seller@example.com: [AUTHENTICATIONFAILED] bad [REDACTED]"
        );
        let busy = ImapError::No("code: None, info: Some(\"[UNAVAILABLE] try later\")".into());
        assert!(mailbox.imap_error(Step::Login, busy).is_retryable());
        let missing = ImapError::No(
            "code: None, info: Some(\"[NONEXISTENT] Mailbox doesn't exist: X\")".into(),
        );
        assert!(matches!(
            mailbox.imap_error(Step::Examine, missing),
            MailboxError::Setup { .. }
        ));
        let parse =
            std::io::Error::other("Error(..) during parsing of \"* 1 FETCH (BODY[] {5}\r\nhello\"");
        let e = mailbox.imap_error(Step::Fetch, ImapError::Io(parse));
        assert!(!e.to_string().contains("hello"), "{e}");
    }

    #[test]
    fn starttls_and_tls_need_a_usable_ca_file() {
        let mut s = settings("imap.example.com", ImapSecurity::StartTls);
        s.ca_file = Some("/nonexistent/ca.pem".into());
        assert!(matches!(
            ImapMailbox::new(s),
            Err(MailboxError::Setup { .. })
        ));
    }

    #[test]
    fn folder_names_are_checked() {
        let mut s = settings("127.0.0.1", ImapSecurity::Plain);
        s.folder = "Posteingang/Käufer".into();
        assert!(matches!(
            ImapMailbox::new(s.clone()),
            Err(MailboxError::Setup { .. })
        ));
        s.folder = "a\r\nb".into();
        assert!(ImapMailbox::new(s).is_err());
    }
}
