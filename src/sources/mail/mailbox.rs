//! Mailboxes: where buyer mail is read from. A [`Mailbox`] hands out raw mails after a
//! [`MailCheckpoint`], oldest first; the daemon parses and stores them, saves the new
//! checkpoint, and only then calls [`Mailbox::commit`]. A crash anywhere in between reads
//! the same mails again, and the store dedupes them (by Message-ID, else by content), so
//! a restart mid-mailbox reads nothing twice into the store and misses nothing.
//!
//! What a mailbox must never do: parse, log or keep a mail's content (buyers' personal
//! data), delete a mail, or move the checkpoint itself.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// One mail as read, with where it sits in its mailbox.
#[derive(Clone, PartialEq, Eq)]
pub struct FetchedMail {
    /// Where the mail sits (IMAP: its UID; Maildir: the file's unique name), for
    /// [`Mailbox::commit`] and logs.
    pub position: String,
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for FetchedMail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the content: it is a buyer's personal data.
        f.debug_struct("FetchedMail")
            .field("position", &self.position)
            .field("bytes", &self.raw.len())
            .finish()
    }
}

/// What a mailbox remembers between reads; the daemon stores it after the mails it covers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailCheckpoint {
    /// IMAP: the folder's UIDVALIDITY when `last_uid` was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_validity: Option<u32>,
    /// IMAP: the highest UID handed out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_uid: Option<u32>,
}

/// One read: the mails and the checkpoint to store once they are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    pub mails: Vec<FetchedMail>,
    pub checkpoint: MailCheckpoint,
    /// Set when the mailbox could not continue from the checkpoint (IMAP: UIDVALIDITY
    /// changed) and read from the start; says why, for the log and an ops alert.
    pub restarted: Option<String>,
    /// More mails wait beyond `limit`.
    pub more: bool,
}

/// Why a mailbox could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    /// Network, TLS, a dropped connection, a server busy: try again later.
    #[error("{mailbox}: {detail}")]
    Unavailable { mailbox: String, detail: String },
    /// The server refused the login: no retry helps until a person fixes it.
    #[error("{mailbox}: login refused: {detail}")]
    Credentials { mailbox: String, detail: String },
    /// Misconfigured (no such folder, a Maildir that is not one): permanent.
    #[error("{mailbox}: {detail}")]
    Setup { mailbox: String, detail: String },
}

impl MailboxError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, MailboxError::Unavailable { .. })
    }
}

/// A place buyer mail is read from.
#[async_trait]
pub trait Mailbox: Send + Sync {
    /// A stable name for checkpoints, logs and alerts (`imap:seller@example.com/INBOX`,
    /// `maildir:/var/mail/seller`); never contains a secret.
    fn name(&self) -> &str;

    /// Up to `limit` mails after `since`, oldest first.
    async fn fetch(&self, since: &MailCheckpoint, limit: usize) -> Result<Batch, MailboxError>;

    /// The mails at `positions` are stored: mark them where the mailbox keeps such marks
    /// (Maildir: `new/` → `cur/` with the Seen flag; IMAP: nothing, the checkpoint is
    /// enough). Must be harmless when repeated.
    async fn commit(&self, positions: &[String]) -> Result<(), MailboxError>;

    /// Return when new mail may have arrived, or after `max` (IMAP IDLE where the server
    /// has it; otherwise simply waits).
    async fn wait_for_mail(&self, max: std::time::Duration) -> Result<(), MailboxError> {
        tokio::time::sleep(max).await;
        Ok(())
    }
}
