//! The IMAP mailbox against a real server: Dovecot, started by `.ci/dovecot.sh`, named by
//! `TEST_IMAP_URL` (`imap://nightdesk:nightdesk-imap-test@127.0.0.1:10143`, as `.ci/run`
//! sets it). `TEST_IMAPS_CA` (the test CA's PEM) and `TEST_IMAPS_PORT` add the TLS and
//! STARTTLS tests. Without `TEST_IMAP_URL` every test says it is skipped and passes.
//!
//! Each test works in a folder of its own (a random name), created and appended to over a
//! second, plain IMAP connection, and deleted at the end, so tests run in parallel.
#![forbid(unsafe_code)]

use std::error::Error;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use futures_util::TryStreamExt;
use nightdesk::sources::mail::{
    Batch, ImapMailbox, ImapSecurity, ImapSettings, MailCheckpoint, Mailbox, MailboxError,
};
use secrecy::SecretString;
use tokio::net::TcpStream;
use tokio::time::timeout;
use url::Url;

type TestResult = Result<(), Box<dyn Error>>;
type Admin = async_imap::Session<TcpStream>;

/// The longest any one step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct Server {
    host: String,
    port: u16,
    user: String,
    password: String,
    /// The IMAPS port and the CA that signed the server's certificate.
    imaps: Option<(u16, PathBuf)>,
}

/// The server from the environment, or `None` (and a line saying why) to skip.
fn server(test: &str) -> Result<Option<Server>, Box<dyn Error>> {
    let Ok(raw) = std::env::var("TEST_IMAP_URL") else {
        println!(
            "{test}: IMAP tests skipped: TEST_IMAP_URL is not set (run .ci/dovecot.sh and \
             export TEST_IMAP_URL=imap://nightdesk:nightdesk-imap-test@127.0.0.1:10143, as \
             .ci/run does)"
        );
        return Ok(None);
    };
    let url = Url::parse(&raw).map_err(|e| format!("TEST_IMAP_URL: {e}"))?;
    if url.scheme() != "imap" {
        return Err("TEST_IMAP_URL: the scheme must be imap:// (plaintext, loopback)".into());
    }
    let host = url
        .host_str()
        .ok_or("TEST_IMAP_URL: no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let user = percent_decode(url.username())?;
    let password = percent_decode(url.password().ok_or("TEST_IMAP_URL: no password")?)?;
    let imaps = match std::env::var("TEST_IMAPS_CA") {
        Ok(ca) => {
            let port = match std::env::var("TEST_IMAPS_PORT") {
                Ok(p) => p.parse().map_err(|e| format!("TEST_IMAPS_PORT: {e}"))?,
                Err(_) => 993,
            };
            Some((port, PathBuf::from(ca)))
        }
        Err(_) => None,
    };
    Ok(Some(Server {
        host,
        port: url.port().unwrap_or(143),
        user,
        password,
        imaps,
    }))
}

/// A URL's user or password as typed (`%40` → `@`).
fn percent_decode(s: &str) -> Result<String, Box<dyn Error>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("TEST_IMAP_URL: a bad % escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|e| format!("TEST_IMAP_URL: {e}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(String::from_utf8(out).map_err(|e| format!("TEST_IMAP_URL: {e}"))?)
}

/// `fut` within [`STEP`], its error named after `what`.
async fn step<T, E: std::fmt::Display>(
    what: &str,
    fut: impl Future<Output = Result<T, E>>,
) -> Result<T, Box<dyn Error>> {
    match timeout(STEP, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}").into()),
        Err(_) => Err(format!("{what}: nothing within {} s", STEP.as_secs()).into()),
    }
}

/// A second connection that sets the scene: create, append, delete.
async fn admin(server: &Server) -> Result<Admin, Box<dyn Error>> {
    let tcp = step(
        "admin connect",
        TcpStream::connect((server.host.as_str(), server.port)),
    )
    .await?;
    let mut client = async_imap::Client::new(tcp);
    step("admin greeting", client.read_response()).await?;
    step("admin login", async {
        client
            .login(&server.user, &server.password)
            .await
            .map_err(|(e, _)| e)
    })
    .await
}

fn settings(server: &Server, folder: &str) -> ImapSettings {
    ImapSettings {
        host: server.host.clone(),
        port: server.port,
        security: ImapSecurity::Plain,
        user: server.user.clone(),
        password: SecretString::from(server.password.clone()),
        folder: folder.to_owned(),
        ca_file: None,
    }
}

fn mailbox(server: &Server, folder: &str) -> Result<ImapMailbox, Box<dyn Error>> {
    Ok(ImapMailbox::new(settings(server, folder))?)
}

/// A buyer message as Amazon relays it, CRLF line ends as IMAP stores them.
fn relay_mail(n: u32, folder: &str) -> Vec<u8> {
    let order = format!("114-{:07}-{:07}", 1_234_500 + n, 7_654_300 + n);
    format!(
        "Return-Path: <abc123@marketplace.amazon.com>\r\n\
         From: \"Jane\" <abc123@marketplace.amazon.com>\r\n\
         To: seller@example.com\r\n\
         Subject: Question about order {order}\r\n\
         Date: Sun, 22 Nov 2026 12:{:02}:00 +0000\r\n\
         Message-ID: <{n}.{folder}@marketplace.amazon.com>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=UTF-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\
         \r\n\
         Hello, where is my parcel for order {order}? It was due on Friday.\r\n\
         Thanks, Jane\r\n",
        n % 60
    )
    .into_bytes()
}

async fn append(admin: &mut Admin, folder: &str, mails: &[Vec<u8>]) -> TestResult {
    for mail in mails {
        step("APPEND", admin.append(folder, None, None, mail)).await?;
    }
    Ok(())
}

/// Runs `body` with a fresh folder of its own, and deletes the folder afterwards, also
/// when `body` failed.
async fn with_folder(
    server: &Server,
    tag: &str,
    body: impl AsyncFnOnce(&mut Admin, &str) -> TestResult,
) -> TestResult {
    let folder = format!("nightdesk-test-{tag}-{:08x}", rand::random::<u32>());
    let mut admin = admin(server).await?;
    step("CREATE", admin.create(&folder)).await?;
    let result = match timeout(Duration::from_secs(180), body(&mut admin, &folder)).await {
        Ok(result) => result,
        Err(_) => Err(format!("{tag}: the test took longer than 180 s").into()),
    };
    // The folder may have been deleted (and re-created) by the test: a fresh connection.
    let cleanup = async {
        let mut admin = self::admin(server).await?;
        step("DELETE", admin.delete(&folder)).await?;
        let _ = step("LOGOUT", admin.logout()).await;
        Ok::<_, Box<dyn Error>>(())
    }
    .await;
    result?;
    cleanup
}

async fn fetch(
    mailbox: &ImapMailbox,
    since: &MailCheckpoint,
    limit: usize,
) -> Result<Batch, Box<dyn Error>> {
    step("fetch", mailbox.fetch(since, limit)).await
}

fn positions(batch: &Batch) -> Vec<u32> {
    batch
        .mails
        .iter()
        .filter_map(|m| m.position.parse().ok())
        .collect()
}

fn raws(batch: &Batch) -> Vec<Vec<u8>> {
    batch.mails.iter().map(|m| m.raw.clone()).collect()
}

#[tokio::test]
async fn hands_out_every_mail_oldest_first_bytes_intact_then_nothing() -> TestResult {
    let Some(server) = server("fetch")? else {
        return Ok(());
    };
    with_folder(&server, "all", async |admin, folder| {
        let mails: Vec<Vec<u8>> = (1..=3).map(|n| relay_mail(n, folder)).collect();
        append(admin, folder, &mails).await?;
        let mailbox = mailbox(&server, folder)?;
        assert_eq!(
            mailbox.name(),
            format!("imap:{}@{}/{folder}", server.user, server.host)
        );

        let batch = fetch(&mailbox, &MailCheckpoint::default(), 10).await?;
        assert_eq!(
            raws(&batch),
            mails,
            "every mail, oldest first, byte for byte"
        );
        let uids = positions(&batch);
        assert_eq!(uids.len(), 3);
        assert!(uids.windows(2).all(|w| w[0] < w[1]), "{uids:?}");
        assert!(!batch.more);
        assert_eq!(batch.restarted, None);
        assert!(batch.checkpoint.uid_validity.is_some());
        assert_eq!(batch.checkpoint.last_uid, uids.last().copied());
        step("commit", mailbox.commit(&[uids[0].to_string()])).await?;

        // From the returned checkpoint: nothing (the server answers `UID FETCH n:*`
        // with the last mail, whose UID is below n).
        let again = fetch(&mailbox, &batch.checkpoint, 10).await?;
        assert!(again.mails.is_empty(), "{again:?}");
        assert_eq!(again.checkpoint, batch.checkpoint);
        assert!(!again.more);

        // Read-only: no mail got the Seen flag, none is gone.
        step("SELECT", admin.select(folder)).await?;
        let flags = step("FETCH FLAGS", async {
            admin
                .uid_fetch("1:*", "(UID FLAGS)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        assert_eq!(flags.len(), 3);
        assert!(
            flags.iter().all(|f| !f.flags().any(|f| f == Flag::Seen)),
            "fetching set \\Seen"
        );

        // A mail that arrives and is deleted before the next read: UIDNEXT moved on, and
        // `UID FETCH n:*` above every remaining UID answers with the last mail (UID < n),
        // which must not be handed out again.
        append(admin, folder, &[relay_mail(4, folder)]).await?;
        step("SELECT", admin.select(folder)).await?;
        let next_uid = uids[2] + 1;
        step("STORE \\Deleted", async {
            admin
                .uid_store(next_uid.to_string(), "+FLAGS.SILENT (\\Deleted)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        step("EXPUNGE", async {
            admin.expunge().await?.try_collect::<Vec<_>>().await
        })
        .await?;
        let after_expunge = fetch(&mailbox, &batch.checkpoint, 10).await?;
        assert!(after_expunge.mails.is_empty(), "{after_expunge:?}");
        assert_eq!(after_expunge.checkpoint, batch.checkpoint);
        step("CLOSE", admin.close()).await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn empty_folder_records_uidvalidity_and_keeps_the_checkpoint() -> TestResult {
    let Some(server) = server("empty")? else {
        return Ok(());
    };
    with_folder(&server, "empty", async |_admin, folder| {
        let mailbox = mailbox(&server, folder)?;
        let batch = fetch(&mailbox, &MailCheckpoint::default(), 10).await?;
        assert!(batch.mails.is_empty() && !batch.more);
        assert!(batch.checkpoint.uid_validity.is_some());
        assert_eq!(batch.checkpoint.last_uid, None);
        let since = MailCheckpoint {
            uid_validity: batch.checkpoint.uid_validity,
            last_uid: Some(41),
        };
        let batch = fetch(&mailbox, &since, 10).await?;
        assert_eq!(batch.checkpoint, since);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_restart_mid_mailbox_reads_nothing_twice_and_misses_nothing() -> TestResult {
    let Some(server) = server("restart")? else {
        return Ok(());
    };
    with_folder(&server, "restart", async |admin, folder| {
        let mails: Vec<Vec<u8>> = (1..=7).map(|n| relay_mail(n, folder)).collect();
        append(admin, folder, &mails[..5]).await?;

        let first = mailbox(&server, folder)?;
        let batch = fetch(&first, &MailCheckpoint::default(), 2).await?;
        assert_eq!(raws(&batch), mails[..2]);
        assert!(batch.more, "3 more wait");
        let saved = batch.checkpoint.clone();
        drop(first);

        // A new process, from the saved checkpoint.
        let second = mailbox(&server, folder)?;
        let batch = fetch(&second, &saved, 10).await?;
        assert_eq!(raws(&batch), mails[2..5], "exactly the remaining 3");
        assert!(!batch.more);
        assert_eq!(batch.restarted, None);

        append(admin, folder, &mails[5..]).await?;
        let newer = fetch(&second, &batch.checkpoint, 10).await?;
        assert_eq!(raws(&newer), mails[5..], "exactly the 2 new ones");
        assert!(!newer.more);
        let nothing = fetch(&second, &newer.checkpoint, 10).await?;
        assert!(nothing.mails.is_empty());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_rebuilt_folder_is_read_from_the_start_and_says_so() -> TestResult {
    let Some(server) = server("uidvalidity")? else {
        return Ok(());
    };
    with_folder(&server, "uidvalidity", async |admin, folder| {
        let old: Vec<Vec<u8>> = (1..=2).map(|n| relay_mail(n, folder)).collect();
        append(admin, folder, &old).await?;
        let mailbox = mailbox(&server, folder)?;
        let before = fetch(&mailbox, &MailCheckpoint::default(), 10).await?;
        assert_eq!(before.mails.len(), 2);
        let Some(old_validity) = before.checkpoint.uid_validity else {
            panic!("no UIDVALIDITY recorded");
        };

        step("DELETE", admin.delete(folder)).await?;
        step("CREATE", admin.create(folder)).await?;
        let new: Vec<Vec<u8>> = (10..=12).map(|n| relay_mail(n, folder)).collect();
        append(admin, folder, &new).await?;

        // The same mailbox (its kept connection had the old folder open) and a new one.
        let after = fetch(&mailbox, &before.checkpoint, 10).await?;
        assert_eq!(raws(&after), new, "every mail of the new folder");
        let Some(new_validity) = after.checkpoint.uid_validity else {
            panic!("no UIDVALIDITY recorded");
        };
        assert_ne!(new_validity, old_validity);
        let Some(why) = &after.restarted else {
            panic!("restarted not set: {after:?}");
        };
        assert_eq!(
            why,
            &format!(
                "UIDVALIDITY of {folder} changed from {old_validity} to {new_validity}; read from the start"
            )
        );
        let fresh = fetch(&self::mailbox(&server, folder)?, &before.checkpoint, 10).await?;
        assert_eq!(raws(&fresh), new);
        // Continuing from the new checkpoint: nothing, and no restart.
        let next = fetch(&mailbox, &after.checkpoint, 10).await?;
        assert!(next.mails.is_empty());
        assert_eq!(next.restarted, None);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_wrong_password_is_a_credentials_error_without_the_password() -> TestResult {
    let Some(server) = server("credentials")? else {
        return Ok(());
    };
    let wrong = "not-the-password-Xq7";
    let mut settings = settings(&server, "INBOX");
    settings.password = SecretString::from(wrong);
    let mailbox = ImapMailbox::new(settings)?;
    let Ok(result) = timeout(STEP, mailbox.fetch(&MailCheckpoint::default(), 10)).await else {
        panic!("fetch with a wrong password: no answer within {STEP:?}");
    };
    let Err(error) = result else {
        panic!("a wrong password was accepted");
    };
    assert!(
        matches!(error, MailboxError::Credentials { .. }),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(wrong), "{text}");
        assert!(!text.contains(&server.password), "{text}");
    }
    Ok(())
}

#[tokio::test]
async fn a_missing_folder_is_a_setup_error() -> TestResult {
    let Some(server) = server("missing folder")? else {
        return Ok(());
    };
    let folder = format!("nightdesk-test-missing-{:08x}", rand::random::<u32>());
    let mailbox = mailbox(&server, &folder)?;
    let Ok(result) = timeout(STEP, mailbox.fetch(&MailCheckpoint::default(), 10)).await else {
        panic!("fetch from a missing folder: no answer within {STEP:?}");
    };
    match result {
        Err(MailboxError::Setup { detail, .. }) => assert!(detail.contains(&folder), "{detail}"),
        other => panic!("expected a Setup error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_mail_returns_when_mail_arrives() -> TestResult {
    let Some(server) = server("idle")? else {
        return Ok(());
    };
    with_folder(&server, "idle", async |admin, folder| {
        let mailbox = Arc::new(mailbox(&server, folder)?);
        let start = fetch(&mailbox, &MailCheckpoint::default(), 10).await?;

        // Nothing arrives: it waits out `max`.
        let started = Instant::now();
        step(
            "wait_for_mail (1 s)",
            mailbox.wait_for_mail(Duration::from_secs(1)),
        )
        .await?;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
            "{waited:?}"
        );

        // Mail arrives from another connection while it IDLEs.
        let waiter = {
            let mailbox = Arc::clone(&mailbox);
            tokio::spawn(async move {
                let started = Instant::now();
                let result = mailbox.wait_for_mail(Duration::from_secs(20)).await;
                (result, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mail = relay_mail(1, folder);
        append(admin, folder, std::slice::from_ref(&mail)).await?;
        let (result, waited) = step("wait_for_mail (20 s)", async {
            waiter.await.map_err(|e| format!("the waiting task: {e}"))
        })
        .await?;
        result?;
        assert!(
            waited < Duration::from_secs(10),
            "wait_for_mail took {waited:?} although mail arrived after 2 s"
        );
        let batch = fetch(&mailbox, &start.checkpoint, 10).await?;
        assert_eq!(raws(&batch), vec![mail]);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn over_tls_and_starttls_with_the_test_ca() -> TestResult {
    let Some(server) = server("tls")? else {
        return Ok(());
    };
    let Some((imaps_port, ca)) = server.imaps.clone() else {
        println!("tls: IMAPS tests skipped: TEST_IMAPS_CA is not set (.ci/dovecot.sh writes it)");
        return Ok(());
    };
    with_folder(&server, "tls", async |admin, folder| {
        let mails: Vec<Vec<u8>> = (1..=2).map(|n| relay_mail(n, folder)).collect();
        append(admin, folder, &mails).await?;

        let mut tls = settings(&server, folder);
        tls.security = ImapSecurity::Tls;
        tls.port = imaps_port;
        tls.ca_file = Some(ca.clone());
        let batch = fetch(
            &ImapMailbox::new(tls.clone())?,
            &MailCheckpoint::default(),
            10,
        )
        .await?;
        assert_eq!(raws(&batch), mails, "over IMAPS");

        let mut starttls = tls.clone();
        starttls.security = ImapSecurity::StartTls;
        starttls.port = server.port;
        let batch = fetch(&ImapMailbox::new(starttls)?, &MailCheckpoint::default(), 10).await?;
        assert_eq!(raws(&batch), mails, "over STARTTLS");

        // Without the test CA the certificate is not trusted: no login, no mail.
        let mut untrusted = tls;
        untrusted.ca_file = None;
        let mailbox = match ImapMailbox::new(untrusted) {
            Ok(mailbox) => mailbox,
            // No roots on this system at all: refused before connecting, also fine.
            Err(MailboxError::Setup { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Ok(result) = timeout(STEP, mailbox.fetch(&MailCheckpoint::default(), 10)).await else {
            panic!("fetch over untrusted TLS: no answer within {STEP:?}");
        };
        match result {
            Err(MailboxError::Unavailable { detail, .. }) => {
                assert!(detail.contains("TLS"), "{detail}")
            }
            other => panic!("an untrusted certificate was accepted: {other:?}"),
        }
        Ok(())
    })
    .await
}
