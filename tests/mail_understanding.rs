//! Every mail in `tests/mail_corpus/` through the public API (`parse` then `understand`),
//! checked against a table: order id, tracking number and carrier, language, intent,
//! marketplace and relay address, and whether (and why) it must not be answered. A corpus
//! file without a row, or a row without a file, fails the test.

use std::path::{Path, PathBuf};

use nightdesk::sources::mail::{Attachment, Understanding, parse, understand};

const OWN: &str = "support@example-shop.com";

struct Expect {
    file: &'static str,
    order_id: Option<&'static str>,
    /// (number, carrier)
    tracking: Option<(&'static str, &'static str)>,
    language: Option<&'static str>,
    intent: &'static str,
    marketplace: Option<&'static str>,
    marketplace_id: Option<&'static str>,
    relay: Option<&'static str>,
    /// The start of the reason it must not be answered.
    do_not_answer: Option<&'static str>,
    /// Words that must be in the buyer's text, and words (from quoted history or the
    /// marketplace's frame) that must not.
    has: &'static [&'static str],
    lacks: &'static [&'static str],
}

const AMAZON_US: Option<&str> = Some("ATVPDKIKX0DER");
const AMAZON_DE: Option<&str> = Some("A1PA6795UKMFR9");

fn table() -> Vec<Expect> {
    let row = |file| Expect {
        file,
        order_id: None,
        tracking: None,
        language: Some("en"),
        intent: "other",
        marketplace: Some("amazon"),
        marketplace_id: AMAZON_US,
        relay: None,
        do_not_answer: None,
        has: &[],
        lacks: &[],
    };
    vec![
        Expect {
            order_id: Some("113-4829301-5520617"),
            intent: "where_is_my_order",
            relay: Some("k2x9q7v1m3zt5wd@marketplace.amazon.com"),
            has: &["Where is my order?"],
            lacks: &["Dear Seller", "For Your Information", "Begin message"],
            ..row("amazon_en_plain_where.eml")
        },
        Expect {
            order_id: Some("302-1234567-1234567"),
            language: Some("de"),
            intent: "cancel",
            marketplace_id: AMAZON_DE,
            relay: Some("p4r7w2n8c5hq1ld@marketplace.amazon.de"),
            has: &["möchte meine Bestellung bitte stornieren", "Größe", "Grüße"],
            lacks: &["Zu Ihrer Information"],
            ..row("amazon_de_qp_cancel.eml")
        },
        Expect {
            order_id: Some("404-9876543-2109876"),
            language: Some("fr"),
            intent: "refund",
            marketplace_id: Some("A13V1IB3VIYZZH"),
            relay: Some("m8t3v6x1z9k2q5w@marketplace.amazon.fr"),
            has: &["J'ai bien reçu le colis", "être remboursée"],
            lacks: &["Pour information"],
            ..row("amazon_fr_base64_refund.eml")
        },
        Expect {
            order_id: Some("028-7654321-1234567"),
            language: Some("de"),
            intent: "return",
            marketplace_id: AMAZON_DE,
            relay: Some("c7d2f9h4j1k8m3n@marketplace.amazon.de"),
            has: &["zu groß", "Rücksendung", "Schäfer"],
            ..row("amazon_de_latin1_return.eml")
        },
        Expect {
            order_id: Some("171-2345678-3456789"),
            language: Some("es"),
            intent: "address_change",
            marketplace_id: Some("A1RKKUPIHCS9HS"),
            relay: Some("r5s8t2u6v9w3x1y@marketplace.amazon.es"),
            has: &[
                "¿Puedo cambiar la dirección",
                "24,90 €",
                "“mochila azul”",
                "oficina…",
            ],
            ..row("amazon_es_cp1252_address.eml")
        },
        Expect {
            order_id: Some("171-9988776-5544332"),
            language: Some("es"),
            intent: "where_is_my_order",
            marketplace_id: Some("A1RKKUPIHCS9HS"),
            relay: Some("r5s8t2u6v9w3x1y@marketplace.amazon.es"),
            has: &["¿Dónde está mi paquete?"],
            ..row("amazon_es_qp_where.eml")
        },
        Expect {
            order_id: Some("406-3456789-4567890"),
            language: Some("it"),
            intent: "where_is_my_order",
            marketplace_id: Some("APJ6JRA9NG5V4"),
            relay: Some("b3n6q9s2v5y8a1d@marketplace.amazon.it"),
            has: &[
                "non è ancora arrivato",
                "Dov'è il mio ordine?",
                "Grazie mille,\nMarco",
            ],
            lacks: &["<div>", "font-family", "Per tua informazione"],
            ..row("amazon_it_html_where.eml")
        },
        Expect {
            order_id: Some("205-1122334-5566778"),
            intent: "refund",
            marketplace_id: Some("A1F83G8C2ARO7P"),
            relay: Some("t1u4w7y0b3e6h9k@marketplace.amazon.co.uk"),
            has: &["partial refund instead?"],
            lacks: &["<p>"],
            ..row("amazon_en_alternative_refund.eml")
        },
        Expect {
            order_id: Some("113-4829301-5520617"),
            intent: "where_is_my_order",
            relay: Some("k2x9q7v1m3zt5wd@marketplace.amazon.com"),
            has: &["It still has not arrived"],
            lacks: &["wrote:", "cancel", "refund", "> "],
            ..row("amazon_en_reply_quoted.eml")
        },
        Expect {
            order_id: Some("302-1234567-1234567"),
            language: Some("de"),
            intent: "where_is_my_order",
            marketplace_id: AMAZON_DE,
            relay: Some("p4r7w2n8c5hq1ld@marketplace.amazon.de"),
            has: &["immer noch nicht angekommen"],
            lacks: &["schrieb", "stornieren", "Erstattung"],
            ..row("amazon_de_reply_am_schrieb.eml")
        },
        Expect {
            order_id: Some("404-1357913-2468024"),
            // Only in the seller's quoted reply: still the parcel's number.
            tracking: Some(("1Z999AA10123456784", "ups")),
            language: Some("fr"),
            intent: "cancel",
            marketplace_id: Some("A13V1IB3VIYZZH"),
            relay: Some("m8t3v6x1z9k2q5w@marketplace.amazon.fr"),
            has: &["je préfère annuler la commande"],
            lacks: &["a écrit", "1Z999AA10123456784"],
            ..row("amazon_fr_reply_le_a_ecrit.eml")
        },
        Expect {
            order_id: Some("200012345678901"),
            intent: "where_is_my_order",
            marketplace: Some("walmart"),
            marketplace_id: None,
            relay: Some("7f3a9c2e5b8d41a6@relay.walmart.com"),
            has: &["any news on my order?"],
            lacks: &["Original Message", "cancel or return"],
            ..row("walmart_outlook_reply_where.eml")
        },
        Expect {
            order_id: Some("112-5550123-7654321"),
            tracking: Some(("9400111201080805483016", "usps")),
            intent: "where_is_my_order",
            relay: Some("h6j9l2n5q8s1u4w@marketplace.amazon.com"),
            has: &["where is it?", "Your package is on its way."],
            lacks: &["Forwarded message", "shipment-tracking@amazon.com"],
            ..row("amazon_en_forwarded_tracking.eml")
        },
        Expect {
            order_id: Some("114-2468135-9753102"),
            intent: "return",
            relay: Some("w2y5a8c1e4g7i0k@marketplace.amazon.com"),
            has: &["I would like to return it."],
            ..row("amazon_en_attachment_return.eml")
        },
        Expect {
            order_id: None,
            tracking: Some(("1Z999AA10123456784", "ups")),
            intent: "where_is_my_order",
            relay: Some("q3s6u9w2y5a8c1e@marketplace.amazon.com"),
            has: &["I can't find the order"],
            ..row("amazon_en_tracking_no_order.eml")
        },
        Expect {
            order_id: Some("113-4829301-5520617"),
            intent: "where_is_my_order",
            do_not_answer: Some("marketplace notification"),
            ..row("amazon_atoz_notification.eml")
        },
        Expect {
            order_id: Some("113-4829301-5520617"),
            do_not_answer: Some("marketplace notification"),
            ..row("amazon_delivery_failure_notice.eml")
        },
        Expect {
            order_id: Some("113-4829301-5520617"),
            relay: Some("k2x9q7v1m3zt5wd@marketplace.amazon.com"),
            do_not_answer: Some("auto-reply: Auto-Submitted: auto-replied"),
            ..row("amazon_auto_reply.eml")
        },
        Expect {
            order_id: Some("302-5556667-7778889"),
            language: Some("de"),
            marketplace: None,
            marketplace_id: None,
            relay: Some("p.vogel@corp.example.de"),
            do_not_answer: Some("auto-reply: X-Auto-Response-Suppress: All"),
            ..row("auto_reply_exchange_de.eml")
        },
        Expect {
            // "return of the bestsellers": the intent rules fire, the bulk check wins.
            intent: "return",
            marketplace: None,
            marketplace_id: None,
            relay: Some("news@example-supplier.com"),
            do_not_answer: Some("bulk mail: Precedence: bulk"),
            ..row("bulk_newsletter.eml")
        },
        Expect {
            order_id: Some("12-34567-89012"),
            intent: "where_is_my_order",
            marketplace: Some("ebay"),
            marketplace_id: None,
            relay: Some("vintage_fan_77.k3m9@members.ebay.com"),
            ..row("ebay_member_where.eml")
        },
        Expect {
            order_id: Some("#1042"),
            language: Some("it"),
            intent: "cancel",
            marketplace: Some("shopify"),
            marketplace_id: None,
            relay: Some("giulia.b@example.it"),
            has: &["vorrei annullare l'ordine #1042"],
            ..row("shopify_contact_it_cancel.eml")
        },
        Expect {
            order_id: Some("113-4829301-5520617"),
            marketplace: None,
            marketplace_id: None,
            relay: Some("support@example-shop.com"),
            do_not_answer: Some("our own mail"),
            ..row("own_reply_copy.eml")
        },
    ]
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mail_corpus")
}

fn understood(file: &str) -> Result<Understanding, String> {
    let raw = std::fs::read(corpus().join(file)).map_err(|e| format!("read {file}: {e}"))?;
    let mail = parse(&raw).map_err(|e| format!("parse {file}: {e}"))?;
    Ok(understand(&mail, &[OWN.to_owned()]))
}

/// Everything that differs from the row, one line each.
fn differences(want: &Expect, got: &Understanding) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, want: Option<&str>, got: Option<&str>| {
        if want != got {
            out.push(format!("{what}: want {want:?}, got {got:?}"));
        }
    };
    check("order_id", want.order_id, got.order_id.as_deref());
    check(
        "tracking_number",
        want.tracking.map(|t| t.0),
        got.tracking_number.as_deref(),
    );
    check(
        "tracking_carrier",
        want.tracking.map(|t| t.1),
        got.tracking_carrier.as_deref(),
    );
    check("language", want.language, got.language.as_deref());
    check("intent", Some(want.intent), Some(got.intent.as_str()));
    check("marketplace", want.marketplace, got.marketplace.as_deref());
    check(
        "marketplace_id",
        want.marketplace_id,
        got.marketplace_id.as_deref(),
    );
    check("relay_address", want.relay, got.relay_address.as_deref());
    match (want.do_not_answer, got.do_not_answer.as_deref()) {
        (None, None) => {}
        (Some(prefix), Some(reason)) if reason.starts_with(prefix) => {}
        (want, got) => out.push(format!("do_not_answer: want {want:?}…, got {got:?}")),
    }
    for word in want.has {
        if !got.new_text.contains(word) {
            out.push(format!("new_text lacks {word:?}"));
        }
    }
    for word in want.lacks {
        if got.new_text.contains(word) {
            out.push(format!("new_text has {word:?}"));
        }
    }
    out
}

#[test]
fn every_corpus_mail_is_understood_as_the_table_says() {
    let table = table();
    let mut files: Vec<String> = match std::fs::read_dir(corpus()) {
        Ok(dir) => dir
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".eml"))
            .collect(),
        Err(e) => panic!("read the corpus folder: {e}"),
    };
    files.sort();

    let mut failures = Vec::new();
    for file in &files {
        if !table.iter().any(|row| row.file == file) {
            failures.push(format!("{file}: no row in the table"));
        }
    }
    for row in &table {
        match understood(row.file) {
            Ok(got) => {
                for difference in differences(row, &got) {
                    failures.push(format!("{}: {difference}", row.file));
                }
                if !serialises(&got) {
                    failures.push(format!("{}: does not serialise", row.file));
                }
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn serialises(got: &Understanding) -> bool {
    serde_json::to_value(got).is_ok_and(|v| v.get("intent").is_some())
}

#[test]
fn the_attachment_is_recorded_without_its_content() {
    let got = match understood("amazon_en_attachment_return.eml") {
        Ok(got) => got,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        got.attachments,
        [Attachment {
            name: Some("damaged-box.jpg".to_owned()),
            content_type: "image/jpeg".to_owned(),
            size: 2075,
        }]
    );
    let json = match serde_json::to_string(&got) {
        Ok(json) => json,
        Err(e) => panic!("serialise: {e}"),
    };
    // The JPEG's bytes (base64 in the mail) appear nowhere in what was understood.
    assert!(!json.contains("/9j/"), "{json}");
}

#[test]
fn the_reply_headers_are_read() {
    let raw = match std::fs::read(corpus().join("amazon_en_reply_quoted.eml")) {
        Ok(raw) => raw,
        Err(e) => panic!("read: {e}"),
    };
    let mail = match parse(&raw) {
        Ok(mail) => mail,
        Err(e) => panic!("parse: {e}"),
    };
    assert_eq!(
        mail.in_reply_to.as_deref(),
        Some("20261103151000.4f2a@mx.example-shop.com")
    );
    assert_eq!(mail.references, ["20261103151000.4f2a@mx.example-shop.com"]);
    assert_eq!(
        mail.from_name.as_deref(),
        Some("Jordan Ellis - Amazon Marketplace")
    );
    assert_eq!(mail.to, [OWN]);
    assert!(mail.date.is_some());
    assert!(mail.message_id.is_some());
}

#[test]
fn cut_and_mangled_corpus_mails_never_panic() {
    let dir = match std::fs::read_dir(corpus()) {
        Ok(dir) => dir,
        Err(e) => panic!("read the corpus folder: {e}"),
    };
    for entry in dir.filter_map(|entry| entry.ok()) {
        let raw = match std::fs::read(entry.path()) {
            Ok(raw) => raw,
            Err(e) => panic!("read {:?}: {e}", entry.path()),
        };
        for cut in (0..raw.len()).step_by(37) {
            let mut mangled = raw.get(..cut).unwrap_or_default().to_vec();
            if let Ok(mail) = parse(&mangled) {
                let _ = understand(&mail, &[OWN.to_owned()]);
            }
            // Flip bit 0x20 of every byte after the cut: broken encodings, boundaries, headers.
            mangled.extend(raw.get(cut..).unwrap_or_default().iter().map(|b| b ^ 0x20));
            if let Ok(mail) = parse(&mangled) {
                let _ = understand(&mail, &[OWN.to_owned()]);
            }
        }
    }
}
