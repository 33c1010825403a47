//! A real SMTP server for tests: aiosmtpd (`pip install aiosmtpd`) on loopback,
//! delivering to a Maildir. The test fails, saying so, when it is missing.
#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An aiosmtpd child process, killed when dropped.
pub struct Smtpd {
    child: Child,
    pub port: u16,
    maildir: tempfile::TempDir,
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Smtpd {
    pub fn start() -> Self {
        let import = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !import.is_ok_and(|s| s.success()) {
            panic!("aiosmtpd missing: pip install aiosmtpd");
        }
        let maildir = tempfile::tempdir().unwrap_or_else(|e| panic!("a maildir: {e}"));
        // Python's Maildir only makes its folders when the directory itself is missing.
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir(maildir.path().join(sub))
                .unwrap_or_else(|e| panic!("a maildir folder: {e}"));
        }
        let log_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("a log dir: {e}"));
        let log = log_dir.path().join("smtpd.log");
        let port = free_port();
        let child = Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(maildir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(
                File::create(&log).unwrap_or_else(|e| panic!("a log file: {e}")),
            ))
            .stderr(Stdio::from(
                File::create(log.with_extension("err"))
                    .unwrap_or_else(|e| panic!("a log file: {e}")),
            ))
            .spawn()
            .unwrap_or_else(|e| panic!("python3 runs: {e}"));
        let mut smtpd = Smtpd {
            child,
            port,
            maildir,
            log,
            _log_dir: log_dir,
        };
        smtpd.wait_until_ready();
        smtpd
    }

    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aiosmtpd exited ({status}): {}", self.logs());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not listen within 20s: {}", self.logs());
    }

    pub fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "{}{}",
            read(&self.log),
            read(&self.log.with_extension("err"))
        )
    }

    /// The messages delivered so far, as file paths.
    pub fn delivered(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.maildir.path().join("new"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

pub fn free_port() -> u16 {
    let listener =
        TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind loopback: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("local addr: {e}"))
        .port()
}
