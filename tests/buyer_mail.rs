//! Buyer mail end to end: relay mails in a Maildir, the shipped rules and templates, the
//! replies at the sandbox's SMTP receiver, the 24-hour clock, and SMTP failures by their
//! class. Every test runs on each store backend available.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::Duration;
use common::{Harness, harnesses};
use nightdesk::sandbox::Scenario;
use nightdesk::sandbox::When;
use nightdesk::sandbox::buyer_mail::{ScenarioMail, deliver};
use nightdesk::sandbox::smtp::{ReceivedMail, SmtpFault, SmtpReceiver};
use nightdesk::sources::mail::parse;

const SELLER: &str = "support@shop.example";

fn default_scenario() -> Scenario {
    match nightdesk::sandbox::default_scenario() {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// The shipped message rules and templates, a Maildir and an SMTP receiver.
struct MailSetup {
    smtp: SmtpReceiver,
    maildir: PathBuf,
}

async fn setup(h: &mut Harness, rules: &[&str]) -> MailSetup {
    let smtp = SmtpReceiver::start(SocketAddr::from(([127, 0, 0, 1], 0))).await;
    let Ok(smtp) = smtp else {
        panic!("smtp receiver: {smtp:?}")
    };
    let maildir = h.dir.path().join("mail");
    for rule in rules {
        let path = format!("rules/{rule}.rhai");
        let Ok(source) = std::fs::read_to_string(&path) else {
            panic!("read {path}")
        };
        h.write_rule(rule, &source);
    }
    h.shipped_templates();
    h.config_text = format!(
        "{}mail:\n  mailboxes:\n    - account: test\n      address: {SELLER}\n      maildir: {}\n      smtp: env:T_SMTP\n",
        common::CONFIG,
        maildir.display()
    );
    MailSetup { smtp, maildir }
}

/// The scenario's English, German and French mails and the out-of-office answer
/// (not the one that quotes a Shopify order: these tests connect no Shopify store).
fn four_mails(h: &Harness) -> Vec<ScenarioMail> {
    h.scenario
        .buyer_mail
        .iter()
        .filter(|m| m.id != "boutique-fr")
        .cloned()
        .collect()
}

fn deliver_all(h: &Harness, setup: &MailSetup, mails: &[ScenarioMail]) -> usize {
    match deliver(
        mails,
        SELLER,
        &setup.maildir,
        nightdesk::clock::Clock::now(&h.clock),
    ) {
        Ok(n) => n,
        Err(e) => panic!("deliver: {e}"),
    }
}

fn daemon(h: &Harness, setup: &MailSetup) -> nightdesk::daemon::Daemon {
    h.daemon_with(
        h.config(),
        h.secrets().with_override("T_SMTP", setup.smtp.url()),
    )
}

fn header(mail: &ReceivedMail, name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(&mail.data).into_owned();
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    head.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
    })
}

fn subjects(received: &[ReceivedMail]) -> Vec<String> {
    let mut subjects: Vec<String> = received
        .iter()
        .filter_map(|m| parse(&m.data).ok().map(|p| p.subject))
        .collect();
    subjects.sort();
    subjects
}

const SHIPPED_MESSAGE_RULES: &[&str] = &[
    "acknowledge",
    "ghost_order",
    "pending_order_reply",
    "where_is_my_parcel",
    "sla_at_risk",
];

#[tokio::test]
async fn relay_mail_is_answered_once_in_its_thread_in_the_buyers_language() {
    let scenario = default_scenario();
    for mut h in harnesses(&scenario).await {
        let setup = setup(&mut h, SHIPPED_MESSAGE_RULES).await;
        assert_eq!(deliver_all(&h, &setup, &four_mails(&h)), 4);
        let report = daemon(&h, &setup).run_cycle().await;
        let Ok(report) = report else {
            panic!("{}: {report:?}", h.label())
        };
        assert_eq!(
            (report.mail.new, report.mail.events),
            (4, 3),
            "{}: four stored, the auto-reply not announced",
            h.label()
        );
        let received = setup.smtp.received();
        assert_eq!(
            subjects(&received),
            [
                "Re: Je ne trouve pas ma commande",
                "Re: Order 113-4829301-5520617 still pending?",
                "Re: Wo ist meine Bestellung 111-2205936-7748102?",
            ],
            "{}: the auto-reply is never answered",
            h.label()
        );
        let Some(german) = received
            .iter()
            .find(|m| header(m, "Content-Language").as_deref() == Some("de"))
        else {
            panic!("{}: no German reply", h.label())
        };
        assert_eq!(german.rcpt_to, ["k3p8z1q7m2x9v4d@marketplace.amazon.com"]);
        assert_eq!(german.mail_from, SELLER);
        assert_eq!(
            header(german, "In-Reply-To").as_deref(),
            Some("<wo-ist-de.sandbox@marketplace.amazon.com>")
        );
        assert_eq!(
            header(german, "Auto-Submitted").as_deref(),
            Some("auto-replied")
        );
        let Ok(text) = parse(&german.data).map(|p| p.text) else {
            panic!("unparsable")
        };
        assert!(
            text.contains("111-2205936-7748102") && text.contains("Grüßen"),
            "{text}"
        );

        // Stored, with the copies sent, and the clock stopped by the substantive answers.
        let store = &h.store.store;
        let Ok(messages) = store.buyer_messages(None).await else {
            panic!("messages")
        };
        assert_eq!(messages.len(), 4, "{}", h.label());
        assert_eq!(
            messages.iter().filter(|m| m.answered).count(),
            3,
            "{}",
            h.label()
        );
        let Ok(sent) = store.sent_replies(None).await else {
            panic!("sent")
        };
        assert_eq!(sent.len(), 3, "{}", h.label());

        // A restart, and the relay delivering the same mails again under new names:
        // nothing is answered twice.
        for entry in std::fs::read_dir(setup.maildir.join("cur"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry
                .file_name()
                .to_string_lossy()
                .replace(":2,S", ".again");
            let _ = std::fs::copy(entry.path(), setup.maildir.join("new").join(name));
        }
        let again = daemon(&h, &setup).run_cycle().await;
        let Ok(again) = again else {
            panic!("{again:?}")
        };
        assert_eq!(
            (again.mail.new, again.mail.duplicates, again.mail.events),
            (0, 4, 0),
            "{}",
            h.label()
        );
        assert_eq!(
            setup.smtp.received().len(),
            3,
            "{}: nothing twice",
            h.label()
        );
    }
}

#[tokio::test]
async fn a_crash_between_storing_and_marking_read_reads_nothing_twice_and_misses_nothing() {
    let scenario = default_scenario();
    for mut h in harnesses(&scenario).await {
        let setup = setup(&mut h, &["acknowledge"]).await;
        let mails = four_mails(&h);
        deliver_all(&h, &setup, &mails[..2]);
        let d = daemon(&h, &setup);
        let Ok(first) = d.read_mail().await else {
            panic!("read")
        };
        assert_eq!(first.new, 2, "{}", h.label());
        // As if the process died before moving them to cur/: they are in new/ again,
        // and more mail arrived meanwhile.
        for entry in std::fs::read_dir(setup.maildir.join("cur"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().replace(":2,S", "");
            let _ = std::fs::rename(entry.path(), setup.maildir.join("new").join(name));
        }
        deliver_all(&h, &setup, &mails[2..]);
        let restarted = daemon(&h, &setup);
        let Ok(second) = restarted.read_mail().await else {
            panic!("read")
        };
        assert_eq!(
            (second.new, second.duplicates),
            (2, 2),
            "{}: the two re-read recognised, the two new stored",
            h.label()
        );
        let Ok(events) = h.store.store.pending_events(100).await else {
            panic!("events")
        };
        let announced = events
            .iter()
            .filter(|e| e.subject.as_str().starts_with("message:"))
            .count();
        assert_eq!(
            announced,
            3,
            "{}: each answerable mail announced once",
            h.label()
        );
    }
}

fn invoice_request() -> ScenarioMail {
    ScenarioMail {
        id: "invoice-en".into(),
        from_name: "Sam Lee".into(),
        from: "b5n8c2v6x1z4m7q@marketplace.amazon.com".into(),
        subject: "Invoice for order 111-2205936-7748102".into(),
        body: "Hello, could you please send me a VAT invoice for my order 111-2205936-7748102? My company needs it for the accounts. Thank you, Sam".into(),
        received: When::hours_ago(1),
        headers: BTreeMap::new(),
    }
}

#[tokio::test]
async fn the_sla_alert_fires_at_hour_20_for_a_message_only_acknowledged_and_not_for_an_answered_one()
 {
    let scenario = default_scenario();
    for mut h in harnesses(&scenario).await {
        let setup = setup(&mut h, SHIPPED_MESSAGE_RULES).await;
        let pending = h.scenario.buyer_mail[0].clone();
        // Both arrive an hour before the first cycle.
        let mails = [
            ScenarioMail {
                received: When::hours_ago(1),
                ..pending
            },
            invoice_request(),
        ];
        deliver_all(&h, &setup, &mails);
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        let templates: Vec<String> = match h.store.store.sent_replies(None).await {
            Ok(sent) => sent.into_iter().map(|r| r.template).collect(),
            Err(e) => panic!("{e}"),
        };
        let mut sorted = templates.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            ["acknowledge", "pending_over_7_days"],
            "{}: the invoice request only gets the acknowledgement",
            h.label()
        );

        // Hour 19: nothing yet.
        h.clock.advance(Duration::hours(18));
        let Ok(r) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        assert_eq!(r.sla_at_risk, 0, "{}", h.label());
        // Hour 20: the acknowledged one, once.
        h.clock.advance(Duration::hours(1));
        let Ok(r) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        assert_eq!(r.sla_at_risk, 1, "{}", h.label());
        h.clock.advance(Duration::hours(1));
        let Ok(r) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        assert_eq!(r.sla_at_risk, 0, "{}: once only", h.label());
        let alerts = common::count(&h.slack_texts(), "without a substantive reply");
        assert_eq!(alerts, 1, "{}: {:?}", h.label(), h.slack_texts());
        assert_eq!(
            common::count(&h.slack_texts(), "Invoice for order 111-2205936-7748102"),
            1,
            "{}",
            h.label()
        );
    }
}

#[tokio::test]
async fn an_smtp_failure_leaves_the_reply_unknown_or_retried_by_its_class_and_never_sent_twice() {
    let scenario = default_scenario();
    for mut h in harnesses(&scenario).await {
        let setup = setup(&mut h, &["pending_order_reply"]).await;
        let store = h.store.store.clone();
        let reply_state = || async {
            match store.outbox().await {
                Ok(rows) => rows
                    .into_iter()
                    .filter(|r| r.kind == "reply")
                    .map(|r| r.state)
                    .collect::<Vec<_>>(),
                Err(e) => panic!("{e}"),
            }
        };
        let pending = h.scenario.buyer_mail[0].clone();

        // 450 at RCPT: certainly not sent, retried; it goes out once the server takes it.
        setup.smtp.set_fault(SmtpFault::RejectRecipient(450));
        deliver_all(&h, &setup, std::slice::from_ref(&pending));
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        assert_eq!(reply_state().await, ["retry"], "{}", h.label());
        assert!(setup.smtp.received().is_empty(), "{}", h.label());
        setup.smtp.set_fault(SmtpFault::None);
        h.clock.advance(Duration::minutes(30));
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        assert_eq!(reply_state().await, ["done"], "{}", h.label());
        assert_eq!(setup.smtp.received().len(), 1, "{}", h.label());

        // The connection lost after the message was sent: it may have gone out, so the
        // reply is unknown and never sent again.
        setup.smtp.set_fault(SmtpFault::DropAfterData);
        let other = ScenarioMail {
            id: "pending-again".into(),
            subject: "Still pending: 113-4829301-5520617".into(),
            ..pending.clone()
        };
        deliver_all(&h, &setup, &[other]);
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        setup.smtp.set_fault(SmtpFault::None);
        for _ in 0..3 {
            h.clock.advance(Duration::hours(1));
            let Ok(_) = daemon(&h, &setup).run_cycle().await else {
                panic!("cycle")
            };
        }
        let mut states = reply_state().await;
        states.sort();
        assert_eq!(states, ["done", "unknown"], "{}", h.label());
        assert_eq!(
            setup.smtp.received().len(),
            2,
            "{}: the receiver got it once (that is why it must not be resent)",
            h.label()
        );
        assert_eq!(
            common::count(&h.slack_texts(), "ended unclearly"),
            1,
            "{}: ops hear about the unknown reply: {:?}",
            h.label(),
            h.slack_texts()
        );

        // 550: refused for good, failed, nothing sent.
        setup.smtp.set_fault(SmtpFault::RejectRecipient(550));
        let third = ScenarioMail {
            id: "pending-third".into(),
            subject: "Third try: 113-4829301-5520617".into(),
            ..pending
        };
        deliver_all(&h, &setup, &[third]);
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        let mut states = reply_state().await;
        states.sort();
        assert_eq!(states, ["done", "failed", "unknown"], "{}", h.label());
        assert_eq!(setup.smtp.received().len(), 2, "{}", h.label());
    }
}

/// Élodie's order in the seller's own Shopify store, stored as the Shopify source would.
async fn shopify_order(h: &Harness) {
    use nightdesk::model::{Customer, Fulfillment, Money, Order, OrderStatus, SalesChannel};
    let now = nightdesk::clock::Clock::now(&h.clock);
    let order = Order {
        channel: SalesChannel::Shopify,
        account: "shop".into(),
        id: "#10482".into(),
        marketplace_id: None,
        status: OrderStatus::Shipped,
        fulfillment: Some(Fulfillment::Mfn),
        purchase_date: now - Duration::days(10),
        last_update: now - Duration::days(8),
        earliest_ship_date: None,
        latest_ship_date: None,
        earliest_delivery_date: None,
        latest_delivery_date: None,
        total: Some(Money {
            currency: "EUR".into(),
            amount: "89.00".into(),
        }),
        order_type: None,
        is_prime: false,
        is_business: false,
        items: Vec::new(),
        details: Default::default(),
        customer: Customer {
            email: Some("elodie.fournier@example.fr".into()),
            name: Some("Élodie Fournier".into()),
            postcode: Some("69002".into()),
            city: Some("Lyon".into()),
            country: Some("FR".into()),
        },
    };
    let stored = h
        .store
        .store
        .ingest("shopify/shop", &[order], None, now)
        .await;
    assert!(stored.is_ok(), "{stored:?}");
}

fn elodie(id: &str, body: &str) -> ScenarioMail {
    ScenarioMail {
        id: id.into(),
        from_name: "Élodie Fournier".into(),
        from: "r9t2w6y1u8i3o5p@marketplace.amazon.fr".into(),
        subject: "Ma commande".into(),
        body: body.into(),
        received: When::minutes_ago(30),
        headers: BTreeMap::new(),
    }
}

#[tokio::test]
async fn a_ghost_order_placed_in_the_sellers_shop_is_answered_with_its_status_only_when_sure() {
    let scenario = default_scenario();
    for mut h in harnesses(&scenario).await {
        let setup = setup(&mut h, &["ghost_order"]).await;
        shopify_order(&h).await;
        deliver_all(
            &h,
            &setup,
            &[
                // The number of the order in the seller's own shop: certain.
                elodie(
                    "ghost-number",
                    "Bonjour, j'ai commandé un moulin sur votre site, commande #10482, et je ne la trouve pas dans mon compte Amazon. Où en est-elle ? Merci",
                ),
            ],
        );
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        let received = setup.smtp.received();
        assert_eq!(received.len(), 1, "{}", h.label());
        let Ok(text) = parse(&received[0].data).map(|p| p.text) else {
            panic!("unparsable")
        };
        assert!(text.contains("#10482"), "{}: {text}", h.label());
        assert!(
            text.contains("notre boutique en ligne") || text.contains("boutique"),
            "{}: the Shopify order's channel is named: {text}",
            h.label()
        );
        let sent = match h.store.store.sent_replies(None).await {
            Ok(sent) => sent,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            sent[0].template,
            "ghost_order_found_elsewhere",
            "{}",
            h.label()
        );

        // Her name alone (a relay address, no number): not enough to show the order.
        h.clock.advance(Duration::minutes(1));
        deliver_all(
            &h,
            &setup,
            &[elodie(
                "ghost-name",
                "Bonjour, je ne trouve plus ma commande de moulin à café. Pouvez-vous m'aider ? Merci",
            )],
        );
        let Ok(_) = daemon(&h, &setup).run_cycle().await else {
            panic!("cycle")
        };
        let sent = match h.store.store.sent_replies(None).await {
            Ok(sent) => sent,
            Err(e) => panic!("{e}"),
        };
        let templates: Vec<&str> = sent.iter().map(|r| r.template.as_str()).collect();
        assert_eq!(
            templates,
            ["ghost_order_found_elsewhere", "ghost_order"],
            "{}",
            h.label()
        );
        assert_eq!(
            common::count(
                &h.slack_texts(),
                "shopify order #10482 may be theirs (same name only)"
            ),
            1,
            "{}: {:?}",
            h.label(),
            h.slack_texts()
        );
    }
}
