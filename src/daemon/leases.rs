//! Who does the scheduled work when several instances share one database. Each
//! scheduled task (a source's poll, the sweep, the tracking poll, the mail read, the
//! summary and each named schedule) runs only on the instance that holds its lease in
//! the store; a background renewer keeps this instance's leases alive and takes over
//! those of an instance that stopped renewing. The outbox needs no lease: executors on
//! every instance claim rows with their own leases and fences.
//!
//! It must never let a task run on a lease it cannot prove: when the store cannot be
//! reached, a held lease counts only until the time it was last renewed to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Notify;

use crate::clock::SharedClock;
use crate::store::Store;

/// How long a lease lasts without renewal: how long another instance waits before
/// taking over the work of one that died.
pub const LEASE_TTL: Duration = Duration::seconds(15);

/// A lease this instance holds, as far as it knows.
#[derive(Debug, Clone, Copy)]
struct Held {
    fence: i64,
    until: DateTime<Utc>,
}

/// This instance's leases on scheduled work.
pub struct LeaseKeeper {
    store: Arc<dyn Store>,
    clock: SharedClock,
    instance: String,
    ttl: Duration,
    held: Mutex<HashMap<String, Held>>,
    /// Woken when the renewer takes a lease over from another instance, so the task
    /// catches up at once instead of at its next scheduled time.
    taken_over: HashMap<String, Arc<Notify>>,
}

impl std::fmt::Debug for LeaseKeeper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseKeeper")
            .field("instance", &self.instance)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LeaseKeeper {
    pub fn new(
        store: Arc<dyn Store>,
        clock: SharedClock,
        instance: &str,
        ttl: Duration,
        names: impl IntoIterator<Item = String>,
    ) -> Self {
        Self {
            store,
            clock,
            instance: instance.to_owned(),
            ttl,
            held: Mutex::new(HashMap::new()),
            taken_over: names
                .into_iter()
                .map(|name| (name, Arc::new(Notify::new())))
                .collect(),
        }
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Woken when the lease `name` is taken over from another instance.
    pub fn taken_over(&self, name: &str) -> Arc<Notify> {
        self.taken_over
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::new(Notify::new()))
    }

    fn held(&self, name: &str) -> Option<Held> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .copied()
    }

    /// Whether this instance may run `name` now: its lease is live, or could be taken
    /// or renewed just now.
    pub async fn ensure(&self, name: &str) -> bool {
        let now = self.clock.now();
        if let Some(held) = self.held(name)
            && held.until - self.ttl / 3 > now
        {
            return true;
        }
        self.acquire(name, now).await.0
    }

    /// Take or renew `name`; returns whether it is held, and whether it was not held
    /// (live) by this instance before.
    async fn acquire(&self, name: &str, now: DateTime<Utc>) -> (bool, bool) {
        let before = self.held(name);
        match self
            .store
            .acquire_lease(name, &self.instance, self.ttl, now)
            .await
        {
            Ok(Some(fence)) => {
                let gained = before.is_none_or(|b| b.fence != fence || b.until <= now);
                if gained {
                    tracing::info!(lease = name, fence, instance = %self.instance, "Lease taken.");
                }
                self.held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        name.to_owned(),
                        Held {
                            fence,
                            until: now + self.ttl,
                        },
                    );
                (true, gained)
            }
            Ok(None) => {
                if before.is_some() {
                    tracing::warn!(lease = name, instance = %self.instance, "Lease lost to another instance.");
                }
                self.held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(name);
                (false, false)
            }
            Err(e) => {
                // Unreachable store: what was held stays held until it runs out, no longer.
                tracing::warn!(lease = name, error = %e, "Cannot renew a lease.");
                let live = before.is_some_and(|b| b.until > now);
                (live, false)
            }
        }
    }

    /// Renew every lease this instance holds and take the free ones. `announce` wakes the
    /// tasks whose lease was taken over (not at start, when every task runs anyway).
    pub async fn renew_all(&self, announce: bool) {
        let now = self.clock.now();
        for (name, notify) in &self.taken_over {
            let (_, gained) = self.acquire(name, now).await;
            if gained && announce {
                notify.notify_one();
            }
        }
    }

    /// Renew until `shutdown`, three times per lease time.
    pub async fn keep(&self, shutdown: &tokio_util::sync::CancellationToken) {
        let period = (self.ttl / 3)
            .to_std()
            .unwrap_or(std::time::Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => self.renew_all(true).await,
            }
        }
    }

    /// Give up every lease (at shutdown), so another instance takes over at once.
    pub async fn release(&self) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        match self.store.release_leases(&self.instance).await {
            Ok(n) => tracing::info!(released = n, instance = %self.instance, "Leases released."),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot release leases; they expire on their own.")
            }
        }
    }

    /// The leases this instance believes it holds now, by name.
    pub fn held_now(&self) -> Vec<String> {
        let now = self.clock.now();
        let mut names: Vec<String> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, h)| h.until > now)
            .map(|(n, _)| n.clone())
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::testing;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 3, 2, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn one_keeper_runs_a_task_and_the_other_takes_over_when_it_stops_renewing() {
        let stores = match testing::all().await {
            Ok(s) => s,
            Err(e) => panic!("stores: {e}"),
        };
        for t in stores {
            let clock = ManualClock::new(t0());
            let shared: SharedClock = Arc::new(clock.clone());
            let names = || vec!["poll/amazon/eu".to_owned(), "sweep".to_owned()];
            let a = LeaseKeeper::new(t.store.clone(), shared.clone(), "a", LEASE_TTL, names());
            let b = LeaseKeeper::new(t.store.clone(), shared.clone(), "b", LEASE_TTL, names());
            a.renew_all(false).await;
            b.renew_all(true).await;
            assert!(a.ensure("poll/amazon/eu").await, "{}", t.label);
            assert!(!b.ensure("poll/amazon/eu").await, "{}", t.label);
            assert_eq!(b.held_now(), Vec::<String>::new(), "{}", t.label);

            // a stops renewing (killed): b takes over only after the lease time.
            clock.advance(Duration::seconds(10));
            b.renew_all(true).await;
            assert!(!b.ensure("sweep").await, "{}", t.label);
            clock.advance(Duration::seconds(6));
            b.renew_all(true).await;
            assert_eq!(b.held_now(), names(), "{}", t.label);
            // The poll task is woken to catch up.
            let woken = tokio::time::timeout(
                std::time::Duration::from_millis(100),
                b.taken_over("poll/amazon/eu").notified(),
            )
            .await;
            assert!(woken.is_ok(), "{}: no take-over wake-up", t.label);
            // a comes back: it no longer holds anything.
            assert!(!a.ensure("poll/amazon/eu").await, "{}", t.label);

            // b releases at shutdown; a takes over at once.
            b.release().await;
            assert!(a.ensure("sweep").await, "{}", t.label);
        }
    }
}
