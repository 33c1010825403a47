//! Rule evaluation throughput: the shipped rules' sweep hooks over realistic order
//! state, against the same checks written as plain Rust. Run with
//! `cargo bench --bench rules`; throughput is orders per second on one core (each order
//! is one evaluation of every rule with an `on_order_sweep` hook).

use std::hint::black_box;
use std::path::Path;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nightdesk::config::RuleLimits;
use nightdesk::model::{
    Fulfillment, Money, Order, OrderItem, OrderStatus, SalesChannel, StoredOrder,
};
use nightdesk::rules::{HOOK_ORDER_SWEEP, RuleEngine, RuleOutcome, view};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A realistic mix: mostly shipped or unshipped orders, some pending, two items each.
fn orders(n: usize) -> Vec<StoredOrder> {
    (0..n)
        .map(|i| {
            let status = match i % 10 {
                0 => OrderStatus::Pending,
                1..=3 => OrderStatus::Unshipped,
                _ => OrderStatus::Shipped,
            };
            let purchase = now() - Duration::hours(6 * (i as i64 % 400));
            let item = |k: usize| OrderItem {
                id: format!("{i}-{k}"),
                asin: Some(format!("B0{i:08}")),
                sku: Some(format!("SKU-{k}")),
                title: Some("Burr coffee grinder".into()),
                quantity_ordered: 1,
                quantity_shipped: 0,
                price: Some(Money {
                    currency: "USD".into(),
                    amount: "49.99".into(),
                }),
                tax: Some(Money {
                    currency: "USD".into(),
                    amount: "4.00".into(),
                }),
                buyer_requested_cancel: false,
                buyer_cancel_reason: None,
                details: Default::default(),
            };
            StoredOrder {
                order: Order {
                    customer: Default::default(),
                    channel: SalesChannel::Amazon,
                    account: "us".into(),
                    id: format!("113-{:07}-{:07}", i, i * 7 % 10_000_000),
                    marketplace_id: Some("ATVPDKIKX0DER".into()),
                    status,
                    fulfillment: Some(if i % 2 == 0 {
                        Fulfillment::Afn
                    } else {
                        Fulfillment::Mfn
                    }),
                    purchase_date: purchase,
                    last_update: purchase + Duration::hours(1),
                    earliest_ship_date: None,
                    latest_ship_date: Some(purchase + Duration::days(2)),
                    earliest_delivery_date: None,
                    latest_delivery_date: Some(purchase + Duration::days(5)),
                    total: Some(Money {
                        currency: "USD".into(),
                        amount: "107.98".into(),
                    }),
                    order_type: Some("StandardOrder".into()),
                    is_prime: i % 3 == 0,
                    is_business: false,
                    items: vec![item(0), item(1)],
                    details: Default::default(),
                },
                status_since: purchase,
                first_seen: purchase,
            }
        })
        .collect()
}

/// cancellation's sweep hook as plain Rust.
fn native_cancellation(order: &StoredOrder) -> Option<&'static str> {
    let o = &order.order;
    let unshipped = matches!(
        o.status,
        OrderStatus::Unshipped | OrderStatus::PartiallyShipped
    );
    (o.channel == SalesChannel::Amazon
        && o.fulfillment == Some(Fulfillment::Mfn)
        && o.buyer_requested_cancel()
        && unshipped)
        .then_some("BuyerCanceled")
}

/// pending_over_7_days as plain Rust.
fn native_pending_over_7_days(order: &StoredOrder, now: DateTime<Utc>) -> Option<String> {
    let o = &order.order;
    if o.channel != SalesChannel::Amazon
        || o.status != OrderStatus::Pending
        || (now - o.purchase_date).num_days() <= 7
    {
        return None;
    }
    let channel = if o.fulfillment == Some(Fulfillment::Afn) {
        "FBA"
    } else {
        "FBM"
    };
    Some(format!(
        "Amazon order {} ({channel}) has been Pending since {}, more than 7 days.",
        o.id, o.purchase_date
    ))
}

fn bench(c: &mut Criterion) {
    let engine = RuleEngine::new(RuleLimits::default());
    let rules = match engine.load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")) {
        Ok(rules) => rules,
        Err(e) => panic!("shipped rules do not compile: {e:?}"),
    };
    let sweepers = rules
        .rules
        .iter()
        .filter(|r| r.has_hook(HOOK_ORDER_SWEEP))
        .count();
    let orders = orders(1000);
    let maps: Vec<_> = orders.iter().map(|o| view::order(o, now())).collect();

    let mut group = c.benchmark_group("order_sweep");
    group.throughput(Throughput::Elements(orders.len() as u64));
    group.bench_function(format!("rhai_eval_{sweepers}_rules"), |b| {
        b.iter(|| {
            let mut asked = 0;
            for map in &maps {
                for outcome in engine.run(&rules, HOOK_ORDER_SWEEP, std::slice::from_ref(map)) {
                    if let RuleOutcome::Ran { requests, .. } = outcome {
                        asked += requests.len();
                    }
                }
            }
            black_box(asked)
        })
    });
    group.bench_function(format!("rhai_view_and_eval_{sweepers}_rules"), |b| {
        b.iter(|| {
            let mut asked = 0;
            for order in &orders {
                let map = view::order(order, now());
                for outcome in engine.run(&rules, HOOK_ORDER_SWEEP, &[map]) {
                    if let RuleOutcome::Ran { requests, .. } = outcome {
                        asked += requests.len();
                    }
                }
            }
            black_box(asked)
        })
    });
    group.bench_function("plain_rust_same_checks", |b| {
        b.iter(|| {
            let asked: usize = orders
                .iter()
                .map(|o| {
                    usize::from(native_pending_over_7_days(o, now()).is_some())
                        + usize::from(native_cancellation(o).is_some())
                })
                .sum();
            black_box(asked)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
