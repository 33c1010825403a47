//! The XML of Amazon's order feeds and of their processing reports (research §7):
//!
//! - a cancellation: `POST_ORDER_ACKNOWLEDGEMENT_DATA`, an `OrderAcknowledgement` with
//!   `StatusCode` Failure and a `CancelReason` per item;
//! - a refund: `POST_PAYMENT_ADJUSTMENT_DATA`, an `OrderAdjustment` with an
//!   `AdjustmentReason` and the Principal (and Tax) refunded per item.
//!
//! Documents are written with quick-xml's writer, so every value is escaped; values are
//! checked against the published enums and the amount format before anything is built.
//! The report parser reads `AmazonEnvelope/Message/ProcessingReport` by local element
//! names, ignoring namespaces, attributes and elements it does not know.
#![forbid(unsafe_code)]

use std::io;

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};

/// The feed type of a cancellation.
pub const ORDER_ACKNOWLEDGEMENT: &str = "POST_ORDER_ACKNOWLEDGEMENT_DATA";
/// The feed type of a refund.
pub const PAYMENT_ADJUSTMENT: &str = "POST_PAYMENT_ADJUSTMENT_DATA";
/// The content type both feeds are created and uploaded with.
pub const CONTENT_TYPE: &str = "text/xml; charset=UTF-8";

/// `CancelReason` (OrderAcknowledgement.xsd): the list rules are checked against too.
pub const CANCEL_REASONS: &[&str] = crate::rules::reasons::AMAZON_CANCEL_REASONS;

/// `AdjustmentReason` (OrderAdjustment.xsd): the list rules are checked against too.
pub const ADJUSTMENT_REASONS: &[&str] = crate::rules::reasons::AMAZON_REFUND_REASONS;

/// One item of a cancellation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelLine {
    pub item_code: String,
    pub reason: String,
}

/// An amount: a non-negative decimal with at most two places, and its ISO 4217 code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    pub value: String,
    pub currency: String,
}

/// One item of a refund: the Principal refunded and, if any, its Tax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentLine {
    pub item_code: String,
    pub reason: String,
    pub principal: Amount,
    pub tax: Option<Amount>,
    pub quantity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("{field} is empty")]
    Empty { field: &'static str },
    #[error("{field} holds a character an XML document cannot carry")]
    InvalidCharacter { field: &'static str },
    #[error("a feed message needs at least one item")]
    NoItems,
    #[error("{value:?} is not an Amazon {kind} (one of: {})", allowed.join(", "))]
    UnknownReason {
        kind: &'static str,
        value: String,
        allowed: &'static [&'static str],
    },
    #[error("amount {value:?}: {why}")]
    BadAmount { value: String, why: &'static str },
    #[error("{0:?} is not an ISO 4217 currency code")]
    BadCurrency(String),
    #[error("item {item}: tax in {tax} but principal in {principal}")]
    MixedCurrencies {
        item: String,
        principal: String,
        tax: String,
    },
    #[error("quantity {0} is not a positive number")]
    BadQuantity(i64),
    #[error("writing XML: {0}")]
    Xml(String),
    #[error("not a processing report: {0}")]
    NotAReport(String),
}

/// A cancellation of the listed items (`OrderAcknowledgement`, `StatusCode` Failure).
pub fn cancellation_feed(
    merchant_id: &str,
    order_id: &str,
    items: &[CancelLine],
) -> Result<String, FeedError> {
    let merchant_id = value("MerchantIdentifier", merchant_id)?;
    let order_id = value("AmazonOrderID", order_id)?;
    if items.is_empty() {
        return Err(FeedError::NoItems);
    }
    let items: Vec<(&str, &'static str)> = items
        .iter()
        .map(|item| {
            Ok((
                value("AmazonOrderItemCode", &item.item_code)?,
                one_of("CancelReason", CANCEL_REASONS, &item.reason)?,
            ))
        })
        .collect::<Result<_, FeedError>>()?;
    envelope(merchant_id, "OrderAcknowledgement", |w| {
        w.create_element("OrderAcknowledgement")
            .write_inner_content(|w| {
                text(w, "AmazonOrderID", order_id)?;
                text(w, "StatusCode", "Failure")?;
                for (code, reason) in &items {
                    w.create_element("Item").write_inner_content(|w| {
                        text(w, "AmazonOrderItemCode", code)?;
                        text(w, "CancelReason", reason)
                    })?;
                }
                Ok(())
            })?;
        Ok(())
    })
}

/// A refund of the listed items (`OrderAdjustment`): Principal, then Tax if given.
pub fn adjustment_feed(
    merchant_id: &str,
    order_id: &str,
    items: &[AdjustmentLine],
) -> Result<String, FeedError> {
    struct Checked<'a> {
        code: &'a str,
        reason: &'static str,
        principal: (&'a str, &'a str),
        tax: Option<(&'a str, &'a str)>,
        quantity: Option<String>,
    }
    let merchant_id = value("MerchantIdentifier", merchant_id)?;
    let order_id = value("AmazonOrderID", order_id)?;
    if items.is_empty() {
        return Err(FeedError::NoItems);
    }
    let items: Vec<Checked<'_>> = items
        .iter()
        .map(|item| {
            let code = value("AmazonOrderItemCode", &item.item_code)?;
            let principal = amount(&item.principal)?;
            let tax = item.tax.as_ref().map(amount).transpose()?;
            if let Some((_, tax_currency)) = tax
                && tax_currency != principal.1
            {
                return Err(FeedError::MixedCurrencies {
                    item: code.to_owned(),
                    principal: principal.1.to_owned(),
                    tax: tax_currency.to_owned(),
                });
            }
            let quantity = match item.quantity {
                Some(q) if q < 1 => return Err(FeedError::BadQuantity(q)),
                q => q.map(|q| q.to_string()),
            };
            Ok(Checked {
                code,
                reason: one_of("AdjustmentReason", ADJUSTMENT_REASONS, &item.reason)?,
                principal,
                tax,
                quantity,
            })
        })
        .collect::<Result<_, FeedError>>()?;
    envelope(merchant_id, "OrderAdjustment", |w| {
        w.create_element("OrderAdjustment")
            .write_inner_content(|w| {
                text(w, "AmazonOrderID", order_id)?;
                for item in &items {
                    w.create_element("AdjustedItem").write_inner_content(|w| {
                        text(w, "AmazonOrderItemCode", item.code)?;
                        text(w, "AdjustmentReason", item.reason)?;
                        w.create_element("ItemPriceAdjustments")
                            .write_inner_content(|w| {
                                component(w, "Principal", item.principal)?;
                                if let Some(tax) = item.tax {
                                    component(w, "Tax", tax)?;
                                }
                                Ok(())
                            })?;
                        if let Some(quantity) = &item.quantity {
                            text(w, "Quantity", quantity)?;
                        }
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
        Ok(())
    })
}

/// `AmazonEnvelope{Header, MessageType, Message{MessageID 1, body}}` as a string.
fn envelope(
    merchant_id: &str,
    message_type: &str,
    body: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>,
) -> Result<String, FeedError> {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    let write = |w: &mut Writer<Vec<u8>>| -> io::Result<()> {
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
        w.create_element("AmazonEnvelope")
            .with_attribute(("xmlns:xsi", "http://www.w3.org/2001/XMLSchema-instance"))
            .with_attribute(("xsi:noNamespaceSchemaLocation", "amzn-envelope.xsd"))
            .write_inner_content(|w| {
                w.create_element("Header").write_inner_content(|w| {
                    text(w, "DocumentVersion", "1.01")?;
                    text(w, "MerchantIdentifier", merchant_id)
                })?;
                text(w, "MessageType", message_type)?;
                w.create_element("Message").write_inner_content(|w| {
                    text(w, "MessageID", "1")?;
                    body(w)
                })?;
                Ok(())
            })?;
        Ok(())
    };
    write(&mut writer).map_err(|e| FeedError::Xml(e.to_string()))?;
    let mut xml =
        String::from_utf8(writer.into_inner()).map_err(|e| FeedError::Xml(e.to_string()))?;
    xml.push('\n');
    Ok(xml)
}

/// `<name>value</name>`, the value escaped.
fn text(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

/// `<Component><Type>kind</Type><Amount currency="…">value</Amount></Component>`.
fn component(
    w: &mut Writer<Vec<u8>>,
    kind: &str,
    (value, currency): (&str, &str),
) -> io::Result<()> {
    w.create_element("Component").write_inner_content(|w| {
        text(w, "Type", kind)?;
        w.create_element("Amount")
            .with_attribute(("currency", currency))
            .write_text_content(BytesText::new(value))?;
        Ok(())
    })?;
    Ok(())
}

/// A trimmed, non-empty value that XML 1.0 can carry.
fn value<'a>(field: &'static str, raw: &'a str) -> Result<&'a str, FeedError> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(FeedError::Empty { field });
    }
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r') || !(c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}')
    };
    if !trimmed.chars().all(allowed) {
        return Err(FeedError::InvalidCharacter { field });
    }
    Ok(trimmed)
}

/// The enum's own spelling of `raw` (matched without regard to case).
fn one_of(
    kind: &'static str,
    allowed: &'static [&'static str],
    raw: &str,
) -> Result<&'static str, FeedError> {
    let wanted = raw.trim();
    allowed
        .iter()
        .copied()
        .find(|a| a.eq_ignore_ascii_case(wanted))
        .ok_or_else(|| FeedError::UnknownReason {
            kind,
            value: raw.to_owned(),
            allowed,
        })
}

/// A checked amount: (value, currency).
fn amount(amount: &Amount) -> Result<(&str, &str), FeedError> {
    let value = amount.value.trim();
    let bad = |why| FeedError::BadAmount {
        value: amount.value.clone(),
        why,
    };
    if value.starts_with('-') {
        return Err(bad("negative"));
    }
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    if value.contains('.') && fraction.is_empty() {
        return Err(bad("not a decimal number"));
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    if fraction.len() > 2 {
        return Err(bad("more than two decimal places"));
    }
    if whole.len() > 18 {
        return Err(bad("too many digits"));
    }
    let currency = amount.currency.trim();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FeedError::BadCurrency(amount.currency.clone()));
    }
    Ok((value, currency))
}

/// A processing report, summed over its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessingReport {
    pub document_transaction_id: Option<String>,
    /// `StatusCode` of the report (`Complete` when Amazon finished it).
    pub status_code: Option<String>,
    pub processed: u64,
    pub successful: u64,
    pub with_error: u64,
    pub with_warning: u64,
    pub results: Vec<ReportResult>,
}

/// One `Result` of a processing report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportResult {
    /// The feed message it is about (0: the document as a whole).
    pub message_id: u64,
    /// `Error` or `Warning`.
    pub code: String,
    /// Amazon's numeric message code, as text.
    pub message_code: String,
    pub description: String,
    /// `AdditionalInfo/AmazonOrderID`, when Amazon names the order.
    pub order_id: Option<String>,
}

/// Read a processing report. Unknown elements, namespaces and attributes are ignored; a
/// document without a `ProcessingReport` and its `ProcessingSummary`, or one that is
/// not well-formed XML, is an error.
pub fn parse_processing_report(xml: &str) -> Result<ProcessingReport, FeedError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut content = String::new();
    let mut report = ProcessingReport::default();
    let mut reports = 0usize;
    let mut summaries = 0usize;
    let mut current: Option<ReportResult> = None;
    let broken = |e: &dyn std::fmt::Display| FeedError::NotAReport(format!("{e}"));
    loop {
        let event = reader.read_event().map_err(|e| {
            FeedError::NotAReport(format!("at byte {}: {e}", reader.error_position()))
        })?;
        match event {
            Event::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                content.clear();
                let under_report = path.last().is_some_and(|p| p == "ProcessingReport");
                if name == "Result" && under_report {
                    current = Some(ReportResult::default());
                }
                if name == "ProcessingReport" {
                    reports += 1;
                }
                path.push(name);
            }
            Event::Empty(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if name == "ProcessingReport" {
                    reports += 1;
                }
                if name == "ProcessingSummary"
                    && path.last().is_some_and(|p| p == "ProcessingReport")
                {
                    summaries += 1;
                }
            }
            Event::Text(t) => content.push_str(&t.xml10_content().map_err(|e| broken(&e))?),
            Event::CData(c) => content.push_str(&c.decode().map_err(|e| broken(&e))?),
            Event::GeneralRef(r) => {
                if let Some(c) = r.resolve_char_ref().map_err(|e| broken(&e))? {
                    content.push(c);
                } else {
                    let name = r.decode().map_err(|e| broken(&e))?;
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => content.push_str(s),
                        None => {
                            return Err(FeedError::NotAReport(format!("unknown entity &{name};")));
                        }
                    }
                }
            }
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    return Err(FeedError::NotAReport("an end tag without a start".into()));
                };
                let text = content.trim().to_owned();
                content.clear();
                let Some(at) = path.iter().rposition(|p| p == "ProcessingReport") else {
                    continue;
                };
                let inside: Vec<&str> = path[at + 1..].iter().map(String::as_str).collect();
                match (inside.as_slice(), name.as_str()) {
                    ([], "DocumentTransactionID") => report.document_transaction_id = Some(text),
                    ([], "StatusCode") => report.status_code = Some(text),
                    ([], "ProcessingSummary") => summaries += 1,
                    (["ProcessingSummary"], field) => {
                        let slot = match field {
                            "MessagesProcessed" => &mut report.processed,
                            "MessagesSuccessful" => &mut report.successful,
                            "MessagesWithError" => &mut report.with_error,
                            "MessagesWithWarning" => &mut report.with_warning,
                            _ => continue,
                        };
                        *slot += count(field, &text)?;
                    }
                    ([], "Result") => {
                        if let Some(result) = current.take() {
                            report.results.push(result);
                        }
                    }
                    (["Result"], field) => {
                        let Some(result) = current.as_mut() else {
                            continue;
                        };
                        match field {
                            "MessageID" => result.message_id = count(field, &text)?,
                            "ResultCode" => result.code = text,
                            "ResultMessageCode" => result.message_code = text,
                            "ResultDescription" => result.description = text,
                            _ => {}
                        }
                    }
                    (["Result", "AdditionalInfo"], "AmazonOrderID") => {
                        if let Some(result) = current.as_mut()
                            && !text.is_empty()
                        {
                            result.order_id = Some(text);
                        }
                    }
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(open) = path.last() {
        return Err(FeedError::NotAReport(format!(
            "the document ends inside <{open}>"
        )));
    }
    if reports == 0 {
        return Err(FeedError::NotAReport("no ProcessingReport element".into()));
    }
    if summaries == 0 {
        return Err(FeedError::NotAReport(
            "the ProcessingReport has no ProcessingSummary".into(),
        ));
    }
    Ok(report)
}

fn count(field: &str, text: &str) -> Result<u64, FeedError> {
    text.parse()
        .map_err(|_| FeedError::NotAReport(format!("{field} {text:?} is not a count")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    type Leaf = (String, String, Vec<(String, String)>);

    /// Every leaf of a document as (path, text, attributes), in document order.
    fn leaves(xml: &str) -> Vec<Leaf> {
        let mut reader = quick_xml::Reader::from_str(xml);
        let mut path: Vec<String> = Vec::new();
        let mut text = String::new();
        let mut attrs: Vec<(String, String)> = Vec::new();
        let mut out = Vec::new();
        loop {
            match reader.read_event().unwrap_or_else(|e| panic!("{e:?}")) {
                Event::Start(s) => {
                    path.push(
                        String::from_utf8(s.name().as_ref().to_vec())
                            .unwrap_or_else(|e| panic!("{e:?}")),
                    );
                    text.clear();
                    attrs = s
                        .attributes()
                        .map(|a| {
                            let a = a.unwrap_or_else(|e| panic!("{e:?}"));
                            (
                                String::from_utf8(a.key.as_ref().to_vec())
                                    .unwrap_or_else(|e| panic!("{e:?}")),
                                a.unescape_value()
                                    .unwrap_or_else(|e| panic!("{e:?}"))
                                    .into_owned(),
                            )
                        })
                        .collect();
                }
                Event::Text(t) => {
                    text.push_str(&t.xml10_content().unwrap_or_else(|e| panic!("{e:?}")))
                }
                Event::GeneralRef(r) => {
                    let name = r.decode().unwrap_or_else(|e| panic!("{e:?}"));
                    text.push_str(
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .unwrap_or_else(|| panic!("expected a value")),
                    );
                }
                Event::End(_) => {
                    if !text.trim().is_empty() {
                        out.push((path.join("/"), text.trim().to_owned(), attrs.clone()));
                    }
                    text.clear();
                    attrs.clear();
                    path.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    fn flat(xml: &str) -> Vec<(String, String)> {
        leaves(xml).into_iter().map(|(p, t, _)| (p, t)).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn a_cancellation_reads_back_in_order_and_escaped() {
        let xml = cancellation_feed(
            "M&<1>",
            "123-1234567-1234567",
            &[
                CancelLine {
                    item_code: "111 & <222>".into(),
                    reason: "NoInventory".into(),
                },
                CancelLine {
                    item_code: "333".into(),
                    reason: "buyercanceled".into(),
                },
            ],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(xml.contains("M&amp;&lt;1&gt;"), "{xml}");
        assert!(!xml.contains("<222>"));
        let e = "AmazonEnvelope";
        let m = "AmazonEnvelope/Message/OrderAcknowledgement";
        assert_eq!(
            flat(&xml),
            pairs(&[
                (&format!("{e}/Header/DocumentVersion"), "1.01"),
                (&format!("{e}/Header/MerchantIdentifier"), "M&<1>"),
                (&format!("{e}/MessageType"), "OrderAcknowledgement"),
                (&format!("{e}/Message/MessageID"), "1"),
                (&format!("{m}/AmazonOrderID"), "123-1234567-1234567"),
                (&format!("{m}/StatusCode"), "Failure"),
                (&format!("{m}/Item/AmazonOrderItemCode"), "111 & <222>"),
                (&format!("{m}/Item/CancelReason"), "NoInventory"),
                (&format!("{m}/Item/AmazonOrderItemCode"), "333"),
                (&format!("{m}/Item/CancelReason"), "BuyerCanceled"),
            ])
        );

        // And serde sees the same document.
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Envelope {
            header: Header,
            message_type: String,
            message: Message,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Header {
            merchant_identifier: String,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Message {
            #[serde(rename = "MessageID")]
            message_id: u32,
            order_acknowledgement: Ack,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Ack {
            #[serde(rename = "AmazonOrderID")]
            amazon_order_id: String,
            status_code: String,
            item: Vec<Item>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Item {
            amazon_order_item_code: String,
            cancel_reason: String,
        }
        let envelope: Envelope = quick_xml::de::from_str(&xml).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(envelope.header.merchant_identifier, "M&<1>");
        assert_eq!(envelope.message_type, "OrderAcknowledgement");
        assert_eq!(envelope.message.message_id, 1);
        let ack = envelope.message.order_acknowledgement;
        assert_eq!(ack.amazon_order_id, "123-1234567-1234567");
        assert_eq!(ack.status_code, "Failure");
        assert_eq!(ack.item.len(), 2);
        assert_eq!(ack.item[0].amazon_order_item_code, "111 & <222>");
        assert_eq!(ack.item[1].cancel_reason, "BuyerCanceled");
    }

    #[test]
    fn an_adjustment_reads_back_in_order() {
        let xml = adjustment_feed(
            "A2MERCHANT",
            "123-1234567-1234567",
            &[
                AdjustmentLine {
                    item_code: "111".into(),
                    reason: "CouldNotShip".into(),
                    principal: Amount {
                        value: "19.99".into(),
                        currency: "EUR".into(),
                    },
                    tax: Some(Amount {
                        value: "3.8".into(),
                        currency: "EUR".into(),
                    }),
                    quantity: Some(2),
                },
                AdjustmentLine {
                    item_code: "222".into(),
                    reason: "PriceError".into(),
                    principal: Amount {
                        value: "5".into(),
                        currency: "EUR".into(),
                    },
                    tax: None,
                    quantity: None,
                },
            ],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let m = "AmazonEnvelope/Message/OrderAdjustment";
        let i = format!("{m}/AdjustedItem");
        let c = format!("{i}/ItemPriceAdjustments/Component");
        let leaves = leaves(&xml);
        let got: Vec<(String, String)> = leaves
            .iter()
            .map(|(p, t, _)| (p.clone(), t.clone()))
            .collect();
        assert_eq!(
            got,
            pairs(&[
                ("AmazonEnvelope/Header/DocumentVersion", "1.01"),
                ("AmazonEnvelope/Header/MerchantIdentifier", "A2MERCHANT"),
                ("AmazonEnvelope/MessageType", "OrderAdjustment"),
                ("AmazonEnvelope/Message/MessageID", "1"),
                (&format!("{m}/AmazonOrderID"), "123-1234567-1234567"),
                (&format!("{i}/AmazonOrderItemCode"), "111"),
                (&format!("{i}/AdjustmentReason"), "CouldNotShip"),
                (&format!("{c}/Type"), "Principal"),
                (&format!("{c}/Amount"), "19.99"),
                (&format!("{c}/Type"), "Tax"),
                (&format!("{c}/Amount"), "3.8"),
                (&format!("{i}/Quantity"), "2"),
                (&format!("{i}/AmazonOrderItemCode"), "222"),
                (&format!("{i}/AdjustmentReason"), "PriceError"),
                (&format!("{c}/Type"), "Principal"),
                (&format!("{c}/Amount"), "5"),
            ])
        );
        let currencies: Vec<&str> = leaves
            .iter()
            .filter(|(p, _, _)| p.ends_with("/Amount"))
            .map(|(_, _, a)| a[0].1.as_str())
            .collect();
        assert_eq!(currencies, vec!["EUR", "EUR", "EUR"]);
        assert!(xml.contains("xsi:noNamespaceSchemaLocation=\"amzn-envelope.xsd\""));
    }

    #[test]
    fn values_are_validated_before_building() {
        let line = |reason: &str, value: &str, currency: &str| AdjustmentLine {
            item_code: "1".into(),
            reason: reason.into(),
            principal: Amount {
                value: value.into(),
                currency: currency.into(),
            },
            tax: None,
            quantity: None,
        };
        let adjust = |l: AdjustmentLine| adjustment_feed("M", "O", &[l]);
        assert!(matches!(
            adjust(line("BuyerCanceled", "1.00", "USD")),
            Err(FeedError::UnknownReason {
                kind: "AdjustmentReason",
                ..
            })
        ));
        for bad in ["-1.00", "1.234", "1,00", "", "1.", ".5", "1e3", "abc"] {
            assert!(
                matches!(
                    adjust(line("Other", bad, "USD")),
                    Err(FeedError::BadAmount { .. })
                ),
                "{bad}"
            );
        }
        for bad in ["usd", "US", "EURO", ""] {
            assert!(
                matches!(
                    adjust(line("Other", "1.00", bad)),
                    Err(FeedError::BadCurrency(_))
                ),
                "{bad}"
            );
        }
        assert!(adjust(line("Other", "0.00", "USD")).is_ok());
        let mut mixed = line("Other", "1.00", "USD");
        mixed.tax = Some(Amount {
            value: "0.10".into(),
            currency: "EUR".into(),
        });
        assert!(matches!(
            adjust(mixed),
            Err(FeedError::MixedCurrencies { .. })
        ));
        let mut zero = line("Other", "1.00", "USD");
        zero.quantity = Some(0);
        assert_eq!(adjust(zero), Err(FeedError::BadQuantity(0)));
        assert_eq!(adjustment_feed("M", "O", &[]), Err(FeedError::NoItems));
        assert!(matches!(
            adjustment_feed(" ", "O", &[line("Other", "1", "USD")]),
            Err(FeedError::Empty {
                field: "MerchantIdentifier"
            })
        ));

        let cancel = |reason: &str| {
            cancellation_feed(
                "M",
                "O",
                &[CancelLine {
                    item_code: "1".into(),
                    reason: reason.into(),
                }],
            )
        };
        let error = cancel("CouldNotShip").unwrap_err();
        assert!(matches!(
            error,
            FeedError::UnknownReason {
                kind: "CancelReason",
                ..
            }
        ));
        assert!(error.to_string().contains("NoInventory"), "{error}");
        assert!(cancel("MerchandiseNotReceived").is_ok());
        assert_eq!(cancellation_feed("M", "O", &[]), Err(FeedError::NoItems));
        assert!(matches!(
            cancellation_feed(
                "M",
                "O\u{0}",
                &[CancelLine {
                    item_code: "1".into(),
                    reason: "NoInventory".into()
                }]
            ),
            Err(FeedError::InvalidCharacter { .. })
        ));
    }

    const SUCCESS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<AmazonEnvelope xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">
  <Header>
    <DocumentVersion>1.02</DocumentVersion>
    <MerchantIdentifier>A2MERCHANT</MerchantIdentifier>
  </Header>
  <MessageType>ProcessingReport</MessageType>
  <Message>
    <MessageID>1</MessageID>
    <ProcessingReport>
      <DocumentTransactionID>50012018000</DocumentTransactionID>
      <StatusCode>Complete</StatusCode>
      <ProcessingSummary>
        <MessagesProcessed>1</MessagesProcessed>
        <MessagesSuccessful>1</MessagesSuccessful>
        <MessagesWithError>0</MessagesWithError>
        <MessagesWithWarning>0</MessagesWithWarning>
      </ProcessingSummary>
    </ProcessingReport>
  </Message>
</AmazonEnvelope>"#;

    const ERRORS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<amzn:AmazonEnvelope xmlns:amzn="urn:example" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="amzn-envelope.xsd">
  <amzn:Header><DocumentVersion>1.02</DocumentVersion><MerchantIdentifier>M</MerchantIdentifier></amzn:Header>
  <MessageType>ProcessingReport</MessageType>
  <Message>
    <MessageID>1</MessageID>
    <ProcessingReport>
      <DocumentTransactionID>50012018001</DocumentTransactionID>
      <StatusCode>Complete</StatusCode>
      <ProcessingSummary>
        <MessagesProcessed>2</MessagesProcessed>
        <MessagesSuccessful>0</MessagesSuccessful>
        <MessagesWithError>2</MessagesWithError>
        <MessagesWithWarning>0</MessagesWithWarning>
        <SomethingNew>7</SomethingNew>
      </ProcessingSummary>
      <Result>
        <MessageID>1</MessageID>
        <ResultCode>Error</ResultCode>
        <ResultMessageCode>18028</ResultMessageCode>
        <ResultDescription>The data you submitted is incomplete or invalid &amp; was &lt;rejected&gt;.</ResultDescription>
        <AdditionalInfo>
          <AmazonOrderID>123-1234567-1234567</AmazonOrderID>
          <SKU>ignored</SKU>
        </AdditionalInfo>
      </Result>
      <Result>
        <MessageID>2</MessageID>
        <ResultCode>Error</ResultCode>
        <ResultMessageCode>25</ResultMessageCode>
        <ResultDescription><![CDATA[We are unable to process the XML feed]]></ResultDescription>
      </Result>
    </ProcessingReport>
  </Message>
</amzn:AmazonEnvelope>"#;

    #[test]
    fn a_success_report_parses() {
        let report = parse_processing_report(SUCCESS).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            report,
            ProcessingReport {
                document_transaction_id: Some("50012018000".into()),
                status_code: Some("Complete".into()),
                processed: 1,
                successful: 1,
                with_error: 0,
                with_warning: 0,
                results: vec![],
            }
        );
    }

    #[test]
    fn an_error_report_keeps_both_results() {
        let report = parse_processing_report(ERRORS).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(report.processed, 2);
        assert_eq!(report.successful, 0);
        assert_eq!(report.with_error, 2);
        assert_eq!(
            report.results,
            vec![
                ReportResult {
                    message_id: 1,
                    code: "Error".into(),
                    message_code: "18028".into(),
                    description:
                        "The data you submitted is incomplete or invalid & was <rejected>.".into(),
                    order_id: Some("123-1234567-1234567".into()),
                },
                ReportResult {
                    message_id: 2,
                    code: "Error".into(),
                    message_code: "25".into(),
                    description: "We are unable to process the XML feed".into(),
                    order_id: None,
                },
            ]
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for garbage in [
            "",
            "not xml at all",
            "{\"json\": true}",
            "<AmazonEnvelope><Message><ProcessingReport>",
            "<a><b></a>",
            "<AmazonEnvelope><Message/></AmazonEnvelope>",
            "<ProcessingReport><StatusCode>Complete</StatusCode></ProcessingReport>",
            "<ProcessingReport><ProcessingSummary><MessagesProcessed>many</MessagesProcessed></ProcessingSummary></ProcessingReport>",
            "<ProcessingReport><ProcessingSummary/>&bogus;</ProcessingReport>",
            "\u{0}\u{1}<<<>>>&&&",
        ] {
            assert!(
                matches!(
                    parse_processing_report(garbage),
                    Err(FeedError::NotAReport(_))
                ),
                "{garbage:?}"
            );
        }
        // A feed is not its report either.
        let feed = cancellation_feed(
            "M",
            "O",
            &[CancelLine {
                item_code: "1".into(),
                reason: "NoInventory".into(),
            }],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(parse_processing_report(&feed).is_err());
    }
}
