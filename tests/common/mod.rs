//! Whole-daemon harness: the sandbox and the daemon on loopback, sharing a hand-moved
//! clock, on each store backend available (SQLite always, PostgreSQL with
//! `TEST_DATABASE_URL`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use nightdesk::clock::{ManualClock, SharedClock};
use nightdesk::config::AmazonAccount;
use nightdesk::config::{Config, SecretResolver};
use nightdesk::daemon::{Daemon, DaemonOptions, Endpoints};
use nightdesk::http::RetryPolicy;
use nightdesk::sandbox::{JournalEntry, Sandbox, SandboxOptions, Scenario};
use nightdesk::sources::amazon::api::SpApi;
use nightdesk::sources::amazon::lwa::LwaCredentials;
use nightdesk::sources::amazon::{AmazonSource, AmazonSourceSettings};
use nightdesk::store::testing::{self, TestStore};
use secrecy::SecretString;
use url::Url;

pub const CLIENT_ID: &str = "amzn1.application-oa2-client.sandbox";

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// The default test config; `{rules}` is replaced by the rules folder.
pub const CONFIG: &str = "\
store:
  url: sqlite://unused.db
rules:
  dir: rules
amazon:
  accounts:
    - name: test
      region: na
      marketplaces: [ATVPDKIKX0DER]
      client_id: amzn1.application-oa2-client.sandbox
      client_secret: env:T_LWA_SECRET
      refresh_token: env:T_LWA_REFRESH
      schedule: \"* * * * *\"
      initial_lookback_days: 30
      page_size: 10
channels:
  ops:
    type: slack
    webhook_url: env:T_SLACK
    # One message per alert here; the grouping tests set a window of their own.
    group_window_seconds: 0
";

pub struct Harness {
    pub sandbox: Sandbox,
    pub clock: ManualClock,
    pub store: TestStore,
    pub dir: tempfile::TempDir,
    pub scenario: Scenario,
    pub config_text: String,
}

/// Every backend's harness, each with a fresh sandbox serving `scenario`.
pub async fn harnesses(scenario: &Scenario) -> Vec<Harness> {
    let stores = match testing::all().await {
        Ok(stores) => stores,
        Err(e) => panic!("cannot open test stores: {e}"),
    };
    let mut out = Vec::new();
    for store in stores {
        out.push(Harness::start(store, scenario.clone()).await);
    }
    out
}

impl Harness {
    pub async fn start(store: TestStore, scenario: Scenario) -> Harness {
        let clock = ManualClock::new(t0());
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let shared: SharedClock = Arc::new(clock.clone());
        let options = SandboxOptions::new(scenario.clone(), shared);
        let sandbox = match Sandbox::start(listener, options).await {
            Ok(s) => s,
            Err(e) => panic!("sandbox: {e}"),
        };
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let harness = Harness {
            sandbox,
            clock,
            store,
            dir,
            scenario,
            config_text: CONFIG.to_owned(),
        };
        harness.write_rule(
            "pending_over_7_days",
            include_str!("../../rules/pending_over_7_days.rhai"),
        );
        harness
    }

    pub fn label(&self) -> &'static str {
        self.store.label
    }

    pub fn rules_dir(&self) -> PathBuf {
        self.dir.path().join("rules")
    }

    pub fn write_rule(&self, name: &str, source: &str) {
        let dir = self.rules_dir();
        let written = std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(dir.join(format!("{name}.rhai")), source));
        if let Err(e) = written {
            panic!("writing rule: {e}");
        }
    }

    /// The shipped templates, for the shipped rules.
    pub fn shipped_templates(&self) {
        let dir = self.rules_dir().join("templates");
        let copied = std::fs::create_dir_all(&dir).and_then(|_| {
            for entry in std::fs::read_dir("rules/templates")? {
                let path = entry?.path();
                if let Some(name) = path.file_name() {
                    std::fs::copy(&path, dir.join(name))?;
                }
            }
            Ok(())
        });
        if let Err(e) = copied {
            panic!("{e}");
        }
    }

    pub fn config(&self) -> Config {
        let path = self.dir.path().join("nightdesk.yaml");
        match Config::from_str(&self.config_text, &path) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn secrets(&self) -> SecretResolver {
        let creds = &self.scenario.amazon.credentials;
        SecretResolver::from_env()
            .with_override("T_LWA_SECRET", creds.client_secret.clone())
            .with_override("T_LWA_REFRESH", creds.refresh_token.clone())
            .with_override("T_SLACK", self.slack_url())
    }

    pub fn slack_url(&self) -> String {
        format!(
            "{}/hooks/slack/services/T0TEST/B0TEST/test-hook",
            self.sandbox.base_url()
        )
    }

    pub fn endpoints(&self) -> Endpoints {
        let base = self.sandbox.base_url();
        let parse = |s: String| Url::parse(&s).ok();
        Endpoints {
            amazon: parse(format!("{base}/")),
            lwa: parse(format!("{base}/auth/o2/token")),
            carriers: parse(format!("{base}/")),
            marketplaces: parse(format!("{base}/")),
        }
    }

    /// The test config's first Amazon account pointed at the sandbox, and its SP-API
    /// client built as the daemon builds it (without a daemon).
    pub fn sp_api(&self) -> (AmazonAccount, Arc<SpApi>) {
        let config = self.config();
        let Some(mut account) = config.amazon.first().cloned() else {
            panic!("no account in the test config")
        };
        let endpoints = self.endpoints();
        if let (Some(api), Some(lwa)) = (endpoints.amazon, endpoints.lwa) {
            account.endpoint = api;
            account.lwa_endpoint = lwa;
        }
        let creds = &self.scenario.amazon.credentials;
        let settings = AmazonSourceSettings {
            account: account.clone(),
            credentials: LwaCredentials {
                client_id: creds.client_id.clone(),
                client_secret: SecretString::from(creds.client_secret.clone()),
                refresh_token: SecretString::from(creds.refresh_token.clone()),
            },
            user_agent: AmazonSource::user_agent("nightdesk-test"),
            retry: RetryPolicy::fast(),
        };
        match settings.client(Arc::new(self.clock.clone())) {
            Ok(api) => (account, api),
            Err(e) => panic!("client: {e}"),
        }
    }

    /// A daemon on this harness's store, sandbox and clock.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with(self.config(), self.secrets())
    }

    pub fn daemon_with(&self, config: Config, secrets: SecretResolver) -> Daemon {
        let built = Daemon::build(DaemonOptions {
            config,
            store: self.store.store.clone(),
            clock: Arc::new(self.clock.clone()),
            secrets,
            endpoints: self.endpoints(),
            retry: RetryPolicy::fast(),
            instance: "test".into(),
        });
        match built {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    pub fn journal(&self, operation: &str) -> Vec<JournalEntry> {
        self.sandbox
            .journal()
            .into_iter()
            .filter(|e| e.operation == operation)
            .collect()
    }

    pub fn slack_texts(&self) -> Vec<String> {
        self.sandbox
            .chat_posts("slack")
            .into_iter()
            .map(|p| p["text"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

pub fn file_in(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Err(e) = std::fs::write(&path, text) {
        panic!("write {}: {e}", path.display());
    }
    path
}

/// How many of `texts` contain `needle`.
pub fn count(texts: &[String], needle: &str) -> usize {
    texts.iter().filter(|t| t.contains(needle)).count()
}
