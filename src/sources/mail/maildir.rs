//! A Maildir folder as a [`Mailbox`]: the embedded default, and the way in for setups
//! that fetch mail with other tools (fetchmail, getmail, mbsync, an MTA's local
//! delivery). New mail is what sits in `new/`; once stored, a mail moves to `cur/` with
//! the Seen flag (`:2,S`), as any mail reader does, so the next read skips it. A crash
//! between storing and moving reads the mail again; the store dedupes it.
//!
//! The format is three folders and a rename, so this is a few lines of tokio::fs rather
//! than a crate (the `maildir` crate is synchronous and brings its own MIME parser).
//!
//! It must never delete a mail, write into `new/`, or read a mail's content beyond
//! handing its bytes on.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::mailbox::{Batch, FetchedMail, MailCheckpoint, Mailbox, MailboxError};
use super::parse::MAX_MAIL_BYTES;

/// A Maildir folder (`cur/`, `new/`, `tmp/`).
#[derive(Debug, Clone)]
pub struct MaildirMailbox {
    root: PathBuf,
    name: String,
}

impl MaildirMailbox {
    /// The folder at `root`, which must exist with `new/` and `cur/` in it.
    pub fn open(root: &Path) -> Result<Self, MailboxError> {
        let name = format!("maildir:{}", root.display());
        for sub in ["new", "cur"] {
            if !root.join(sub).is_dir() {
                return Err(MailboxError::Setup {
                    mailbox: name,
                    detail: format!("not a Maildir: {} has no {sub}/ folder", root.display()),
                });
            }
        }
        Ok(Self {
            root: root.to_owned(),
            name,
        })
    }

    /// Make `root` a Maildir if it is not one yet (the demo and tests deliver into it).
    pub fn create(root: &Path) -> Result<Self, MailboxError> {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(root.join(sub)).map_err(|e| MailboxError::Setup {
                mailbox: format!("maildir:{}", root.display()),
                detail: format!("cannot create {sub}/: {e}"),
            })?;
        }
        Self::open(root)
    }

    fn unavailable(&self, what: &str, e: std::io::Error) -> MailboxError {
        MailboxError::Unavailable {
            mailbox: self.name.clone(),
            detail: format!("{what}: {e}"),
        }
    }

    /// The file names in `new/`, oldest first (by modification time, then name).
    async fn new_mail(&self) -> Result<Vec<(String, u64)>, MailboxError> {
        let dir = self.root.join("new");
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(|e| self.unavailable("cannot list new/", e))?;
        let mut found = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| self.unavailable("cannot list new/", e))?
        {
            let Ok(name) = entry.file_name().into_string() else {
                continue; // Maildir names are ASCII; anything else is not a delivery.
            };
            if name.starts_with('.') {
                continue;
            }
            let Ok(meta) = entry.metadata().await else {
                continue; // moved away meanwhile
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            found.push((modified, name, meta.len()));
        }
        found.sort();
        Ok(found
            .into_iter()
            .map(|(_, name, len)| (name, len))
            .collect())
    }
}

#[async_trait]
impl Mailbox for MaildirMailbox {
    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self, since: &MailCheckpoint, limit: usize) -> Result<Batch, MailboxError> {
        let waiting = self.new_mail().await?;
        let more = waiting.len() > limit;
        let mut mails = Vec::new();
        for (name, len) in waiting.into_iter().take(limit) {
            if len > MAX_MAIL_BYTES as u64 {
                tracing::warn!(mailbox = %self.name, file = %name, bytes = len,
                    "mail too large to be a buyer message; left in new/");
                continue;
            }
            match tokio::fs::read(self.root.join("new").join(&name)).await {
                Ok(raw) => mails.push(FetchedMail {
                    position: name,
                    raw,
                }),
                // Another reader moved it meanwhile: it is not ours to read.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.unavailable(&format!("cannot read new/{name}"), e)),
            }
        }
        Ok(Batch {
            mails,
            checkpoint: since.clone(),
            restarted: None,
            more,
        })
    }

    async fn commit(&self, positions: &[String]) -> Result<(), MailboxError> {
        for name in positions {
            if name.contains('/') || name.starts_with('.') {
                continue; // never a name `fetch` handed out
            }
            let from = self.root.join("new").join(name);
            let base = name.split(":2,").next().unwrap_or(name);
            let to = self.root.join("cur").join(format!("{base}:2,S"));
            match tokio::fs::rename(&from, &to).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // already moved
                Err(e) => return Err(self.unavailable(&format!("cannot move new/{name}"), e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(root: &Path, name: &str, text: &str) {
        let written = std::fs::write(root.join("tmp").join(name), text).and_then(|()| {
            std::fs::rename(root.join("tmp").join(name), root.join("new").join(name))
        });
        assert!(written.is_ok(), "deliver {name}: {written:?}");
        // Distinct modification times keep the order deterministic.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }

    #[tokio::test]
    async fn new_mail_is_handed_out_oldest_first_and_moved_to_cur_once_committed() {
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else {
            panic!("tempdir: {dir:?}")
        };
        let created = MaildirMailbox::create(dir.path());
        let Ok(mailbox) = created else {
            panic!("create: {created:?}")
        };
        deliver(dir.path(), "1.a.host", "Subject: one\r\n\r\n1");
        deliver(dir.path(), "2.b.host", "Subject: two\r\n\r\n2");
        deliver(dir.path(), "3.c.host", "Subject: three\r\n\r\n3");
        std::fs::write(dir.path().join("new").join(".hidden"), "x").ok();

        let batch = mailbox.fetch(&MailCheckpoint::default(), 2).await;
        let Ok(batch) = batch else {
            panic!("fetch: {batch:?}")
        };
        let names: Vec<&str> = batch.mails.iter().map(|m| m.position.as_str()).collect();
        assert_eq!(names, ["1.a.host", "2.b.host"]);
        assert!(batch.more);
        assert_eq!(batch.mails[0].raw, b"Subject: one\r\n\r\n1");

        let positions: Vec<String> = batch.mails.iter().map(|m| m.position.clone()).collect();
        assert!(mailbox.commit(&positions).await.is_ok());
        // Repeating the commit is harmless.
        assert!(mailbox.commit(&positions).await.is_ok());
        assert!(dir.path().join("cur").join("1.a.host:2,S").is_file());

        let batch = mailbox.fetch(&MailCheckpoint::default(), 10).await;
        let Ok(batch) = batch else {
            panic!("fetch: {batch:?}")
        };
        let names: Vec<&str> = batch.mails.iter().map(|m| m.position.as_str()).collect();
        assert_eq!(names, ["3.c.host"], "nothing twice, nothing missed");
        assert!(!batch.more);
    }

    #[test]
    fn a_folder_that_is_not_a_maildir_is_refused_by_name() {
        let dir = tempfile::tempdir();
        let Ok(dir) = dir else {
            panic!("tempdir: {dir:?}")
        };
        let opened = MaildirMailbox::open(dir.path());
        let Err(e) = opened else {
            panic!("opened a plain folder")
        };
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("no new/ folder"), "{e}");
    }
}
