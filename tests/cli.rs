//! The `nightdesk` binary as ops run it.

use std::path::Path;
use std::process::{Command, Output};

fn nightdesk(args: &[&str], cwd: &Path) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_nightdesk"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .output();
    match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run nightdesk: {e}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `nightdesk demo --once` on the shipped demo config and the SQLite file `db`.
fn demo_run(db: &Path) -> Output {
    let config = repo().join("config/demo.yaml");
    nightdesk(
        &[
            "demo",
            "--once",
            "--config",
            &config.to_string_lossy(),
            "--db",
            &db.to_string_lossy(),
        ],
        repo(),
    )
}

/// [`demo_run`]'s stdout, after asserting it succeeded.
fn demo_once(db: &Path) -> String {
    let out = demo_run(db);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    stdout
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn check_passes_on_the_shipped_config_and_rules() {
    let out = nightdesk(
        &["check", "--config", "config/nightdesk.example.yaml"],
        repo(),
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("rule pending_over_7_days ok"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_names_file_and_line_of_a_rule_syntax_error() {
    let dir = tempdir();
    let rules = dir.path().join("rules");
    assert!(std::fs::create_dir(&rules).is_ok());
    assert!(std::fs::write(rules.join("good.rhai"), "fn on_order_sweep(order) { }\n").is_ok());
    assert!(
        std::fs::write(
            rules.join("broken.rhai"),
            "// a rule\nfn on_order_sweep(order) {\n    let days = ;\n}\n"
        )
        .is_ok()
    );
    let out = nightdesk(&["check", "--rules", "rules"], dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("rules/broken.rhai:3:"), "{stderr}");
}

#[test]
fn check_reports_every_config_error_with_file_line_and_key() {
    let dir = tempdir();
    let config = "store:\n  url: sqlite://x.db\nrules:\n  dir: rules\nsweep:\n  schedule: \"every minute\"\nchannels:\n  ops:\n    type: slack\n    webhook_url: https://hooks.slack.com/services/T/B/secret-in-config\n";
    assert!(std::fs::write(dir.path().join("bad.yaml"), config).is_ok());
    assert!(std::fs::create_dir(dir.path().join("rules")).is_ok());
    let out = nightdesk(&["check", "--config", "bad.yaml"], dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("bad.yaml:6: sweep.schedule:"), "{stderr}");
    assert!(
        stderr.contains("bad.yaml:10: channels.ops.webhook_url: a secret must be a reference"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-in-config"), "{stderr}");
}

#[test]
fn demo_once_holds_a_refund_that_an_approval_then_executes_against_the_sandbox() {
    let dir = tempdir();
    let db = dir.path().join("demo.db");
    let db = db.to_string_lossy();
    let config = repo().join("config/demo.yaml");
    let config = config.to_string_lossy();
    let first = nightdesk(
        &["demo", "--once", "--config", &config, "--db", &db],
        repo(),
    );
    let stdout = text(&first.stdout);
    assert!(first.status.success(), "{stdout}{}", text(&first.stderr));
    assert!(
        stdout.contains("Chat messages received by the sandbox's Slack webhook (4):"),
        "{stdout}"
    );
    // FBA tracking: the lost parcel of an Amazon order, and the web-shop parcel in customs;
    // carrier tracking: the UPS parcel held up, the DHL label never scanned, and the
    // parcels past their promised delivery.
    assert!(
        stdout.contains("6 alerts from rule shipping_exception"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "USPS parcel 9400111899223344556677 has an exception (lost) for order 113-6679340-1195528."
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 alerts from rule pending_over_7_days"),
        "{stdout}"
    );
    assert!(stdout.contains("has been Pending since"), "{stdout}");
    assert!(
        stdout.contains("cancel by cancellation on order:amazon/113-9051847-2268310: done"),
        "{stdout}"
    );
    let Some(held) = stdout
        .lines()
        .find(|l| l.contains("refund by cancellation") && l.contains("above the approval limit"))
    else {
        panic!("no held refund in: {stdout}");
    };
    let id: String = held
        .trim_start_matches("Action:  #")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(!id.is_empty(), "{held}");
    assert!(
        held.contains(&format!("nightdesk approve --db {db} {id}")),
        "{held}"
    );
    assert!(
        !stdout.contains("Sandbox refund:"),
        "nothing refunded before approval"
    );

    let approve = nightdesk(&["approve", &id, "--db", &db, "--by", "ops-test"], repo());
    assert!(approve.status.success(), "{}", text(&approve.stderr));
    assert!(
        text(&approve.stdout).contains("approved"),
        "{}",
        text(&approve.stdout)
    );

    let second = nightdesk(
        &["demo", "--once", "--config", &config, "--db", &db],
        repo(),
    );
    let stdout = text(&second.stdout);
    assert!(second.status.success(), "{stdout}{}", text(&second.stderr));
    assert!(
        stdout.contains("Sandbox refund: order 113-2748105-0936714 item 10482786718120 principal 18.99 USD (CustomerCancel)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Slack webhook: none (nothing new to deliver)"),
        "{stdout}"
    );

    let audit = nightdesk(
        &[
            "audit",
            "113-2748105-0936714",
            "--db",
            &db,
            "--format",
            "json",
        ],
        repo(),
    );
    let json: serde_json::Value = serde_json::from_str(&text(&audit.stdout)).unwrap_or_default();
    let entries = json["entries"].as_array().cloned().unwrap_or_default();
    assert!(
        entries.iter().any(|e| e["kind"] == "approval"
            && e["summary"]
                .as_str()
                .unwrap_or_default()
                .contains("ops-test")),
        "{json}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "refund" && e["outcome"] == "done"),
        "{json}"
    );
}

#[test]
fn demo_once_alerts_a_carrier_exception_and_sends_the_out_for_delivery_notice() {
    let dir = tempdir();
    let db = dir.path().join("demo.db");
    let stdout = demo_once(&db);
    // The FBM orders' ship confirmations name four parcels, and the Shopify, eBay and
    // Walmart orders one each; their carriers were asked.
    assert!(
        stdout.contains("Track:   asked the carriers about 7 parcel(s): 7 known, 0 not found yet"),
        "{stdout}"
    );
    // UPS reports a delay (code 048): ops are told and the buyer gets Amazon's
    // unexpected-problem message with the carrier's own words.
    assert!(
        stdout.contains(
            "notify_buyer by shipping_exception on order:amazon/112-5502938-1174650: done"
        ),
        "{stdout}"
    );
    let exception = message_block(&stdout, "unexpectedProblem", "112-5502938-1174650");
    assert!(exception.contains("1Z5R89390357567127"), "{exception}");
    assert!(exception.contains("NASHVILLE, TN, US"), "{exception}");
    // USPS has the parcel out for delivery (event OF): the delivery notice goes out once.
    let notice = message_block(&stdout, "confirmDeliveryDetails", "111-2205936-7748102");
    assert!(
        notice.contains("out for delivery today with USPS"),
        "{notice}"
    );
    assert!(notice.contains("9400111206206406260787"), "{notice}");
    // DHL never scanned the label: nightdesk noticed it itself and alerted ops (the
    // grouped Slack message shows three examples, so the order's audit is the evidence).
    let audit = nightdesk(
        &[
            "audit",
            "114-5560872-0418836",
            "--db",
            &db.to_string_lossy(),
        ],
        repo(),
    );
    let timeline = text(&audit.stdout);
    assert!(audit.status.success(), "{timeline}{}", text(&audit.stderr));
    assert!(
        timeline.contains("tracking dhl 3318810025: not_scanned"),
        "{timeline}"
    );
    assert!(
        timeline.contains(
            "alert to ops: dhl parcel 3318810025 has a label but no carrier scan yet (order 114-5560872-0418836)"
        ),
        "{timeline}"
    );
    assert!(
        stdout.contains("6 alerts from rule shipping_exception"),
        "{stdout}"
    );

    // Nothing is sent twice: a second run on the same store asks again but sends nothing.
    let stdout = demo_once(&db);
    assert!(!stdout.contains("Sandbox buyer message"), "{stdout}");
}

#[test]
fn demo_once_answers_the_relay_mails_and_shows_what_the_smtp_receiver_got() {
    let dir = tempdir();
    let db = dir.path().join("demo.db");
    let stdout = demo_once(&db);
    assert!(
        stdout.contains("Mail:    5 new buyer mail(s), 4 to answer, 1 never to be answered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Replies received by the sandbox's SMTP server (4):"),
        "{stdout}"
    );
    // Pending for 9 days: the advice, in English.
    let pending = reply_block(&stdout, "Re: Order 113-4829301-5520617 still pending?");
    assert!(pending.contains("pending for 9 days"), "{pending}");
    // The parcel status from USPS, in German.
    let parcel = reply_block(&stdout, "Re: Wo ist meine Bestellung 111-2205936-7748102?");
    assert!(parcel.contains("9400111206206406260787"), "{parcel}");
    assert!(parcel.contains("Mit freundlichen Grüßen"), "{parcel}");
    // An order this seller never had: the ghost-order request, in French.
    let french = reply_blocks(&stdout, "Re: Je ne trouve pas ma commande");
    assert_eq!(french.len(), 2, "{stdout}");
    let Some(ghost) = french.iter().find(|b| b.contains("114-0000000-0001234")) else {
        panic!("no ghost-order request: {stdout}")
    };
    assert!(ghost.contains("Cordialement"), "{ghost}");
    // Then she quotes the number of her order in the seller's Shopify store: found on
    // that channel (polled beside Amazon, eBay and Walmart) and answered with its status.
    for marketplace in ["shopify/shop", "ebay/ebay-us", "walmart/walmart-us"] {
        assert!(
            stdout.contains(&format!("Poll {marketplace}: fetched")),
            "{stdout}"
        );
    }
    assert!(
        french
            .iter()
            .any(|b| b.contains("il s'agit de la commande #10482")
                && b.contains("boutique en ligne")
                // Its DHL parcel, read from the shop's fulfilment and tracked.
                && b.contains("4711234566")),
        "{stdout}"
    );
    // A name alone matched the same order too: ops hear of it, the order is not shown.
    assert!(
        stdout.contains("shopify order #10482 may be theirs (same name only)"),
        "{stdout}"
    );
    // The out-of-office answer is never answered.
    assert!(!stdout.contains("Re: Automatic reply"), "{stdout}");
    // The order's evidence shows the buyer's mail and the reply that answered it.
    let audit = nightdesk(
        &[
            "audit",
            "113-4829301-5520617",
            "--db",
            &db.to_string_lossy(),
        ],
        repo(),
    );
    let timeline = text(&audit.stdout);
    assert!(audit.status.success(), "{timeline}{}", text(&audit.stderr));
    assert!(
        timeline.contains("buyer wrote \"Order 113-4829301-5520617 still pending?\" (intent"),
        "{timeline}"
    );
    assert!(
        timeline.contains(
            "reply sent (template pending_over_7_days, substantive: stops the 24-hour clock)"
        ),
        "{timeline}"
    );

    // A second run reads the mailbox again and answers nothing twice.
    let stdout = demo_once(&db);
    assert!(
        stdout.contains("Replies received by the sandbox's SMTP server: none."),
        "{stdout}"
    );
}

/// The lines of the reply with `subject` the demo printed from its SMTP receiver.
fn reply_block(stdout: &str, subject: &str) -> String {
    match reply_blocks(stdout, subject).into_iter().next() {
        Some(block) => block,
        None => panic!("no reply {subject:?} in: {stdout}"),
    }
}

/// The lines of every reply with `subject`, in the order printed.
fn reply_blocks(stdout: &str, subject: &str) -> Vec<String> {
    let header = format!("]: {subject}\n");
    stdout
        .match_indices(&header)
        .map(|(start, _)| {
            stdout[start..]
                .lines()
                .skip(1)
                .take_while(|l| l.starts_with("    | "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The lines of the sandbox buyer message of `kind` for `order`, as the demo prints it.
fn message_block(stdout: &str, kind: &str, order: &str) -> String {
    let header = format!("Sandbox buyer message {kind} for order {order}:");
    let Some(start) = stdout.find(&header) else {
        panic!("no {kind} message for {order} in: {stdout}");
    };
    stdout[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("    | "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn track_detect_only_names_the_carrier_and_the_check_digit_without_network() {
    let ok = nightdesk(&["track", "1Z5R89390357567127", "--detect-only"], repo());
    let stdout = text(&ok.stdout);
    assert!(ok.status.success(), "{stdout}{}", text(&ok.stderr));
    assert!(
        stdout.contains("1Z5R89390357567127: UPS (ups), check digit holds"),
        "{stdout}"
    );
    // One digit off: recognised as UPS-shaped, but the check digit fails.
    let bad = nightdesk(&["track", "1Z5R89390357567128", "--detect-only"], repo());
    let stdout = text(&bad.stdout);
    assert!(!bad.status.success(), "{stdout}");
    assert!(stdout.contains("check digit FAILS"), "{stdout}");
    let none = nightdesk(&["track", "hello", "--detect-only"], repo());
    assert!(!none.status.success());
    assert!(text(&none.stdout).contains("no known tracking-number format"));
}

/// `nightdesk sandbox` on a free loopback port, killed on drop.
struct SandboxProcess {
    child: std::process::Child,
    base: String,
}

impl SandboxProcess {
    fn start() -> SandboxProcess {
        let port = match std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("no free port: {e}"),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_nightdesk"))
            .args(["sandbox", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(repo())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => panic!("cannot start the sandbox: {e}"),
        };
        let sandbox = SandboxProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return sandbox;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the sandbox did not listen on port {port}");
    }
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn track_shows_what_the_carrier_says_normalised_with_raw_codes_and_history() {
    let sandbox = SandboxProcess::start();
    let dir = tempdir();
    let config = dir.path().join("nightdesk.yaml");
    let written = std::fs::write(
        &config,
        format!(
            "store:\n  url: sqlite://state.db\nrules:\n  dir: rules\ncarriers:\n  usps:\n    client_id: sandbox-usps-client-id\n    client_secret: env:T_USPS_SECRET\n    base_url: {}/usps\n",
            sandbox.base
        ),
    );
    assert!(written.is_ok());
    let out = Command::new(env!("CARGO_BIN_EXE_nightdesk"))
        .args(["track", "9400 1112 0620 6406 2607 87", "--config"])
        .arg(&config)
        .env("T_USPS_SECRET", "sandbox-usps-client-secret")
        .current_dir(dir.path())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run nightdesk: {e}"),
    };
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    // The number is recognised, then USPS is asked and its answer shown as nightdesk reads it.
    assert!(
        stdout.contains("USPS IMpb N (usps), check digit holds"),
        "{stdout}"
    );
    assert!(stdout.contains("status:   OutForDelivery"), "{stdout}");
    assert!(stdout.contains("raw code: OF"), "{stdout}");
    let history: Vec<&str> = stdout.lines().filter(|l| l.starts_with("    20")).collect();
    assert_eq!(history.len(), 5, "{stdout}");
    assert!(
        history[0].contains("LabelCreated") && history[0].contains("GX"),
        "{stdout}"
    );
    assert!(history[4].contains("OutForDelivery"), "{stdout}");
    assert!(
        stdout.contains("store: not read") || stdout.contains("not tracking"),
        "{stdout}"
    );
    // The secret never shows.
    assert!(!stdout.contains("sandbox-usps-client-secret"));
    assert!(!text(&out.stderr).contains("sandbox-usps-client-secret"));
}

#[test]
fn a_second_instance_on_the_same_sqlite_file_exits_with_a_clear_error() {
    let dir = tempdir();
    let db = dir.path().join("one.db");
    let store = tokio::runtime::Runtime::new()
        .map(|rt| rt.block_on(nightdesk::store::SqliteStore::open(&db)));
    let Ok(Ok(_held)) = store else {
        panic!("cannot open the first instance")
    };
    let out = demo_run(&db);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("another nightdesk instance is using"),
        "{stderr}"
    );
}

#[test]
fn test_runs_the_shipped_fixtures() {
    let out = nightdesk(&["test", "rules"], repo());
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("ok    alerts ops about an FBM order Pending for 9 days"),
        "{stdout}"
    );
    assert!(stdout.trim_end().ends_with(", 0 failed"), "{stdout}");
}

#[test]
fn test_fails_with_a_diff_when_a_rule_does_not_do_what_its_fixture_says() {
    let dir = tempdir();
    let rules = dir.path().join("rules");
    assert!(std::fs::create_dir(&rules).is_ok());
    assert!(
        std::fs::write(
            rules.join("noisy.rhai"),
            "fn on_order_sweep(order) { alert(\"ops\", `order ${order.id}`); }\n"
        )
        .is_ok()
    );
    let fixture = "cases:\n  - name: should stay quiet for shipped orders\n    hook: on_order_sweep\n    order: { id: 113-4829301-5520617, status: Shipped, purchased: 3d }\n    expect: []\n";
    assert!(std::fs::write(rules.join("noisy.test.yaml"), fixture).is_ok());
    let out = nightdesk(&["test", "rules"], dir.path());
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL  should stay quiet for shipped orders"),
        "{stdout}"
    );
    assert!(
        stdout.contains("got:\n          - alert ops: \"order 113-4829301-5520617\""),
        "{stdout}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{stdout}");
}

#[test]
fn check_fails_on_a_template_that_breaks_amazon_messaging_policy() {
    let dir = tempdir();
    let rules = dir.path().join("rules");
    let templates = rules.join("templates");
    assert!(std::fs::create_dir_all(&templates).is_ok());
    let rule = "fn on_buyer_message(msg) {\n    reply(msg, \"status\");\n    reply(msg, \"missing_one\");\n}\n";
    assert!(std::fs::write(rules.join("answer.rhai"), rule).is_ok());
    let template = "Hello,\nyour order {{ order.id }} ships today: https://www.ups.com/track?tracknum=1Z999AA10123456784\nSee our other deals at https://coffee-deals.example.com/sale\n";
    assert!(std::fs::write(templates.join("status.en.txt"), template).is_ok());
    let out = nightdesk(&["check", "--rules", "rules"], dir.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("rules/templates/status.en.txt:3:"),
        "{stderr}"
    );
    assert!(stderr.contains("(link)"), "{stderr}");
    assert!(
        !stderr.contains("status.en.txt:2:"),
        "the UPS tracking link is allowed: {stderr}"
    );
    assert!(
        stderr.contains("rules/answer.rhai:3: no template \"missing_one\""),
        "{stderr}"
    );
}

#[test]
fn mail_parse_prints_what_nightdesk_understood_as_text_and_json() {
    let text_out = nightdesk(
        &["mail", "parse", "tests/mail_corpus/amazon_de_qp_cancel.eml"],
        repo(),
    );
    let stdout = text(&text_out.stdout);
    assert!(
        text_out.status.success(),
        "{stdout}{}",
        text(&text_out.stderr)
    );
    for line in [
        "marketplace:     amazon",
        "order id:        302-1234567-1234567",
        "language:        de",
        "intent:          cancel",
        "answer it:       yes",
        "ich möchte meine Bestellung bitte stornieren",
    ] {
        assert!(stdout.contains(line), "{line:?} in {stdout}");
    }
    let json_out = nightdesk(
        &[
            "mail",
            "parse",
            "--json",
            "tests/mail_corpus/amazon_auto_reply.eml",
        ],
        repo(),
    );
    assert!(json_out.status.success(), "{}", text(&json_out.stderr));
    let understood: serde_json::Value = match serde_json::from_slice(&json_out.stdout) {
        Ok(v) => v,
        Err(e) => panic!("not JSON ({e}): {}", text(&json_out.stdout)),
    };
    assert!(
        understood["do_not_answer"]
            .as_str()
            .is_some_and(|why| why.starts_with("auto-reply")),
        "{understood}"
    );
    let missing = nightdesk(&["mail", "parse", "no-such.eml"], repo());
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("no-such.eml"),
        "{}",
        text(&missing.stderr)
    );
}
