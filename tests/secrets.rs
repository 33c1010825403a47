//! Secrets never reach logs, errors or Debug output, even at trace level and on errors.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::Duration;
use common::Harness;
use nightdesk::sandbox::{Fault, FulfillmentChannel, OrderStatus, ScenarioOrder, When};
use nightdesk::store::testing;

const CANARIES: [&str; 3] = [
    "canary-client-secret-7f3a",
    "canary-refresh-9b2c",
    "canary-hook-5d1e",
];

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

#[tokio::test]
async fn canary_secrets_never_appear_in_logs_errors_or_debug() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        // Everything, including the HTTP stack, but not the sandbox's own view of requests.
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "trace,nightdesk::sandbox=off",
        ))
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut scenario = match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    scenario.amazon.credentials.client_secret = CANARIES[0].into();
    scenario.amazon.credentials.refresh_token = CANARIES[1].into();
    scenario.amazon.orders = vec![ScenarioOrder::new(
        "113-4829301-5520617",
        OrderStatus::Pending,
        FulfillmentChannel::Mfn,
        When::days_ago(9),
    )];
    let store = match testing::sqlite().await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let h = Harness::start(store, scenario).await;
    let hook = format!(
        "{}/hooks/slack/services/T0/B0/{}",
        h.sandbox.base_url(),
        CANARIES[2]
    );
    let secrets = h.secrets().with_override("T_SLACK", hook);

    // Errors on every path: a Slack 500, an expired token refused, a wrong refresh token.
    h.sandbox.inject(Fault::status("chat.slack", 500));
    let daemon = h.daemon_with(h.config(), secrets.clone());
    let report = daemon.run_cycle().await.map_err(|e| e.to_string());
    h.sandbox.revoke_access_tokens();
    h.clock.advance(Duration::minutes(5));
    let second = daemon.run_cycle().await.map_err(|e| e.to_string());
    let wrong = h.daemon_with(
        h.config(),
        secrets
            .clone()
            .with_override("T_LWA_REFRESH", "Atzr|canary-refresh-9b2c-wrong"),
    );
    let third = wrong.run_cycle().await.map_err(|e| e.to_string());
    let outbox = h.store.store.outbox().await.map_err(|e| e.to_string());
    let audit = h
        .store
        .store
        .audit_log(None)
        .await
        .map_err(|e| e.to_string());

    let everything = format!(
        "{}\n{report:?}\n{second:?}\n{third:?}\n{outbox:?}\n{audit:?}\n{daemon:?}\n{:?}\n{secrets:?}",
        captured.text(),
        h.config()
    );
    // The test is only meaningful if the paths above really ran and logged.
    assert!(everything.contains("HTTP 500"), "{everything}");
    assert!(everything.contains("Poll succeeded"), "{everything}");
    assert!(everything.contains("invalid_grant"), "{everything}");
    for canary in CANARIES {
        assert!(
            !everything.contains(canary),
            "{canary} leaked:\n{everything}"
        );
    }
}
