use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::model::{Fulfillment, Order, OrderStatus, PlannedAction, SalesChannel, StoredOrder};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn stored(status: OrderStatus, purchased_days_ago: i64) -> StoredOrder {
    let purchase = now() - Duration::days(purchased_days_ago) - Duration::hours(1);
    StoredOrder {
        order: Order {
            customer: Default::default(),
            channel: SalesChannel::Amazon,
            account: "us".into(),
            id: "113-4829301-5520617".into(),
            marketplace_id: Some("ATVPDKIKX0DER".into()),
            status,
            fulfillment: Some(Fulfillment::Mfn),
            purchase_date: purchase,
            last_update: purchase,
            earliest_ship_date: None,
            latest_ship_date: None,
            earliest_delivery_date: None,
            latest_delivery_date: None,
            total: None,
            order_type: None,
            is_prime: false,
            is_business: false,
            items: vec![],
            details: Default::default(),
        },
        status_since: purchase,
        first_seen: purchase,
    }
}

fn engine() -> RuleEngine {
    RuleEngine::new(RuleLimits::default())
}

fn compile(engine: &RuleEngine, name: &str, source: &str) -> Result<Rule, RuleError> {
    engine.compile(Path::new(&format!("rules/{name}.rhai")), source)
}

fn set(engine: &RuleEngine, rules: &[(&str, &str)]) -> RuleSet {
    let rules = rules
        .iter()
        .map(|(name, source)| compile(engine, name, source))
        .collect::<Result<Vec<_>, _>>();
    match rules {
        Ok(rules) => RuleSet { rules },
        Err(e) => panic!("{e}"),
    }
}

fn sweep(engine: &RuleEngine, rules: &RuleSet, order: &StoredOrder) -> Vec<RuleOutcome> {
    engine.run(rules, HOOK_ORDER_SWEEP, &[view::order(order, now())])
}

fn requests(outcomes: &[RuleOutcome]) -> Vec<ActionRequest> {
    outcomes
        .iter()
        .flat_map(|o| match o {
            RuleOutcome::Ran { requests, .. } => {
                requests.iter().map(|r| r.request.clone()).collect()
            }
            _ => vec![],
        })
        .collect()
}

#[test]
fn shipped_rules_compile() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let loaded = engine().load_dir(&dir);
    let Ok(rules) = loaded else {
        panic!("{loaded:?}")
    };
    assert!(rules.rules.iter().any(|r| r.name == "pending_over_7_days"));
}

#[test]
fn pending_over_7_days_alerts_only_for_long_pending_orders() {
    let e = engine();
    let source = include_str!("../../rules/pending_over_7_days.rhai");
    let rules = set(&e, &[("pending_over_7_days", source)]);
    let alerts = requests(&sweep(&e, &rules, &stored(OrderStatus::Pending, 9)));
    assert_eq!(alerts.len(), 1);
    let ActionRequest::Alert { channel, text } = &alerts[0] else {
        panic!("{alerts:?}")
    };
    assert_eq!(channel, "ops");
    assert!(
        text.contains("113-4829301-5520617") && text.contains("(FBM)"),
        "{text}"
    );
    assert!(requests(&sweep(&e, &rules, &stored(OrderStatus::Pending, 7))).is_empty());
    assert!(requests(&sweep(&e, &rules, &stored(OrderStatus::Unshipped, 9))).is_empty());
}

#[test]
fn the_same_condition_gives_the_same_key_every_day() {
    let e = engine();
    let rules = set(
        &e,
        &[(
            "pending_over_7_days",
            include_str!("../../rules/pending_over_7_days.rhai"),
        )],
    );
    let order = stored(OrderStatus::Pending, 9);
    let day1 = plan(&sweep(&e, &rules, &order), &order.order.subject(), now());
    let day2 = plan(
        &e.run(
            &rules,
            HOOK_ORDER_SWEEP,
            &[view::order(&order, now() + Duration::days(1))],
        ),
        &order.order.subject(),
        now() + Duration::days(1),
    );
    assert_eq!(day1.len(), 1);
    assert_eq!(day1[0].idempotency_key, day2[0].idempotency_key);
    assert!(
        day1[0]
            .idempotency_key
            .starts_with("pending_over_7_days|order:amazon/113-4829301-5520617|alert|")
    );
}

#[test]
fn a_syntax_error_names_file_and_line() {
    let err = compile(
        &engine(),
        "broken",
        "fn on_order_sweep(order) {\n  let x = ;\n}\n",
    )
    .err();
    match err {
        Some(RuleError::Compile { path, line, .. }) => {
            assert_eq!(path, "rules/broken.rhai");
            assert_eq!(line, Some(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_hooks_and_wrong_arity_are_compile_errors() {
    let e = engine();
    let typo = compile(&e, "t", "fn on_order_swep(order) {}")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(typo.contains("unknown hook on_order_swep"), "{typo}");
    let arity = compile(&e, "a", "fn on_order_sweep(order, extra) {}")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(arity.contains("takes 1 parameter"), "{arity}");
    let none = compile(&e, "n", "let x = 1;")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(none.contains("defines no hook"), "{none}");
}

#[test]
fn a_runaway_rule_is_stopped_and_quarantined_while_others_act() {
    let e = engine();
    let rules = set(
        &e,
        &[
            ("a_runaway", "fn on_order_sweep(order) { loop { } }"),
            (
                "b_good",
                "fn on_order_sweep(order) { alert(\"ops\", `seen ${order.id}`); }",
            ),
        ],
    );
    let started = std::time::Instant::now();
    let first = sweep(&e, &rules, &stored(OrderStatus::Pending, 1));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        matches!(
            &first[0],
            RuleOutcome::Failed {
                error: RuleError::Limit { .. },
                quarantined_now: true,
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(requests(&first).len(), 1);
    let second = sweep(&e, &rules, &stored(OrderStatus::Pending, 1));
    assert!(
        matches!(&second[0], RuleOutcome::Quarantined { .. }),
        "{second:?}"
    );
    assert_eq!(requests(&second).len(), 1);
    assert_eq!(e.quarantined(), vec!["a_runaway".to_owned()]);
}

#[test]
fn a_wall_clock_deadline_stops_slow_rules_under_the_operation_limit() {
    let limits = RuleLimits {
        max_operations: u64::MAX / 2,
        timeout_ms: 50,
        ..RuleLimits::default()
    };
    let e = RuleEngine::new(limits);
    let rules = set(
        &e,
        &[(
            "slow",
            "fn on_order_sweep(order) { let n = 0; while true { n += 1; } }",
        )],
    );
    let started = std::time::Instant::now();
    let out = sweep(&e, &rules, &stored(OrderStatus::Pending, 1));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    let message = match &out[0] {
        RuleOutcome::Failed { error, .. } => error.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(message.contains("time limit"), "{message}");
}

#[test]
fn memory_and_recursion_bombs_are_refused() {
    let e = engine();
    let rules = set(
        &e,
        &[
            (
                "string_bomb",
                "fn on_order_sweep(order) { let s = \"xx\"; loop { s += s; } }",
            ),
            (
                "array_bomb",
                "fn on_order_sweep(order) { let a = [1]; loop { a += a; } }",
            ),
            (
                "map_bomb",
                "fn on_order_sweep(order) { let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; } }",
            ),
            (
                "recursion",
                "fn deep(n) { deep(n + 1) } fn on_order_sweep(order) { deep(0); }",
            ),
        ],
    );
    for outcome in sweep(&e, &rules, &stored(OrderStatus::Pending, 1)) {
        assert!(
            matches!(
                outcome,
                RuleOutcome::Failed {
                    error: RuleError::Limit { .. },
                    ..
                }
            ),
            "{outcome:?}"
        );
    }
}

#[test]
fn no_modules_files_eval_sleep_or_clock() {
    let e = engine();
    let import = compile(&e, "i", "fn on_order_sweep(order) { import \"x\" as x; }");
    assert!(
        import
            .err()
            .is_some_and(|e| e.to_string().contains("import"))
    );
    assert!(compile(&e, "e", "fn on_order_sweep(order) { eval(\"1\"); }").is_err());
    for (name, body) in [
        ("sleep", "sleep(10);"),
        ("timestamp", "let t = timestamp();"),
        ("open", "let f = open_file(\"/etc/passwd\");"),
    ] {
        let source = format!("fn on_order_sweep(order) {{ {body} }}");
        let outcome = match compile(&e, name, &source) {
            Err(_) => continue, // strict variables may refuse it at compile time: fine
            Ok(rule) => sweep(
                &e,
                &RuleSet { rules: vec![rule] },
                &stored(OrderStatus::Pending, 1),
            ),
        };
        assert!(
            matches!(
                &outcome[0],
                RuleOutcome::Failed {
                    error: RuleError::Runtime { .. },
                    ..
                }
            ),
            "{name}: {outcome:?}"
        );
    }
}

#[test]
fn a_misspelt_field_is_an_error_not_silence() {
    let e = engine();
    let rules = set(
        &e,
        &[(
            "typo",
            "fn on_order_sweep(order) { if order.statsu == \"Pending\" { alert(\"ops\", \"x\"); } }",
        )],
    );
    let out = sweep(&e, &rules, &stored(OrderStatus::Pending, 9));
    let message = match &out[0] {
        RuleOutcome::Failed { error, .. } => error.to_string(),
        other => panic!("{other:?}"),
    };
    assert!(
        message.contains("statsu") && message.contains("rules/typo.rhai:1"),
        "{message}"
    );
}

#[test]
fn three_failures_in_a_row_quarantine_until_the_file_changes() {
    let e = engine();
    let rules = set(
        &e,
        &[("flaky", "fn on_order_sweep(order) { throw \"boom\"; }")],
    );
    let order = stored(OrderStatus::Pending, 1);
    let quarantined: Vec<bool> = (0..3)
        .map(|_| {
            matches!(
                sweep(&e, &rules, &order)[0],
                RuleOutcome::Failed {
                    quarantined_now: true,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(quarantined, vec![false, false, true]);
    assert!(matches!(
        sweep(&e, &rules, &order)[0],
        RuleOutcome::Quarantined { .. }
    ));
    let fixed = set(&e, &[("flaky", "fn on_order_sweep(order) { }")]);
    assert!(matches!(
        sweep(&e, &fixed, &order)[0],
        RuleOutcome::Ran { .. }
    ));
}

fn planned(e: &RuleEngine, source: &str, order: &StoredOrder) -> Vec<PlannedAction> {
    let rules = set(e, &[("r", source)]);
    plan(&sweep(e, &rules, order), &order.order.subject(), now())
}

fn failure(e: &RuleEngine, source: &str, order: &StoredOrder) -> String {
    let rules = set(e, &[("r", source)]);
    match &sweep(e, &rules, order)[0] {
        RuleOutcome::Failed { error, .. } => error.to_string(),
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn every_action_kind_is_planned_as_data() {
    let e = engine();
    let order = stored(OrderStatus::Unshipped, 2);
    let source = r#"fn on_order_sweep(order) {
        cancel(order, "BuyerCanceled");
        refund(order, #{ reason: "NoInventory", items: ["item-1", #{ id: "item-2", quantity: 1, amount: "5.00" }] });
        notify_buyer(order, "unexpectedProblem", "shipping_exception");
        tag(order, "vip");
    }"#;
    let actions = planned(&e, source, &order);
    let kinds: Vec<&str> = actions.iter().map(|a| a.request.kind()).collect();
    assert_eq!(kinds, vec!["cancel", "refund", "notify_buyer", "tag"]);
    assert!(
        actions
            .iter()
            .all(|a| a.subject == order.order.subject() && a.hold.is_none())
    );
    let ActionRequest::Refund { items, reason, .. } = &actions[1].request else {
        panic!("{actions:?}")
    };
    assert_eq!(reason, "NoInventory");
    assert_eq!(items.len(), 2);
    assert_eq!(items[1].quantity, Some(1));
    assert_eq!(items[1].amount.as_deref(), Some("5.00"));
}

#[test]
fn hold_marks_an_action_for_approval() {
    let e = engine();
    let order = stored(OrderStatus::Unshipped, 2);
    let actions = planned(
        &e,
        r#"fn on_order_sweep(order) { hold(refund(order, #{ reason: "CustomerReturn" }), "refund over 100"); }"#,
        &order,
    );
    assert_eq!(actions[0].hold.as_deref(), Some("refund over 100"));
}

#[test]
fn unsafe_or_unknown_requests_are_rule_errors() {
    let e = engine();
    let pending = stored(OrderStatus::Pending, 2);
    let shipped = stored(OrderStatus::Shipped, 2);
    let unshipped = stored(OrderStatus::Unshipped, 2);
    let refund_pending = failure(
        &e,
        r#"fn on_order_sweep(o) { refund(o, #{ reason: "NoInventory" }); }"#,
        &pending,
    );
    assert!(
        refund_pending.contains("can never be refunded"),
        "{refund_pending}"
    );
    let cancel_shipped = failure(
        &e,
        r#"fn on_order_sweep(o) { cancel(o, "BuyerCanceled"); }"#,
        &shipped,
    );
    assert!(
        cancel_shipped.contains("only unshipped orders"),
        "{cancel_shipped}"
    );
    // A literal is caught when the rule compiles; a computed one when it runs.
    let literal = compile(&e, "r", r#"fn on_order_sweep(o) { cancel(o, "Because"); }"#).err();
    assert!(
        matches!(&literal, Some(RuleError::Compile { line: Some(1), .. })),
        "{literal:?}"
    );
    let bad_reason = failure(
        &e,
        r#"fn on_order_sweep(o) { let why = "Be" + "cause"; cancel(o, why); }"#,
        &unshipped,
    );
    assert!(
        bad_reason.contains("unknown cancel reason \"Because\""),
        "{bad_reason}"
    );
    let bad_type = failure(
        &e,
        r#"fn on_order_sweep(o) { let t = "please" + "Review"; notify_buyer(o, t, "t"); }"#,
        &unshipped,
    );
    assert!(bad_type.contains("unknown message type"), "{bad_type}");
    let reply_to_order = failure(&e, r#"fn on_order_sweep(o) { reply(o, "t"); }"#, &unshipped);
    assert!(
        reply_to_order.contains("reply() takes the message"),
        "{reply_to_order}"
    );
    let bad_option = failure(
        &e,
        r#"fn on_order_sweep(o) { alert("ops", "x", #{ once_per: "fortnight" }); }"#,
        &unshipped,
    );
    assert!(bad_option.contains("once_per"), "{bad_option}");
}

#[test]
fn key_options_decide_how_often_an_action_happens() {
    let e = engine();
    let order = stored(OrderStatus::Unshipped, 2);
    let keys = |source: &str, at: DateTime<Utc>| -> Vec<String> {
        let rules = set(&e, &[("r", source)]);
        let outcomes = e.run(&rules, HOOK_ORDER_SWEEP, &[view::order(&order, at)]);
        plan(&outcomes, &order.order.subject(), at)
            .into_iter()
            .map(|a| a.idempotency_key)
            .collect()
    };
    let daily = r#"fn on_order_sweep(o) { alert("ops", "still open", #{ once_per: "day" }); }"#;
    assert_ne!(keys(daily, now()), keys(daily, now() + Duration::days(1)));
    assert_eq!(keys(daily, now()), keys(daily, now() + Duration::hours(1)));
    let explicit = r#"fn on_order_sweep(o) { alert("ops", `open for ${o.age_days} days`, #{ key: `open-${o.id}` }); }"#;
    let explicit_keys = keys(explicit, now());
    assert_eq!(explicit_keys, keys(explicit, now() + Duration::days(3)));
    assert_eq!(
        explicit_keys,
        vec!["r|key:open-113-4829301-5520617".to_owned()]
    );
}

#[test]
fn the_marketplace_gives_the_order_its_language_and_time_zone() {
    let e = engine();
    let mut order = stored(OrderStatus::Unshipped, 1);
    order.order.marketplace_id = Some("A1PA6795UKMFR9".into());
    let rules = set(
        &e,
        &[(
            "r",
            "fn on_order_sweep(o) { alert(\"ops\", `${o.language} ${o.timezone}`); }",
        )],
    );
    let asked = requests(&sweep(&e, &rules, &order));
    assert_eq!(
        asked,
        vec![ActionRequest::Alert {
            channel: "ops".into(),
            text: "de Europe/Berlin".into()
        }]
    );
}
