//! The store contract, run on every backend available (see `testing`).

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::testing;
use super::*;
use crate::model::{
    ActionRequest, BuyerMessage, EventKind, Fulfillment, Money, OrderItem, OrderStatus, ParcelRef,
    PlannedAction, Shipment, TrackingStatus,
};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn order(id: &str, status: OrderStatus, updated: DateTime<Utc>) -> Order {
    Order {
        customer: Default::default(),
        channel: SalesChannel::Amazon,
        account: "us".into(),
        id: id.into(),
        marketplace_id: Some("ATVPDKIKX0DER".into()),
        status,
        fulfillment: Some(Fulfillment::Mfn),
        purchase_date: t0() - Duration::days(9),
        last_update: updated,
        earliest_ship_date: None,
        latest_ship_date: None,
        earliest_delivery_date: None,
        latest_delivery_date: None,
        total: Some(Money {
            currency: "USD".into(),
            amount: "24.99".into(),
        }),
        order_type: Some("StandardOrder".into()),
        is_prime: false,
        is_business: false,
        items: vec![
            OrderItem {
                id: "item-1".into(),
                asin: Some("B000000001".into()),
                sku: Some("SKU-1".into()),
                title: Some("Kettle".into()),
                quantity_ordered: 1,
                quantity_shipped: 0,
                price: Some(Money {
                    currency: "USD".into(),
                    amount: "19.99".into(),
                }),
                tax: Some(Money {
                    currency: "USD".into(),
                    amount: "5.00".into(),
                }),
                buyer_requested_cancel: true,
                buyer_cancel_reason: Some("Found cheaper".into()),
                details: Default::default(),
            },
            OrderItem {
                id: "item-2".into(),
                asin: None,
                sku: None,
                title: None,
                quantity_ordered: 2,
                quantity_shipped: 0,
                price: None,
                tax: None,
                buyer_requested_cancel: false,
                buyer_cancel_reason: None,
                details: Default::default(),
            },
        ],
        details: Default::default(),
    }
}

fn alert(rule: &str, subject: &str, key: &str) -> PlannedAction {
    PlannedAction {
        rule: rule.into(),
        rule_version: "v1".into(),
        subject: Subject::from_stored(subject.into()),
        request: ActionRequest::Alert {
            channel: "ops".into(),
            text: format!("about {subject}"),
        },
        idempotency_key: key.into(),
        hold: None,
        dry_run: false,
    }
}

async fn stores() -> Vec<testing::TestStore> {
    match testing::all().await {
        Ok(stores) => stores,
        Err(e) => panic!("cannot open test stores: {e}"),
    }
}

#[tokio::test]
async fn ingest_emits_events_only_for_changes_and_moves_the_watermark_forward()
-> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let a = order("111-0000001-0000001", OrderStatus::Pending, t0());
        let b = order("111-0000002-0000002", OrderStatus::Unshipped, t0());
        assert_eq!(s.checkpoint("amazon/us").await?, None, "{}", t.label);

        let r = s
            .ingest("amazon/us", &[a.clone(), b.clone()], Some(t0()), t0())
            .await?;
        assert_eq!((r.stored, r.unchanged, r.events), (2, 0, 2), "{}", t.label);
        assert_eq!(s.checkpoint("amazon/us").await?, Some(t0()), "{}", t.label);

        // The overlap of the next window re-reads both: nothing new.
        let r = s
            .ingest(
                "amazon/us",
                &[a.clone(), b.clone()],
                Some(t0() + Duration::minutes(5)),
                t0(),
            )
            .await?;
        assert_eq!((r.stored, r.unchanged, r.events), (0, 2, 0), "{}", t.label);

        // A status change is one event with from and to.
        let shipped = order(&a.id, OrderStatus::Unshipped, t0() + Duration::hours(1));
        let r = s
            .ingest(
                "amazon/us",
                &[shipped],
                Some(t0() + Duration::hours(1)),
                t0(),
            )
            .await?;
        assert_eq!(r.events, 1, "{}", t.label);

        // An older version arriving late changes nothing.
        let r = s
            .ingest("amazon/us", std::slice::from_ref(&a), Some(t0()), t0())
            .await?;
        assert_eq!((r.stored, r.events), (0, 0), "{}", t.label);
        // ...and the watermark never moves back.
        assert_eq!(
            s.checkpoint("amazon/us").await?,
            Some(t0() + Duration::hours(1)),
            "{}",
            t.label
        );

        let events = s.pending_events(10).await?;
        let kinds: Vec<&EventKind> = events.iter().map(|e| &e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                &EventKind::OrderStatusChanged {
                    from: None,
                    to: OrderStatus::Pending
                },
                &EventKind::OrderStatusChanged {
                    from: None,
                    to: OrderStatus::Unshipped
                },
                &EventKind::OrderStatusChanged {
                    from: Some(OrderStatus::Pending),
                    to: OrderStatus::Unshipped
                },
            ],
            "{}",
            t.label
        );
        let known = s
            .known_versions(
                SalesChannel::Amazon,
                &[a.id.clone(), "999-0000000-0000000".into()],
            )
            .await?;
        assert_eq!(known.len(), 1, "{}", t.label);
        assert_eq!(
            known.get(&a.id),
            Some(&(t0() + Duration::hours(1))),
            "{}",
            t.label
        );
    }
    Ok(())
}

#[tokio::test]
async fn orders_round_trip_with_items_and_status_age() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let pending = order("111-0000003-0000003", OrderStatus::Pending, t0());
        s.ingest(
            "amazon/us",
            std::slice::from_ref(&pending),
            Some(t0()),
            t0(),
        )
        .await?;
        let stored = s.order(SalesChannel::Amazon, &pending.id).await?;
        let Some(stored) = stored else {
            panic!("{}: order not found", t.label)
        };
        assert_eq!(stored.order, pending, "{}", t.label);
        // A Pending order has been pending since it was bought.
        assert_eq!(stored.status_since, pending.purchase_date, "{}", t.label);
        assert!(stored.order.buyer_requested_cancel(), "{}", t.label);

        let later = order(&pending.id, OrderStatus::Shipped, t0() + Duration::days(1));
        s.ingest("amazon/us", &[later], Some(t0()), t0()).await?;
        let stored = s.order(SalesChannel::Amazon, &pending.id).await?;
        assert_eq!(
            stored.map(|o| o.status_since),
            Some(t0() + Duration::days(1)),
            "{}",
            t.label
        );
    }
    Ok(())
}

#[tokio::test]
async fn open_orders_leave_out_closed_and_old_ones() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let open = order("111-0000004-0000004", OrderStatus::Pending, t0());
        let canceled = order("111-0000005-0000005", OrderStatus::Canceled, t0());
        let mut old = order("111-0000006-0000006", OrderStatus::Shipped, t0());
        old.purchase_date = t0() - Duration::days(200);
        s.ingest(
            "amazon/us",
            &[open.clone(), canceled, old],
            Some(t0()),
            t0(),
        )
        .await?;
        let found = s.open_orders(t0() - Duration::days(90)).await?;
        let ids: Vec<&str> = found.iter().map(|o| o.order.id.as_str()).collect();
        assert_eq!(ids, vec![open.id.as_str()], "{}", t.label);
        assert_eq!(found[0].order.items.len(), 2, "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn plan_inserts_each_key_once_and_marks_the_event_seen() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        s.ingest(
            "amazon/us",
            &[order("111-0000007-0000007", OrderStatus::Pending, t0())],
            Some(t0()),
            t0(),
        )
        .await?;
        let event = s.pending_events(10).await?.first().map(|e| e.id);
        let a = alert("r", "order:amazon/111-0000007-0000007", "k1");
        assert_eq!(
            s.plan(event, &[a.clone(), a.clone()], t0()).await?,
            1,
            "{}",
            t.label
        );
        assert_eq!(
            s.plan(None, std::slice::from_ref(&a), t0()).await?,
            0,
            "{}",
            t.label
        );
        assert!(s.pending_events(10).await?.is_empty(), "{}", t.label);
        let rows = s.outbox().await?;
        assert_eq!(rows.len(), 1, "{}", t.label);
        assert_eq!(rows[0].state, "planned", "{}", t.label);
        assert_eq!(rows[0].payload["kind"], "alert", "{}", t.label);

        let dry = PlannedAction {
            dry_run: true,
            ..alert("r", "order:amazon/111-0000007-0000007", "dry-run/k1")
        };
        assert_eq!(s.plan(None, &[dry], t0()).await?, 1, "{}", t.label);
        // Dry-run rows are never handed to an executor.
        let claimed = s.claim_due("w", t0(), Duration::minutes(5), 10).await?;
        assert_eq!(claimed.len(), 1, "{}", t.label);
        assert_eq!(claimed[0].idempotency_key, "k1", "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn claims_are_leased_and_fenced() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        s.plan(None, &[alert("r", "daemon:x", "k")], t0()).await?;
        let lease = Duration::minutes(5);
        let first = s.claim_due("worker-a", t0(), lease, 10).await?;
        assert_eq!(first.len(), 1, "{}", t.label);
        assert_eq!(first[0].attempt, 1, "{}", t.label);
        // Held: nobody else gets it while the lease runs.
        assert!(
            s.claim_due("worker-b", t0() + Duration::minutes(1), lease, 10)
                .await?
                .is_empty(),
            "{}",
            t.label
        );
        // The lease expires: worker-b takes over with a new fence.
        let second = s
            .claim_due("worker-b", t0() + Duration::minutes(6), lease, 10)
            .await?;
        assert_eq!(second.len(), 1, "{}", t.label);
        assert!(second[0].fence > first[0].fence, "{}", t.label);
        assert_eq!(second[0].attempt, 2, "{}", t.label);
        // worker-a's late completion is rejected; worker-b's is accepted.
        let done = Outcome::Done {
            detail: serde_json::json!({"status": 200}),
        };
        let stale = s
            .finish(&first[0], &done, t0() + Duration::minutes(7))
            .await;
        assert!(
            matches!(stale, Err(StoreError::StaleLease(_))),
            "{}: {stale:?}",
            t.label
        );
        s.finish(&second[0], &done, t0() + Duration::minutes(7))
            .await?;
        let rows = s.outbox().await?;
        assert_eq!(
            (rows[0].state.as_str(), rows[0].attempts),
            ("done", 2),
            "{}",
            t.label
        );
        // Done is final.
        assert!(
            s.claim_due("worker-c", t0() + Duration::days(1), lease, 10)
                .await?
                .is_empty(),
            "{}",
            t.label
        );
        let audit = s.audit_log(Some("daemon:x")).await?;
        let kinds: Vec<&str> = audit.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, vec!["planned", "attempt"], "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn retries_wait_for_their_time() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        s.plan(None, &[alert("r", "daemon:y", "k")], t0()).await?;
        let claim = s.claim_due("w", t0(), Duration::minutes(5), 10).await?;
        let at = t0() + Duration::seconds(16);
        s.finish(
            &claim[0],
            &Outcome::Retry {
                at,
                error: "HTTP 503".into(),
            },
            t0(),
        )
        .await?;
        assert_eq!(s.next_due().await?, Some(at), "{}", t.label);
        assert!(
            s.claim_due("w", t0() + Duration::seconds(15), Duration::minutes(5), 10)
                .await?
                .is_empty(),
            "{}",
            t.label
        );
        let again = s.claim_due("w", at, Duration::minutes(5), 10).await?;
        assert_eq!(again.len(), 1, "{}", t.label);
        s.finish(
            &again[0],
            &Outcome::Failed {
                error: "HTTP 404".into(),
            },
            at,
        )
        .await?;
        let rows = s.outbox().await?;
        assert_eq!(rows[0].state, "failed", "{}", t.label);
        assert_eq!(
            rows[0].last_error.as_deref(),
            Some("HTTP 404"),
            "{}",
            t.label
        );
        assert_eq!(s.next_due().await?, None, "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn a_second_instance_on_the_same_sqlite_file_is_refused() -> Result<(), StoreError> {
    let first = testing::sqlite().await?;
    let Some(path) = first.sqlite_path.clone() else {
        panic!("no path")
    };
    let second = SqliteStore::open(&path).await;
    let message = second
        .as_ref()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(matches!(second, Err(StoreError::Locked(_))), "{message}");
    assert!(message.contains("another nightdesk instance"), "{message}");
    // Once the first is gone, the file opens again.
    drop(first);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn concurrent_executors_never_claim_the_same_action() -> Result<(), StoreError> {
    for t in stores().await {
        let actions: Vec<PlannedAction> = (0..60)
            .map(|i| alert("r", &format!("daemon:{i}"), &format!("key-{i}")))
            .collect();
        t.store.plan(None, &actions, t0()).await?;
        let workers: Vec<_> = (0..3)
            .map(|w| {
                let store = t.store.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let claimed = store
                            .claim_due(&format!("w{w}"), t0(), Duration::minutes(5), 4)
                            .await?;
                        if claimed.is_empty() {
                            return Ok::<_, StoreError>(mine);
                        }
                        mine.extend(claimed.into_iter().map(|c| c.id));
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            match worker.await {
                Ok(result) => all.extend(result?),
                Err(e) => panic!("{}: worker panicked: {e}", t.label),
            }
        }
        all.sort_unstable();
        let before = all.len();
        all.dedup();
        assert_eq!(
            (before, all.len()),
            (60, 60),
            "{}: every action claimed exactly once",
            t.label
        );
    }
    Ok(())
}

#[tokio::test]
async fn actions_are_counted_per_kind_and_rule_for_caps() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let mut actions: Vec<PlannedAction> = (0..3)
            .map(|i| alert("a", "daemon:z", &format!("a{i}")))
            .collect();
        actions.push(alert("b", "daemon:z", "b0"));
        actions.push(PlannedAction {
            dry_run: true,
            ..alert("b", "daemon:z", "b1")
        });
        s.plan(None, &actions, t0()).await?;
        assert_eq!(
            s.count_actions("alert", None, t0()).await?,
            4,
            "{}",
            t.label
        );
        assert_eq!(
            s.count_actions("alert", Some("a"), t0()).await?,
            3,
            "{}",
            t.label
        );
        assert_eq!(
            s.count_actions("refund", None, t0()).await?,
            0,
            "{}",
            t.label
        );
        assert_eq!(
            s.count_actions("alert", None, t0() + Duration::seconds(1))
                .await?,
            0,
            "{}",
            t.label
        );
    }
    Ok(())
}

/// Run one statement on the test's database beside the store, as an older version of
/// nightdesk (or a person) would have left it.
async fn raw_sql(t: &testing::TestStore, statement: &'static str) -> Result<(), StoreError> {
    if let Some(path) = &t.sqlite_path {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = sqlx::SqlitePool::connect_with(options).await?;
        sqlx::query(statement).execute(&pool).await?;
        pool.close().await;
    } else if let Some(url) = &t.postgres_url {
        let pool = sqlx::PgPool::connect(url).await?;
        sqlx::query(statement).execute(&pool).await?;
        pool.close().await;
    }
    Ok(())
}

#[tokio::test]
async fn items_are_read_from_their_body_and_old_rows_from_the_columns() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let o = order("111-0000008-0000008", OrderStatus::Unshipped, t0());
        s.ingest("amazon/us", std::slice::from_ref(&o), None, t0())
            .await?;
        // The body is what is read: a column changed behind the store's back is not.
        raw_sql(&t, "UPDATE order_items SET title = 'from the column'").await?;
        let stored = s.order(SalesChannel::Amazon, &o.id).await?.map(|s| s.order);
        assert_eq!(stored.as_ref(), Some(&o), "{}", t.label);

        // A row written before items had a body is read from its columns.
        raw_sql(
            &t,
            "UPDATE order_items SET body = NULL,
               title = CASE WHEN item_id = 'item-1' THEN 'Kettle' ELSE NULL END",
        )
        .await?;
        let stored = s.order(SalesChannel::Amazon, &o.id).await?.map(|s| s.order);
        assert_eq!(stored.as_ref(), Some(&o), "{}", t.label);
        let open = s.open_orders(t0() - Duration::days(90)).await?;
        assert_eq!(open.len(), 1, "{}", t.label);
        assert_eq!(open[0].order.items, o.items, "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn a_change_inside_an_item_is_a_new_version() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let o = order("111-0000009-0000009", OrderStatus::Unshipped, t0());
        s.ingest("amazon/us", std::slice::from_ref(&o), None, t0())
            .await?;
        // Same order, same update time, same status: only an item differs.
        let mut shipped = o.clone();
        shipped.items[1].quantity_shipped = 2;
        let r = s
            .ingest("amazon/us", std::slice::from_ref(&shipped), None, t0())
            .await?;
        assert_eq!((r.stored, r.unchanged, r.events), (1, 0, 0), "{}", t.label);
        let stored = s.order(SalesChannel::Amazon, &o.id).await?.map(|s| s.order);
        assert_eq!(stored, Some(shipped), "{}", t.label);
    }
    Ok(())
}

fn parcel(number: &str, status: TrackingStatus) -> Shipment {
    Shipment {
        carrier: "UPS".into(),
        tracking_number: number.into(),
        tracking_url: Some(format!("https://www.swiship.com/track?id={number}")),
        status,
        exception_reason: None,
        raw_code: Some("IN_TRANSIT/EVENT_202".into()),
        status_text: Some("Departure scan".into()),
        last_event_at: Some(t0()),
        last_event_location: Some("Phoenix, AZ, US".into()),
        conditions: Vec::new(),
        estimated_delivery: Some(t0() + Duration::days(3)),
    }
}

/// The parcel reference of a [`parcel`].
fn ups(number: &str) -> ParcelRef {
    ParcelRef {
        carrier: "UPS".into(),
        tracking_number: number.into(),
    }
}

fn problem(number: &str, reason: &str, at: DateTime<Utc>) -> Shipment {
    Shipment {
        exception_reason: Some(reason.into()),
        raw_code: Some("IN_TRANSIT/EVENT_402".into()),
        status_text: Some("Customs clearance delay".into()),
        last_event_at: Some(at),
        ..parcel(number, TrackingStatus::Exception)
    }
}

fn kinds(events: &[Event]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind.clone()).collect()
}

#[tokio::test]
async fn a_new_parcel_is_stored_with_one_tracking_event() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let subject = Subject::order(SalesChannel::Amazon, "111-0000010-0000010");
        let p = parcel("1Z0000000000000010", TrackingStatus::InTransit);
        let r = s
            .record_shipments(&subject, std::slice::from_ref(&p), t0())
            .await?;
        assert_eq!(
            (r.new, r.updated, r.unchanged, r.events),
            (1, 0, 0, 1),
            "{}",
            t.label
        );
        let events = s.pending_events(10).await?;
        assert_eq!(
            kinds(&events),
            vec![EventKind::TrackingUpdated {
                from: None,
                to: TrackingStatus::InTransit,
                parcel: ups("1Z0000000000000010"),
            }],
            "{}",
            t.label
        );
        assert_eq!(events[0].subject, subject, "{}", t.label);
        assert_eq!(events[0].at, t0(), "{}", t.label);
        assert_eq!(s.shipments(&subject).await?, vec![p], "{}", t.label);
        let other = Subject::named("fulfillment", "nobody");
        assert!(s.shipments(&other).await?.is_empty(), "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn the_same_parcel_again_changes_nothing() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let subject = Subject::order(SalesChannel::Amazon, "111-0000011-0000011");
        let p = parcel("1Z0000000000000011", TrackingStatus::InTransit);
        s.record_shipments(&subject, std::slice::from_ref(&p), t0())
            .await?;
        let r = s
            .record_shipments(
                &subject,
                std::slice::from_ref(&p),
                t0() + Duration::hours(1),
            )
            .await?;
        assert_eq!(
            (r.new, r.updated, r.unchanged, r.events),
            (0, 0, 1, 0),
            "{}",
            t.label
        );
        assert_eq!(s.pending_events(10).await?.len(), 1, "{}", t.label);

        // A newer scan and ETA with the same status: stored, no event.
        let later = Shipment {
            last_event_at: Some(t0() + Duration::hours(5)),
            estimated_delivery: Some(t0() + Duration::days(4)),
            ..p.clone()
        };
        let r = s
            .record_shipments(&subject, std::slice::from_ref(&later), t0())
            .await?;
        assert_eq!((r.updated, r.events), (1, 0), "{}", t.label);
        assert_eq!(
            s.shipments(&subject).await?,
            vec![later.clone()],
            "{}",
            t.label
        );

        // A report older than the stored one (another source, a late answer) is ignored.
        let stale = parcel("1Z0000000000000011", TrackingStatus::LabelCreated);
        let r = s
            .record_shipments(&subject, std::slice::from_ref(&stale), t0())
            .await?;
        assert_eq!((r.unchanged, r.events), (1, 0), "{}", t.label);
        assert_eq!(s.shipments(&subject).await?, vec![later], "{}", t.label);
        assert_eq!(s.pending_events(10).await?.len(), 1, "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn a_status_change_is_one_event_with_from_and_to() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let subject = Subject::named("fulfillment", "MCF-0012");
        let first = parcel("TBA000000000012", TrackingStatus::InTransit);
        let second = parcel("TBA000000000013", TrackingStatus::InTransit);
        s.record_shipments(&subject, &[first.clone(), second.clone()], t0())
            .await?;
        let out = Shipment {
            status: TrackingStatus::OutForDelivery,
            last_event_at: Some(t0() + Duration::hours(20)),
            ..first.clone()
        };
        let r = s
            .record_shipments(&subject, &[out.clone(), second.clone()], t0())
            .await?;
        assert_eq!((r.updated, r.unchanged, r.events), (1, 1, 1), "{}", t.label);
        let events = s.events_for(subject.as_str()).await?;
        assert_eq!(
            kinds(&events),
            vec![
                EventKind::TrackingUpdated {
                    from: None,
                    to: TrackingStatus::InTransit,
                    parcel: ups("TBA000000000012"),
                },
                EventKind::TrackingUpdated {
                    from: None,
                    to: TrackingStatus::InTransit,
                    parcel: ups("TBA000000000013"),
                },
                EventKind::TrackingUpdated {
                    from: Some(TrackingStatus::InTransit),
                    to: TrackingStatus::OutForDelivery,
                    parcel: ups("TBA000000000012"),
                },
            ],
            "{}",
            t.label
        );
        assert_eq!(
            s.shipments(&subject).await?,
            vec![out, second],
            "{}",
            t.label
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_exception_is_a_tracking_event_and_a_shipment_exception() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let subject = Subject::order(SalesChannel::Amazon, "111-0000014-0000014");
        let number = "1Z0000000000000014";
        s.record_shipments(&subject, &[parcel(number, TrackingStatus::InTransit)], t0())
            .await?;
        let customs = problem(number, "customs", t0() + Duration::hours(1));
        let r = s
            .record_shipments(&subject, std::slice::from_ref(&customs), t0())
            .await?;
        assert_eq!(r.events, 2, "{}", t.label);
        // Still held at customs: nothing new.
        let r = s
            .record_shipments(&subject, std::slice::from_ref(&customs), t0())
            .await?;
        assert_eq!(r.events, 0, "{}", t.label);
        // The problem changes: a new exception, no tracking event (the status did not).
        let lost = problem(number, "lost", t0() + Duration::days(5));
        s.record_shipments(&subject, std::slice::from_ref(&lost), t0())
            .await?;
        // A parcel first seen in trouble, without a reason given.
        let unexplained = Shipment {
            exception_reason: None,
            ..problem("1Z0000000000000015", "", t0())
        };
        s.record_shipments(&subject, &[unexplained], t0()).await?;
        let events = s.pending_events(10).await?;
        assert_eq!(
            kinds(&events),
            vec![
                EventKind::TrackingUpdated {
                    from: None,
                    to: TrackingStatus::InTransit,
                    parcel: ups(number),
                },
                EventKind::TrackingUpdated {
                    from: Some(TrackingStatus::InTransit),
                    to: TrackingStatus::Exception,
                    parcel: ups(number),
                },
                EventKind::ShipmentException {
                    reason: "customs".into(),
                    parcel: ups(number),
                },
                EventKind::ShipmentException {
                    reason: "lost".into(),
                    parcel: ups(number),
                },
                EventKind::TrackingUpdated {
                    from: None,
                    to: TrackingStatus::Exception,
                    parcel: ups("1Z0000000000000015"),
                },
                EventKind::ShipmentException {
                    reason: "other".into(),
                    parcel: ups("1Z0000000000000015"),
                },
            ],
            "{}",
            t.label
        );
        assert!(events.iter().all(|e| e.subject == subject), "{}", t.label);
        // Rules see them like order events, and mark them seen the same way.
        s.plan(Some(events[0].id), &[], t0()).await?;
        assert_eq!(s.pending_events(10).await?.len(), 5, "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn the_same_number_under_two_subjects_is_two_parcels() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let a = Subject::order(SalesChannel::Amazon, "111-0000016-0000016");
        let b = Subject::named("fulfillment", "MCF-0016");
        let p = parcel("1Z0000000000000016", TrackingStatus::InTransit);
        s.record_shipments(&a, std::slice::from_ref(&p), t0())
            .await?;
        let r = s
            .record_shipments(&b, std::slice::from_ref(&p), t0())
            .await?;
        assert_eq!((r.new, r.events), (1, 1), "{}", t.label);
        assert!(
            s.record_shipments(&a, &[], t0()).await?.events == 0,
            "{}",
            t.label
        );
        assert_eq!(s.shipments(&a).await?.len(), 1, "{}", t.label);
        assert_eq!(s.shipments(&b).await?.len(), 1, "{}", t.label);
    }
    Ok(())
}

fn watch_of(subject: &Subject, number: &str, next: DateTime<Utc>) -> ParcelWatch {
    ParcelWatch {
        subject: subject.clone(),
        carrier: "ups".into(),
        tracking_number: number.into(),
        query: format!("{{\"tracking_number\":\"{number}\"}}"),
        shipped_at: Some(t0() - Duration::days(1)),
        promised_by: Some(t0() + Duration::days(4)),
        history: None,
        next_poll_at: next,
        stopped_at: None,
    }
}

#[tokio::test]
async fn watched_parcels_are_added_once_and_come_due_in_order() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let subject = Subject::order(SalesChannel::Amazon, "111-0000020-0000020");
        let later = watch_of(&subject, "1Z0000000000000020", t0() + Duration::hours(1));
        let now = watch_of(&subject, "1Z0000000000000021", t0());
        assert_eq!(
            s.watch_parcels(&[later.clone(), now.clone()], t0()).await?,
            2,
            "{}",
            t.label
        );
        // Watching again changes nothing, even with other values.
        let again = ParcelWatch {
            next_poll_at: t0() - Duration::days(1),
            ..later.clone()
        };
        assert_eq!(s.watch_parcels(&[again], t0()).await?, 0, "{}", t.label);
        let due = s.due_parcels(t0(), 10).await?;
        assert_eq!(due, vec![now.clone()], "{}", t.label);
        let due = s.due_parcels(t0() + Duration::hours(2), 10).await?;
        assert_eq!(due, vec![now.clone(), later.clone()], "{}", t.label);
        let all = s.parcel_watches(Some("1Z0000000000000020")).await?;
        assert_eq!(all, vec![later], "{}", t.label);
        assert_eq!(s.parcel_watches(None).await?.len(), 2, "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn a_parcel_poll_saves_the_watch_and_the_shipment_together() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let subject = Subject::order(SalesChannel::Amazon, "111-0000021-0000021");
        let watch = watch_of(&subject, "1Z0000000000000030", t0());
        s.watch_parcels(std::slice::from_ref(&watch), t0()).await?;
        let polled = ParcelWatch {
            history: Some("{\"events\":[]}".into()),
            next_poll_at: t0() + Duration::hours(3),
            ..watch.clone()
        };
        let mut shipment = parcel("1Z0000000000000030", TrackingStatus::LabelCreated);
        shipment.carrier = "ups".into();
        let r = s.save_parcel_poll(&polled, Some(&shipment), t0()).await?;
        assert_eq!((r.new, r.events), (1, 1), "{}", t.label);
        assert!(
            s.due_parcels(t0() + Duration::hours(1), 10)
                .await?
                .is_empty(),
            "{}",
            t.label
        );
        assert_eq!(
            s.parcel_watches(None).await?,
            vec![polled.clone()],
            "{}",
            t.label
        );
        // A derived condition appearing is an event of its own; the same again is not.
        shipment.conditions = vec!["not_scanned".into()];
        let r = s.save_parcel_poll(&polled, Some(&shipment), t0()).await?;
        assert_eq!((r.updated, r.events), (1, 1), "{}", t.label);
        let r = s.save_parcel_poll(&polled, Some(&shipment), t0()).await?;
        assert_eq!((r.unchanged, r.events), (1, 0), "{}", t.label);
        let events = s.events_for(subject.as_str()).await?;
        assert_eq!(
            kinds(&events).last(),
            Some(&EventKind::TrackingCondition {
                condition: "not_scanned".into(),
                parcel: ParcelRef {
                    carrier: "ups".into(),
                    tracking_number: "1Z0000000000000030".into(),
                },
            }),
            "{}",
            t.label
        );
        // A stopped parcel is never due again.
        let stopped = ParcelWatch {
            stopped_at: Some(t0()),
            next_poll_at: t0(),
            ..polled
        };
        s.save_parcel_poll(&stopped, None, t0()).await?;
        assert!(
            s.due_parcels(t0() + Duration::days(30), 10)
                .await?
                .is_empty(),
            "{}",
            t.label
        );
    }
    Ok(())
}

fn buyer_message(id: &str, received: DateTime<Utc>, do_not_answer: Option<&str>) -> BuyerMessage {
    BuyerMessage {
        id: id.into(),
        channel: SalesChannel::Amazon,
        account: "us".into(),
        marketplace_id: Some("ATVPDKIKX0DER".into()),
        from: "jane@marketplace.amazon.com".into(),
        subject: "Where is my order 111-0000001-0000001?".into(),
        body: "It has not arrived.".into(),
        received_at: received,
        order_id: Some("111-0000001-0000001".into()),
        tracking_number: None,
        language: Some("en".into()),
        intent: Some("where_is_my_order".into()),
        answered: false,
        mail: crate::model::MailHeaders {
            mailbox: "maildir:/mail".into(),
            from_name: Some("Jane Doe".into()),
            message_id: Some(format!("{id}@mail.example")),
            references: Vec::new(),
            reply_to: Some("jane@marketplace.amazon.com".into()),
            do_not_answer: do_not_answer.map(str::to_owned),
            attachments: Vec::new(),
        },
    }
}

#[tokio::test]
async fn mail_is_stored_once_announced_once_and_moves_its_checkpoint() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let asks = buyer_message("m1", t0(), None);
        let auto = buyer_message(
            "m2",
            t0(),
            Some("auto-reply (Auto-Submitted: auto-replied)"),
        );
        assert_eq!(s.mail_checkpoint("imap:a").await?, None, "{}", t.label);

        let r = s
            .store_mail(
                "imap:a",
                &[asks.clone(), auto.clone()],
                r#"{"last_uid":2}"#,
                t0(),
            )
            .await?;
        assert_eq!((r.new, r.duplicates, r.events), (2, 0, 1), "{}", t.label);
        assert_eq!(
            s.mail_checkpoint("imap:a").await?.as_deref(),
            Some(r#"{"last_uid":2}"#),
            "{}",
            t.label
        );
        let events = s.pending_events(10).await?;
        assert_eq!(
            events.len(),
            1,
            "{}: the auto-reply is not announced",
            t.label
        );
        assert_eq!(events[0].subject.as_str(), "message:m1", "{}", t.label);
        assert_eq!(
            events[0].kind,
            EventKind::BuyerMessageReceived,
            "{}",
            t.label
        );

        // Read again (a restart before the checkpoint was kept): nothing new.
        let r = s
            .store_mail(
                "imap:a",
                std::slice::from_ref(&asks),
                r#"{"last_uid":3}"#,
                t0(),
            )
            .await?;
        assert_eq!((r.new, r.duplicates, r.events), (0, 1, 0), "{}", t.label);
        assert_eq!(s.pending_events(10).await?.len(), 1, "{}", t.label);
        assert_eq!(
            s.buyer_message("m1").await?,
            Some(asks.clone()),
            "{}",
            t.label
        );
        assert_eq!(
            s.buyer_messages(Some("111-0000001-0000001")).await?.len(),
            2,
            "{}",
            t.label
        );
        assert_eq!(s.buyer_message("nope").await?, None, "{}", t.label);

        // One buyer about one order is one thread; another order is another.
        let mut later = buyer_message("m3", t0() + Duration::hours(1), None);
        later.mail.reply_to = Some("JANE@marketplace.amazon.com".into());
        let mut other_order = buyer_message("m4", t0(), None);
        other_order.order_id = Some("111-0000002-0000002".into());
        s.store_mail("imap:a", &[later.clone(), other_order], "{}", t0())
            .await?;
        let thread: Vec<String> = s
            .thread(&asks.thread_key())
            .await?
            .into_iter()
            .map(|m| m.id)
            .collect();
        assert_eq!(thread, ["m1", "m2", "m3"], "{}", t.label);
    }
    Ok(())
}

#[tokio::test]
async fn the_clock_flags_unanswered_mail_once_and_only_substantive_replies_stop_it()
-> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let early = buyer_message("early", t0(), None);
        let acked = buyer_message("acked", t0(), None);
        let answered = buyer_message("answered", t0(), None);
        let late = buyer_message("late", t0() + Duration::hours(2), None);
        let auto = buyer_message("auto", t0(), Some("notification"));
        s.store_mail("m", &[early, acked, answered, late, auto], "{}", t0())
            .await?;
        let reply = |to: &str, substantive: bool, at: DateTime<Utc>| SentReply {
            message_id: format!("reply-{to}@nightdesk"),
            buyer_message: to.into(),
            outbox_id: Some(1),
            template: if substantive {
                "where_is_my_parcel_fbm"
            } else {
                "acknowledge"
            }
            .into(),
            substantive,
            sent_at: at,
            body: "Subject: Re: …\r\n\r\nYour parcel is out for delivery.".into(),
        };
        s.record_reply(&reply("acked", false, t0() + Duration::minutes(2)))
            .await?;
        s.record_reply(&reply("answered", true, t0() + Duration::hours(1)))
            .await?;
        // Repeating the record changes nothing.
        s.record_reply(&reply("answered", true, t0() + Duration::hours(1)))
            .await?;
        assert_eq!(
            s.buyer_message("answered").await?.map(|m| m.answered),
            Some(true),
            "{}",
            t.label
        );
        assert_eq!(
            s.buyer_message("acked").await?.map(|m| m.answered),
            Some(false),
            "{}: an acknowledgement does not stop the clock",
            t.label
        );
        assert_eq!(
            s.sent_replies(Some("answered")).await?.len(),
            1,
            "{}",
            t.label
        );
        assert_eq!(s.sent_replies(None).await?.len(), 2, "{}", t.label);

        // Hour 20 for the two that arrived at t0 and got no substantive reply.
        let now = t0() + Duration::hours(20);
        let flagged = s
            .raise_sla_at_risk(now - Duration::hours(20), 20, now)
            .await?;
        assert_eq!(
            flagged,
            vec!["acked".to_owned(), "early".to_owned()],
            "{}",
            t.label
        );
        let again = s
            .raise_sla_at_risk(now + Duration::hours(3) - Duration::hours(20), 20, now)
            .await?;
        assert_eq!(again, vec!["late".to_owned()], "{}: once each", t.label);
        let sla: Vec<String> = s
            .pending_events(100)
            .await?
            .into_iter()
            .filter(|e| e.kind == EventKind::SlaAtRisk { hours: 20 })
            .map(|e| e.subject.as_str().to_owned())
            .collect();
        assert_eq!(
            sla,
            vec!["message:acked", "message:early", "message:late"],
            "{}",
            t.label
        );
    }
    Ok(())
}

#[tokio::test]
async fn ingest_indexes_the_customer_and_rewrites_the_keys_with_the_order() -> Result<(), StoreError>
{
    for t in stores().await {
        let s = &t.store;
        let mut shop = order("#10482", OrderStatus::Shipped, t0());
        shop.channel = SalesChannel::Shopify;
        shop.customer = crate::model::Customer {
            email: Some("Elodie.Fournier@example.fr".into()),
            name: Some("Élodie Fournier".into()),
            postcode: Some("69002".into()),
            city: Some("Lyon".into()),
            country: Some("FR".into()),
        };
        s.ingest(
            "shopify/main",
            std::slice::from_ref(&shop),
            Some(t0()),
            t0(),
        )
        .await?;
        let by_name = s
            .customer_orders(&["name:elodie fournier".to_owned()])
            .await?;
        assert_eq!(
            by_name,
            [("shopify".to_owned(), "#10482".to_owned())],
            "{}",
            t.label
        );
        let by_mail = s
            .customer_orders(&["email:elodie.fournier@example.fr".to_owned()])
            .await?;
        assert_eq!(by_mail.len(), 1, "{}", t.label);

        // A new version under another name drops the old keys.
        shop.customer.name = Some("Élodie Martin".into());
        shop.last_update = t0() + Duration::minutes(5);
        s.ingest(
            "shopify/main",
            std::slice::from_ref(&shop),
            Some(t0()),
            t0(),
        )
        .await?;
        assert!(
            s.customer_orders(&["name:elodie fournier".to_owned()])
                .await?
                .is_empty(),
            "{}",
            t.label
        );
        assert_eq!(
            s.customer_orders(&["name:elodie martin".to_owned()])
                .await?
                .len(),
            1,
            "{}",
            t.label
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_lease_has_one_live_holder_and_changes_hands_only_when_expired_or_released()
-> Result<(), StoreError> {
    let ttl = Duration::seconds(15);
    for t in stores().await {
        let s = &t.store;
        let label = t.label;
        assert_eq!(
            s.acquire_lease("poll/a", "one", ttl, t0()).await?,
            Some(1),
            "{label}"
        );
        // Live: the other instance is refused, the holder renews with the same fence.
        assert_eq!(
            s.acquire_lease("poll/a", "two", ttl, t0() + Duration::seconds(5))
                .await?,
            None,
            "{label}"
        );
        assert_eq!(
            s.acquire_lease("poll/a", "one", ttl, t0() + Duration::seconds(10))
                .await?,
            Some(1),
            "{label}"
        );
        // Renewed at +10 s: still live at +20 s, expired after +25 s.
        assert_eq!(
            s.acquire_lease("poll/a", "two", ttl, t0() + Duration::seconds(20))
                .await?,
            None,
            "{label}"
        );
        assert_eq!(
            s.acquire_lease("poll/a", "two", ttl, t0() + Duration::seconds(26))
                .await?,
            Some(2),
            "{label}"
        );
        // The old holder coming back finds it taken.
        assert_eq!(
            s.acquire_lease("poll/a", "one", ttl, t0() + Duration::seconds(27))
                .await?,
            None,
            "{label}"
        );
        // Names are independent.
        assert_eq!(
            s.acquire_lease("sweep", "one", ttl, t0() + Duration::seconds(27))
                .await?,
            Some(1),
            "{label}"
        );
        // Releasing gives up only the caller's leases, and the next taker gets a new fence.
        assert_eq!(s.release_leases("two").await?, 1, "{label}");
        assert_eq!(
            s.acquire_lease("sweep", "two", ttl, t0() + Duration::seconds(28))
                .await?,
            None,
            "{label}"
        );
        assert_eq!(
            s.acquire_lease("poll/a", "one", ttl, t0() + Duration::seconds(28))
                .await?,
            Some(3),
            "{label}"
        );
        let leases = s.leases().await?;
        let holders: Vec<(&str, &str, i64)> = leases
            .iter()
            .map(|l| (l.name.as_str(), l.holder.as_str(), l.fence))
            .collect();
        assert_eq!(
            holders,
            vec![("poll/a", "one", 3), ("sweep", "one", 1)],
            "{label}"
        );
        assert!(
            leases
                .iter()
                .all(|l| l.is_live(t0() + Duration::seconds(29))),
            "{label}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn health_keeps_the_last_good_poll_the_last_error_and_the_failure_streak()
-> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let label = t.label;
        s.ping().await?;
        assert!(s.source_health().await?.is_empty(), "{label}");

        s.record_poll("amazon/us", Ok(()), t0()).await?;
        let later = t0() + Duration::minutes(5);
        s.record_poll("amazon/us", Err("getOrders: throttled"), later)
            .await?;
        s.record_poll(
            "amazon/us",
            Err("getOrders: server error 503"),
            later + Duration::minutes(5),
        )
        .await?;
        s.record_poll("shopify/shop", Err("orders: timed out"), t0())
            .await?;
        let health = s.source_health().await?;
        assert_eq!(health.len(), 2, "{label}: {health:?}");
        let us = &health[0];
        assert_eq!(us.source, "amazon/us", "{label}");
        assert_eq!(us.last_good_at, Some(t0()), "{label}");
        assert_eq!(us.last_attempt_at, later + Duration::minutes(5), "{label}");
        assert_eq!(us.consecutive_failures, 2, "{label}");
        assert_eq!(
            us.last_error.as_deref(),
            Some("getOrders: server error 503"),
            "{label}"
        );
        assert_eq!(health[1].last_good_at, None, "{label}: never good");

        // A good poll resets the streak and keeps the last error as history.
        let good = later + Duration::minutes(10);
        s.record_poll("amazon/us", Ok(()), good).await?;
        let us = &s.source_health().await?[0];
        assert_eq!(
            (us.last_good_at, us.consecutive_failures),
            (Some(good), 0),
            "{label}"
        );
        assert_eq!(
            us.last_error_at,
            Some(later + Duration::minutes(5)),
            "{label}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn quarantines_sync_per_instance_and_keep_when_they_began() -> Result<(), StoreError> {
    let quarantine = |instance: &str, rule: &str, version: &str, since| RuleQuarantine {
        instance: instance.into(),
        rule: rule.into(),
        version: version.into(),
        error: format!("{rule} failed"),
        since,
    };
    for t in stores().await {
        let s = &t.store;
        let label = t.label;
        s.sync_quarantines("a", &[quarantine("a", "loops", "v1", t0())])
            .await?;
        s.sync_quarantines("b", &[quarantine("b", "loops", "v1", t0())])
            .await?;
        // Synced again later, still quarantined at the same version: `since` stays.
        let later = t0() + Duration::hours(1);
        s.sync_quarantines(
            "a",
            &[
                quarantine("a", "loops", "v1", later),
                quarantine("a", "divides", "v3", later),
            ],
        )
        .await?;
        let stored = s.quarantines().await?;
        let seen: Vec<(&str, &str, DateTime<Utc>)> = stored
            .iter()
            .map(|q| (q.rule.as_str(), q.instance.as_str(), q.since))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("divides", "a", later),
                ("loops", "a", t0()),
                ("loops", "b", t0())
            ],
            "{label}"
        );
        // A new version of the file quarantined again starts a new quarantine; a rule
        // no longer quarantined on `a` leaves `b`'s alone.
        s.sync_quarantines("a", &[quarantine("a", "divides", "v4", later)])
            .await?;
        let stored = s.quarantines().await?;
        let seen: Vec<(&str, &str, &str)> = stored
            .iter()
            .map(|q| (q.rule.as_str(), q.instance.as_str(), q.version.as_str()))
            .collect();
        assert_eq!(
            seen,
            vec![("divides", "a", "v4"), ("loops", "b", "v1")],
            "{label}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn outbox_states_and_open_mail_clocks_are_counted() -> Result<(), StoreError> {
    for t in stores().await {
        let s = &t.store;
        let label = t.label;
        let mut held = alert("r", "order:amazon:1", "k-held");
        held.hold = Some("needs approval".into());
        s.plan(
            None,
            &[
                alert("r", "order:amazon:1", "k1"),
                alert("r", "order:amazon:2", "k2"),
                held,
            ],
            t0(),
        )
        .await?;
        let states: Vec<(String, i64)> = s
            .outbox_states()
            .await?
            .into_iter()
            .map(|c| (c.state, c.count))
            .collect();
        assert_eq!(
            states,
            vec![("held".to_owned(), 1), ("planned".to_owned(), 2)],
            "{label}"
        );

        let first = buyer_message("m1", t0(), None);
        let second = buyer_message("m2", t0() + Duration::hours(2), None);
        let auto = buyer_message("m3", t0() - Duration::hours(1), Some("auto-reply"));
        s.store_mail("imap:a", &[first, second, auto], "{}", t0())
            .await?;
        let clocks = s.open_mail_clocks().await?;
        assert_eq!(clocks.len(), 1, "{label}: {clocks:?}");
        assert_eq!(
            (clocks[0].open, clocks[0].oldest_received),
            (2, t0()),
            "{label}: the auto-reply runs no clock"
        );
    }
    Ok(())
}
