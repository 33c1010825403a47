//! The sandbox's SMTP receiver: a small SMTP server (RFC 5321) on loopback that records
//! every mail it accepts, for `nightdesk demo` ("the replies the sandbox's SMTP receiver
//! got") and the tests of the e-mail senders. It relays nothing and stores nothing on
//! disk.
//!
//! No maintained, widely used Rust SMTP server crate fits a fault-injecting recorder
//! (samotop and tokio-smtp are unmaintained, mailin-embedded is thread-based, the rest
//! are one-release projects), so this is written here on tokio, from the RFC:
//! - greeting `220`; `EHLO` (advertising `8BITMIME`, `SMTPUTF8`, `PIPELINING`, `SIZE`,
//!   `ENHANCEDSTATUSCODES`, `AUTH PLAIN LOGIN`) or `HELO`; `AUTH` (any credentials pass,
//!   none are kept; RFC 4954); `MAIL FROM` (with `SIZE=`, `BODY=`, `SMTPUTF8`),
//!   `RCPT TO`, `DATA` with dot-unstuffing, `RSET`, `NOOP`, `QUIT`;
//! - `500` for an unknown command or a line that is too long, `501` for bad arguments,
//!   `502` for a command it does not implement (`VRFY`, `STARTTLS`, `BDAT`, …),
//!   `503` for a bad sequence, `552` for a message over [`MAX_MESSAGE_BYTES`], `555` for
//!   an unknown MAIL/RCPT parameter; after [`MAX_BAD_COMMANDS`] refused commands it says
//!   `421` and closes;
//! - limits: [`MAX_COMMAND_LINE`] and [`MAX_TEXT_LINE`] octets a line (CRLF included),
//!   [`MAX_RECIPIENTS`] recipients, [`MAX_CONNECTIONS`] connections at once, and a
//!   connection idle for [`IDLE_TIMEOUT`] is closed with `421`.
//!
//! Nothing read from the network can make it panic. Faults ([`SmtpFault`]) are set at
//! run time with [`SmtpReceiver::set_fault`] and apply to every connection until changed.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lock;

/// The largest message accepted (the `SIZE` advertised).
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// The longest command line, CRLF included (RFC 5321 §4.5.3.1.4).
pub const MAX_COMMAND_LINE: usize = 512;
/// The longest line of message text, CRLF included (RFC 5321 §4.5.3.1.6).
pub const MAX_TEXT_LINE: usize = 1000;
pub const MAX_RECIPIENTS: usize = 100;
pub const MAX_CONNECTIONS: usize = 64;
/// Refused commands on one connection before it is closed.
pub const MAX_BAD_COMMANDS: usize = 10;
/// How long a connection may send nothing.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest AUTH response line (RFC 4954 §4).
const AUTH_LINE: usize = 12_288;

const HOSTNAME: &str = "smtp.sandbox.nightdesk";

/// One mail the receiver accepted (or, with [`SmtpFault::DropAfterData`] and
/// [`SmtpFault::StallAfterData`], read whole without answering).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The envelope sender, without `<>` (empty for the null sender).
    pub mail_from: String,
    /// The envelope recipients, without `<>`, in order.
    pub rcpt_to: Vec<String>,
    /// The message as sent, dot-unstuffed, lines ending in CRLF, without the final `.`.
    pub data: Vec<u8>,
}

/// Misbehaviour on demand; see [`SmtpReceiver::set_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmtpFault {
    /// Behave.
    #[default]
    None,
    /// Answer every `RCPT TO` with this code (`550`: no such mailbox, `450`: try later).
    RejectRecipient(u16),
    /// Greet with `421` and close: the server is not taking mail.
    ServiceUnavailable,
    /// Answer every `AUTH` with `535` (credentials refused).
    RejectAuth,
    /// Close the connection, without an answer, when `DATA` arrives: the connection is
    /// lost before any message text was sent.
    DropBeforeData,
    /// Read the whole message, then refuse it with this code (`451`, `554`); not recorded.
    RejectData(u16),
    /// Read the whole message, record it, and close without answering: the ambiguous
    /// case, where the mail was taken but the sender cannot know.
    DropAfterData,
    /// Read the whole message, record it, and never answer (until the client gives up,
    /// the idle timeout or shutdown).
    StallAfterData,
}

impl SmtpFault {
    /// A reply code that is not 4xx or 5xx makes no sense here.
    fn check(self) -> Result<(), String> {
        match self {
            SmtpFault::RejectRecipient(code) | SmtpFault::RejectData(code)
                if !(400..=599).contains(&code) =>
            {
                Err(format!("{self:?}: the code must be 4xx or 5xx"))
            }
            _ => Ok(()),
        }
    }
}

/// A running SMTP receiver. Dropping it stops it without waiting; prefer
/// [`SmtpReceiver::shutdown`].
pub struct SmtpReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    mails: Mutex<Vec<ReceivedMail>>,
    fault: Mutex<SmtpFault>,
    connections: AtomicUsize,
}

impl SmtpReceiver {
    /// Listen on `addr` (tests and the demo use `127.0.0.1:0`) and serve until dropped
    /// or shut down. Returns once listening.
    pub async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            mails: Mutex::new(Vec::new()),
            fault: Mutex::new(SmtpFault::None),
            connections: AtomicUsize::new(0),
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, shared.clone(), cancel.clone()));
        tracing::info!(%addr, "sandbox SMTP receiver listening");
        Ok(Self {
            addr,
            shared,
            cancel,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:PORT`: the plain SMTP URL the senders take.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every mail received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedMail> {
        lock(&self.shared.mails).clone()
    }

    /// Set the fault every connection meets from now on ([`SmtpFault::None`] to behave).
    /// A fault with a code that is not 4xx or 5xx is ignored.
    pub fn set_fault(&self, fault: SmtpFault) {
        match fault.check() {
            Ok(()) => *lock(&self.shared.fault) = fault,
            Err(error) => tracing::warn!(%error, "sandbox SMTP fault ignored"),
        }
    }

    /// Stop listening and close every connection; waits at most five seconds.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
        {
            tracing::warn!("sandbox SMTP receiver did not stop within 5s");
        }
    }
}

impl std::fmt::Debug for SmtpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpReceiver")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for SmtpReceiver {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait a little, go on.
                tracing::warn!(%error, "sandbox SMTP receiver: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let guard = ConnectionGuard::enter(&shared);
        let shared = shared.clone();
        let cancel = cancel.child_token();
        tokio::spawn(async move {
            let mut session = Session::new(stream, shared, cancel);
            let over_limit = guard.count > MAX_CONNECTIONS;
            if let Err(error) = session.run(over_limit).await {
                tracing::debug!(%error, "sandbox SMTP connection ended");
            }
            drop(guard);
        });
    }
}

/// Counts a connection while it lives.
struct ConnectionGuard {
    shared: Arc<Shared>,
    /// Connections open, this one included.
    count: usize,
}

impl ConnectionGuard {
    fn enter(shared: &Arc<Shared>) -> Self {
        let count = shared.connections.fetch_add(1, Ordering::AcqRel) + 1;
        Self {
            shared: shared.clone(),
            count,
        }
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One line read from the client.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// Without its line end (CRLF, or a bare LF).
    Complete(Vec<u8>),
    /// Longer than allowed; read to its end and dropped.
    TooLong,
    /// The client closed (a partial last line is dropped).
    Closed,
}

/// Read one line of at most `limit` octets (line end included) without holding more
/// than that in memory.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, limit: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::Closed);
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..=end], true),
            None => (available, false),
        };
        if !too_long {
            if line.len() + chunk.len() > limit {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len();
        reader.consume(used);
        if done {
            break;
        }
    }
    if too_long {
        return Ok(Line::TooLong);
    }
    line.pop(); // the LF
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Line::Complete(line))
}

/// What the client asked for, and what the dialogue goes on with.
enum Next {
    Continue,
    Close,
}

struct Session {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: OwnedWriteHalf,
    shared: Arc<Shared>,
    cancel: CancellationToken,
    greeted: bool,
    authenticated: bool,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    bad_commands: usize,
}

impl Session {
    fn new(stream: TcpStream, shared: Arc<Shared>, cancel: CancellationToken) -> Self {
        let (read, writer) = stream.into_split();
        Self {
            reader: BufReader::new(read),
            writer,
            shared,
            cancel,
            greeted: false,
            authenticated: false,
            mail_from: None,
            rcpt_to: Vec::new(),
            bad_commands: 0,
        }
    }

    fn fault(&self) -> SmtpFault {
        *lock(&self.shared.fault)
    }

    async fn run(&mut self, over_limit: bool) -> std::io::Result<()> {
        if over_limit {
            return self
                .reply(421, "4.3.2 too many connections, try later")
                .await;
        }
        if self.fault() == SmtpFault::ServiceUnavailable {
            return self
                .reply(421, &format!("4.3.2 {HOSTNAME} service not available"))
                .await;
        }
        self.reply(220, &format!("{HOSTNAME} ESMTP nightdesk sandbox"))
            .await?;
        loop {
            let line = match self.next_line(MAX_COMMAND_LINE).await? {
                Some(line) => line,
                None => return Ok(()),
            };
            let next = match line {
                Line::Closed => return Ok(()),
                Line::TooLong => self.refuse(500, "5.5.2 line too long").await?,
                Line::Complete(line) => self.command(&String::from_utf8_lossy(&line)).await?,
            };
            if let Next::Close = next {
                return Ok(());
            }
        }
    }

    /// The next line, or `None` when the receiver stops or the client idled too long
    /// (told with `421`).
    async fn next_line(&mut self, limit: usize) -> std::io::Result<Option<Line>> {
        let read = tokio::select! {
            () = self.cancel.cancelled() => {
                let _ = self.reply(421, "4.3.2 shutting down").await;
                return Ok(None);
            }
            read = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut self.reader, limit)) => read,
        };
        match read {
            Ok(line) => line.map(Some),
            Err(_) => {
                let _ = self.reply(421, "4.4.2 idle too long, closing").await;
                Ok(None)
            }
        }
    }

    async fn reply(&mut self, code: u16, text: &str) -> std::io::Result<()> {
        self.write(format!("{code} {text}\r\n").as_bytes()).await
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match tokio::time::timeout(IDLE_TIMEOUT, self.writer.write_all(bytes)).await {
            Ok(written) => written,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client does not read",
            )),
        }
    }

    /// A refused command; too many of them end the connection.
    async fn refuse(&mut self, code: u16, text: &str) -> std::io::Result<Next> {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            self.reply(421, "4.7.0 too many errors, closing").await?;
            return Ok(Next::Close);
        }
        self.reply(code, text).await?;
        Ok(Next::Continue)
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    async fn command(&mut self, line: &str) -> std::io::Result<Next> {
        let (verb, argument) = match line.split_once(' ') {
            Some((verb, argument)) => (verb, argument.trim()),
            None => (line.trim(), ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" | "HELO" if argument.is_empty() => {
                self.refuse(501, "5.5.4 a domain or address literal is needed")
                    .await
            }
            "EHLO" => {
                self.reset();
                self.greeted = true;
                let text = format!(
                    "250-{HOSTNAME} greets {argument}\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n\
                     250-PIPELINING\r\n250-SIZE {MAX_MESSAGE_BYTES}\r\n250-AUTH PLAIN LOGIN\r\n\
                     250 ENHANCEDSTATUSCODES\r\n"
                );
                self.write(text.as_bytes()).await?;
                Ok(Next::Continue)
            }
            "HELO" => {
                self.reset();
                self.greeted = true;
                self.reply(250, HOSTNAME).await?;
                Ok(Next::Continue)
            }
            "MAIL" => self.mail(argument).await,
            "RCPT" => self.rcpt(argument).await,
            "DATA" if !argument.is_empty() => {
                self.refuse(501, "5.5.4 DATA takes no argument").await
            }
            "DATA" => self.data().await,
            "RSET" => {
                self.reset();
                self.reply(250, "2.0.0 OK").await?;
                Ok(Next::Continue)
            }
            "NOOP" => {
                self.reply(250, "2.0.0 OK").await?;
                Ok(Next::Continue)
            }
            "QUIT" => {
                self.reply(221, "2.0.0 bye").await?;
                Ok(Next::Close)
            }
            "AUTH" => self.auth(argument).await,
            "VRFY" | "EXPN" | "HELP" | "TURN" | "ETRN" | "STARTTLS" | "BDAT" => {
                self.refuse(502, "5.5.1 command not implemented").await
            }
            _ => self.refuse(500, "5.5.2 command unrecognized").await,
        }
    }

    /// AUTH PLAIN or LOGIN (RFC 4954), with or without an initial response; any
    /// credentials pass unless [`SmtpFault::RejectAuth`]. Nothing of them is kept.
    async fn auth(&mut self, argument: &str) -> std::io::Result<Next> {
        if !self.greeted {
            return self.refuse(503, "5.5.1 EHLO first").await;
        }
        if self.authenticated {
            return self.refuse(503, "5.5.1 already authenticated").await;
        }
        if self.mail_from.is_some() {
            return self.refuse(503, "5.5.1 a transaction is in progress").await;
        }
        let (mechanism, initial) = match argument.split_once(' ') {
            Some((mechanism, initial)) => (mechanism, Some(initial.trim())),
            None => (argument, None),
        };
        let prompts: &[&str] = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" if initial.is_some() => &[],
            "PLAIN" => &[""],
            // "Username:" and "Password:", base64.
            "LOGIN" if initial.is_some() => &["UGFzc3dvcmQ6"],
            "LOGIN" => &["VXNlcm5hbWU6", "UGFzc3dvcmQ6"],
            "" => return self.refuse(501, "5.5.4 syntax: AUTH mechanism").await,
            _ => return self.refuse(504, "5.5.4 mechanism not supported").await,
        };
        if initial == Some("*") {
            return self.refuse(501, "5.0.0 authentication cancelled").await;
        }
        for prompt in prompts {
            self.reply(334, prompt).await?;
            match self.next_line(AUTH_LINE).await? {
                Some(Line::Complete(line)) if line == b"*" => {
                    return self.refuse(501, "5.0.0 authentication cancelled").await;
                }
                Some(Line::Complete(_)) => {}
                Some(Line::TooLong) => return self.refuse(500, "5.5.6 line too long").await,
                Some(Line::Closed) | None => return Ok(Next::Close),
            }
        }
        if self.fault() == SmtpFault::RejectAuth {
            return self
                .refuse(535, "5.7.8 authentication credentials invalid")
                .await;
        }
        self.authenticated = true;
        self.reply(235, "2.7.0 authentication succeeded").await?;
        Ok(Next::Continue)
    }

    async fn mail(&mut self, argument: &str) -> std::io::Result<Next> {
        if !self.greeted {
            return self.refuse(503, "5.5.1 EHLO or HELO first").await;
        }
        if self.mail_from.is_some() {
            return self.refuse(503, "5.5.1 a transaction is in progress").await;
        }
        let Some((address, parameters)) = strip_keyword(argument, "FROM:").and_then(path) else {
            return self.refuse(501, "5.5.4 syntax: MAIL FROM:<address>").await;
        };
        if !address.is_empty() && !is_address(&address) {
            return self.refuse(553, "5.1.7 bad sender address").await;
        }
        for parameter in parameters.split_whitespace() {
            let (key, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            match key.to_ascii_uppercase().as_str() {
                "SIZE" => match value.parse::<u64>() {
                    Ok(size) if size > MAX_MESSAGE_BYTES as u64 => {
                        return self.refuse(552, "5.3.4 message too big").await;
                    }
                    Ok(_) => {}
                    Err(_) => return self.refuse(501, "5.5.4 bad SIZE").await,
                },
                "BODY"
                    if value.eq_ignore_ascii_case("7BIT")
                        || value.eq_ignore_ascii_case("8BITMIME") => {}
                "SMTPUTF8" if value.is_empty() => {}
                _ => return self.refuse(555, "5.5.4 parameter not recognized").await,
            }
        }
        self.mail_from = Some(address);
        self.reply(250, "2.1.0 OK").await?;
        Ok(Next::Continue)
    }

    async fn rcpt(&mut self, argument: &str) -> std::io::Result<Next> {
        if self.mail_from.is_none() {
            return self.refuse(503, "5.5.1 MAIL first").await;
        }
        let Some((address, parameters)) = strip_keyword(argument, "TO:").and_then(path) else {
            return self.refuse(501, "5.5.4 syntax: RCPT TO:<address>").await;
        };
        if !is_address(&address) && !address.eq_ignore_ascii_case("postmaster") {
            return self.refuse(553, "5.1.3 bad recipient address").await;
        }
        if !parameters.trim().is_empty() {
            return self.refuse(555, "5.5.4 parameter not recognized").await;
        }
        if self.rcpt_to.len() >= MAX_RECIPIENTS {
            self.reply(452, "4.5.3 too many recipients").await?;
            return Ok(Next::Continue);
        }
        if let SmtpFault::RejectRecipient(code) = self.fault() {
            let text = if code < 500 {
                "4.2.1 mailbox busy, try later"
            } else {
                "5.1.1 no such mailbox"
            };
            self.reply(code, text).await?;
            return Ok(Next::Continue);
        }
        self.rcpt_to.push(address);
        self.reply(250, "2.1.5 OK").await?;
        Ok(Next::Continue)
    }

    async fn data(&mut self) -> std::io::Result<Next> {
        if self.mail_from.is_none() {
            return self.refuse(503, "5.5.1 MAIL first").await;
        }
        if self.rcpt_to.is_empty() {
            return self.refuse(503, "5.5.1 RCPT first").await;
        }
        if self.fault() == SmtpFault::DropBeforeData {
            return Ok(Next::Close);
        }
        self.reply(354, "end data with <CR><LF>.<CR><LF>").await?;
        let mut data = Vec::new();
        let mut too_long = false;
        let mut too_big = false;
        loop {
            let line = match self.next_line(MAX_TEXT_LINE).await? {
                Some(Line::Complete(line)) => line,
                Some(Line::TooLong) => {
                    too_long = true;
                    continue;
                }
                // Closed mid-message: nothing was taken.
                Some(Line::Closed) | None => return Ok(Next::Close),
            };
            if line == b"." {
                break;
            }
            let text = line.strip_prefix(b".").unwrap_or(&line);
            if data.len() + text.len() + 2 > MAX_MESSAGE_BYTES {
                too_big = true;
            } else if !too_big {
                data.extend_from_slice(text);
                data.extend_from_slice(b"\r\n");
            }
        }
        let mail = ReceivedMail {
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            data,
        };
        if too_long {
            self.reply(500, "5.5.2 line too long").await?;
            return Ok(Next::Continue);
        }
        if too_big {
            self.reply(552, "5.3.4 message too big").await?;
            return Ok(Next::Continue);
        }
        match self.fault() {
            SmtpFault::RejectData(code) => {
                let text = if code < 500 {
                    "4.3.0 cannot take the message now"
                } else {
                    "5.7.1 message refused"
                };
                self.reply(code, text).await?;
                Ok(Next::Continue)
            }
            SmtpFault::DropAfterData => {
                self.record(mail);
                Ok(Next::Close)
            }
            SmtpFault::StallAfterData => {
                self.record(mail);
                // Say nothing; wait until the client gives up, idles out or we stop.
                while let Some(Line::Complete(_) | Line::TooLong) =
                    self.next_line(MAX_TEXT_LINE).await?
                {}
                Ok(Next::Close)
            }
            _ => {
                let id = self.record(mail);
                self.reply(250, &format!("2.0.0 OK: queued as {id}"))
                    .await?;
                Ok(Next::Continue)
            }
        }
    }

    /// Keep `mail`; its number (1 for the first).
    fn record(&self, mail: ReceivedMail) -> usize {
        tracing::debug!(bytes = mail.data.len(), "sandbox SMTP receiver got a mail");
        let mut mails = lock(&self.shared.mails);
        mails.push(mail);
        mails.len()
    }
}

/// `argument` after `keyword` (ASCII, any case), or `None`.
fn strip_keyword<'a>(argument: &'a str, keyword: &str) -> Option<&'a str> {
    let head = argument.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword)
        .then(|| argument.get(keyword.len()..))
        .flatten()
}

/// `<address> parameters` (RFC 5321 Path: a source route `@a,@b:` is dropped); the
/// address without brackets and the rest.
fn path(text: &str) -> Option<(String, &str)> {
    let text = text.trim_start().strip_prefix('<')?;
    let (inner, rest) = text.split_once('>')?;
    let address = match inner.strip_prefix('@') {
        Some(routed) => routed.split_once(':')?.1,
        None => inner,
    };
    let clean = address
        .chars()
        .all(|c| !c.is_whitespace() && !c.is_control());
    clean.then(|| (address.to_owned(), rest))
}

/// `local@domain`, both parts present.
fn is_address(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::header::ContentType;
    use lettre::transport::smtp::client::Tls;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    use tokio::io::AsyncReadExt;

    const WAIT: Duration = Duration::from_secs(20);

    async fn receiver() -> SmtpReceiver {
        match SmtpReceiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await {
            Ok(receiver) => receiver,
            Err(e) => panic!("start the receiver: {e}"),
        }
    }

    fn client(receiver: &SmtpReceiver) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(receiver.addr().port())
            .tls(Tls::None)
            .timeout(Some(Duration::from_secs(5)))
            .build()
    }

    fn mail(body: &str) -> Message {
        Message::builder()
            .from(
                "Shop <support@shop.example>"
                    .parse()
                    .unwrap_or_else(|e| panic!("{e}")),
            )
            .to("buyer-relay@marketplace.amazon.com"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")))
            .subject("Re: Wo bleibt mein Paket?")
            .message_id(Some("<r1@shop.example>".into()))
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_owned())
            .unwrap_or_else(|e| panic!("a message: {e}"))
    }

    async fn send(
        receiver: &SmtpReceiver,
        message: Message,
    ) -> Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error> {
        match tokio::time::timeout(WAIT, client(receiver).send(message)).await {
            Ok(sent) => sent,
            Err(_) => panic!("no answer within {WAIT:?}"),
        }
    }

    #[tokio::test]
    async fn a_delivered_mail_is_recorded_with_its_headers() {
        let receiver = receiver().await;
        let sent = send(&receiver, mail("Hallo,\nes ist unterwegs.\n")).await;
        let Ok(response) = sent else {
            panic!("send: {sent:?}");
        };
        assert_eq!(u16::from(response.code()), 250);
        let received = receiver.received();
        let [got] = received.as_slice() else {
            panic!("{received:?}");
        };
        assert_eq!(got.mail_from, "support@shop.example");
        assert_eq!(got.rcpt_to, ["buyer-relay@marketplace.amazon.com"]);
        let text = String::from_utf8_lossy(&got.data);
        for header in [
            "From: Shop <support@shop.example>\r\n",
            "To: buyer-relay@marketplace.amazon.com\r\n",
            "Subject: Re: Wo bleibt mein Paket?\r\n",
            "Message-ID: <r1@shop.example>\r\n",
        ] {
            assert!(text.contains(header), "{header:?} in {text}");
        }
        // lettre ends the text with CRLF before the final `.`: one blank line more.
        assert!(
            text.ends_with("\r\n\r\nHallo,\r\nes ist unterwegs.\r\n\r\n"),
            "{text:?}"
        );
        receiver.shutdown().await;
    }

    #[tokio::test]
    async fn dot_stuffed_lines_come_back_as_written() {
        let receiver = receiver().await;
        let body = ".starts with a dot\n.\n..two\nend.\n";
        let sent = send(&receiver, mail(body)).await;
        assert!(sent.is_ok(), "{sent:?}");
        let received = receiver.received();
        let Some(got) = received.first() else {
            panic!("nothing received");
        };
        let text = String::from_utf8_lossy(&got.data);
        assert!(
            text.ends_with("\r\n\r\n.starts with a dot\r\n.\r\n..two\r\nend.\r\n\r\n"),
            "{text:?}"
        );
    }

    #[tokio::test]
    async fn each_fault_does_what_it_says() {
        let receiver = receiver().await;

        receiver.set_fault(SmtpFault::RejectRecipient(550));
        let error = send(&receiver, mail("x")).await.err();
        assert!(
            error.as_ref().is_some_and(|e| e.is_permanent()),
            "{error:?}"
        );
        assert_eq!(error.and_then(|e| e.status()).map(u16::from), Some(550));

        receiver.set_fault(SmtpFault::RejectRecipient(450));
        let error = send(&receiver, mail("x")).await.err();
        assert_eq!(error.and_then(|e| e.status()).map(u16::from), Some(450));

        receiver.set_fault(SmtpFault::ServiceUnavailable);
        let error = send(&receiver, mail("x")).await.err();
        assert_eq!(error.and_then(|e| e.status()).map(u16::from), Some(421));

        receiver.set_fault(SmtpFault::RejectData(451));
        let error = send(&receiver, mail("x")).await.err();
        assert_eq!(error.and_then(|e| e.status()).map(u16::from), Some(451));

        receiver.set_fault(SmtpFault::DropBeforeData);
        let error = send(&receiver, mail("x")).await.err();
        assert!(
            error.as_ref().is_some_and(|e| e.status().is_none()),
            "{error:?}"
        );
        assert!(receiver.received().is_empty(), "refused mail was recorded");

        receiver.set_fault(SmtpFault::DropAfterData);
        let error = send(&receiver, mail("dropped")).await.err();
        assert!(
            error.as_ref().is_some_and(|e| e.status().is_none()),
            "{error:?}"
        );
        assert_eq!(receiver.received().len(), 1, "the dropped mail is recorded");

        receiver.set_fault(SmtpFault::StallAfterData);
        let stalled = tokio::time::timeout(
            Duration::from_millis(500),
            client(&receiver).send(mail("s")),
        )
        .await;
        assert!(stalled.is_err(), "answered: {stalled:?}");
        assert_eq!(receiver.received().len(), 2, "the stalled mail is recorded");

        // Codes that are no SMTP refusal are ignored.
        receiver.set_fault(SmtpFault::None);
        receiver.set_fault(SmtpFault::RejectRecipient(250));
        let sent = send(&receiver, mail("fine")).await;
        assert!(sent.is_ok(), "{sent:?}");
        assert_eq!(receiver.received().len(), 3);
    }

    /// A raw client: sends `input` in one write (pipelined), reads until the server
    /// closes.
    async fn dialogue(receiver: &SmtpReceiver, input: &[u8]) -> String {
        let work = async {
            let mut stream = TcpStream::connect(receiver.addr()).await?;
            stream.write_all(input).await?;
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await?;
            Ok::<_, std::io::Error>(String::from_utf8_lossy(&out).into_owned())
        };
        match tokio::time::timeout(WAIT, work).await {
            Ok(Ok(text)) => text,
            Ok(Err(e)) => panic!("raw dialogue: {e}"),
            Err(_) => panic!("raw dialogue: no end within {WAIT:?}"),
        }
    }

    fn codes(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .filter_map(|l| l.get(..3))
            .collect()
    }

    #[tokio::test]
    async fn the_protocol_refuses_what_it_must() {
        let receiver = receiver().await;
        let long = format!("NOOP {}\r\n", "x".repeat(600));
        let input = [
            "MAIL FROM:<a@b.example>\r\n", // 503: no EHLO yet
            "EHLO\r\n",                    // 501
            "HELO client.example\r\n",
            "RCPT TO:<c@d.example>\r\n", // 503: no MAIL yet
            "DATA\r\n",                  // 503
            "FROB\r\n",                  // 500
            "VRFY someone\r\n",          // 502
            long.as_str(),               // 500: line too long
            "QUIT\r\n",
        ]
        .concat();
        let text = dialogue(&receiver, input.as_bytes()).await;
        assert_eq!(
            codes(&text),
            [
                "220", "503", "501", "250", "503", "503", "500", "502", "500", "221"
            ],
            "{text}"
        );

        let input = [
            "EHLO client.example\r\n",
            "MAIL FROM:<a@b.example> SIZE=99999999999\r\n", // 552
            "MAIL FROM:<a@b.example> FOO=1\r\n",            // 555
            "MAIL FROM:a@b.example\r\n",                    // 501
            "MAIL FROM:<a@b.example> BODY=8BITMIME SMTPUTF8\r\n",
            "MAIL FROM:<a@b.example>\r\n", // 503: nested
            "RCPT TO:<c@d.example>\r\n",
            "RSET\r\n",
            "DATA\r\n", // 503 after RSET
            "MAIL FROM:<>\r\n",
            "RCPT TO:<@relay.example:c@d.example>\r\n",
            "RCPT TO:<nobody>\r\n", // 553
            "DATA\r\n",
            "Subject: x\r\n\r\n..stuffed\r\n.\r\n",
            "NOOP\r\n",
            "QUIT\r\n",
        ]
        .concat();
        let text = dialogue(&receiver, input.as_bytes()).await;
        assert_eq!(
            codes(&text),
            [
                "220", "250", "552", "555", "501", "250", "503", "250", "250", "503", "250", "250",
                "553", "354", "250", "250", "221"
            ],
            "{text}"
        );
        let received = receiver.received();
        let [got] = received.as_slice() else {
            panic!("{received:?}");
        };
        assert_eq!(got.mail_from, "");
        assert_eq!(got.rcpt_to, ["c@d.example"]);
        assert_eq!(got.data, b"Subject: x\r\n\r\n.stuffed\r\n");
    }

    #[tokio::test]
    async fn auth_takes_any_credentials_unless_refused() {
        let receiver = receiver().await;
        let input = [
            "AUTH PLAIN AHVzZXIAcGFzcw==\r\n", // 503: no EHLO yet
            "EHLO client.example\r\n",
            "AUTH CRAM-MD5\r\n", // 504
            "AUTH LOGIN\r\n",
            "dXNlcg==\r\n",
            "cGFzcw==\r\n",
            "AUTH PLAIN AHVzZXIAcGFzcw==\r\n", // 503: already
            "QUIT\r\n",
        ]
        .concat();
        let text = dialogue(&receiver, input.as_bytes()).await;
        assert_eq!(
            codes(&text),
            [
                "220", "503", "250", "504", "334", "334", "235", "503", "221"
            ],
            "{text}"
        );

        receiver.set_fault(SmtpFault::RejectAuth);
        let input = "EHLO c.example\r\nAUTH PLAIN\r\nAHVzZXIAcGFzcw==\r\nQUIT\r\n";
        let text = dialogue(&receiver, input.as_bytes()).await;
        assert_eq!(codes(&text), ["220", "250", "334", "535", "221"], "{text}");
    }

    #[tokio::test]
    async fn too_many_errors_close_and_shutdown_stops_listening() {
        let receiver = receiver().await;
        let text = dialogue(&receiver, "FROB\r\n".repeat(20).as_bytes()).await;
        let codes = codes(&text);
        assert_eq!(codes.len(), MAX_BAD_COMMANDS + 1, "{text}");
        assert_eq!(codes.last(), Some(&"421"), "{text}");

        let addr = receiver.addr();
        receiver.shutdown().await;
        assert!(TcpStream::connect(addr).await.is_err(), "still listening");
    }

    #[tokio::test]
    async fn lines_are_read_within_their_limit() {
        let mut input: &[u8] = b"short\r\nbare lf\nthis one is far too long\r\npartial";
        let mut reader = tokio::io::BufReader::with_capacity(4, &mut input);
        let mut lines = Vec::new();
        loop {
            match read_line(&mut reader, 12).await {
                Ok(Line::Closed) => break,
                Ok(line) => lines.push(line),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(
            lines,
            [
                Line::Complete(b"short".to_vec()),
                Line::Complete(b"bare lf".to_vec()),
                Line::TooLong,
            ]
        );
    }
}
