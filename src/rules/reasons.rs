//! The reason codes and message types a marketplace accepts, so a rule that names an
//! unknown one fails in `nightdesk check` and `nightdesk test`, not at 3 a.m. against the
//! live API. Amazon's lists are from its order feeds (OrderAcknowledgement CancelReason,
//! OrderAdjustment AdjustmentReason) and the Messaging API (research/marketplaces.md §4, §7).

use std::sync::LazyLock;

use regex::Regex;

/// `CancelReason` of the order acknowledgement feed.
pub const AMAZON_CANCEL_REASONS: &[&str] = &[
    "NoInventory",
    "ShippingAddressUndeliverable",
    "CustomerExchange",
    "BuyerCanceled",
    "GeneralAdjustment",
    "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure",
    "CustomerReturn",
    "MerchandiseNotReceived",
];

/// `AdjustmentReason` of the payment adjustment feed.
pub const AMAZON_REFUND_REASONS: &[&str] = &[
    "NoInventory",
    "CustomerReturn",
    "GeneralAdjustment",
    "CouldNotShip",
    "DifferentItem",
    "Abandoned",
    "CustomerCancel",
    "PriceError",
    "ProductOutofStock",
    "CustomerAddressIncorrect",
    "Exchange",
    "Other",
    "CarrierCreditDecision",
    "RiskAssessmentInformationNotValid",
    "CarrierCoverageFailure",
    "TransactionRecord",
    "Undeliverable",
    "RefusedDelivery",
];

/// Messaging API types that carry text (the attachment-only ones need documents).
pub const AMAZON_MESSAGE_TYPES: &[&str] = &[
    "confirmCustomizationDetails",
    "confirmDeliveryDetails",
    "confirmOrderDetails",
    "confirmServiceDetails",
    "digitalAccessKey",
    "unexpectedProblem",
];

/// The other marketplaces' own cancel reasons. A rule may name one of these for an order
/// of that marketplace, or Amazon's, which every marketplace's executor maps to its own.
pub const OTHER_CANCEL_REASONS: [(&str, &[&str]); 3] = [
    ("Shopify", crate::executors::shopify::CANCEL_REASONS),
    ("eBay", crate::executors::ebay::CANCEL_REASONS),
    ("Walmart", crate::executors::walmart::CANCEL_REASONS),
];

/// The other marketplaces' own refund reasons (see [`OTHER_CANCEL_REASONS`]).
pub const OTHER_REFUND_REASONS: [(&str, &[&str]); 3] = [
    ("Shopify", crate::executors::shopify::REFUND_REASONS),
    ("eBay", crate::executors::ebay::REFUND_REASONS),
    ("Walmart", crate::executors::walmart::REFUND_REASONS),
];

/// Why `value` is neither one of Amazon's reasons (`amazon`) nor another marketplace's
/// own (`others`), or `None` if it is one of them.
pub fn unknown_reason(
    what: &str,
    value: &str,
    amazon: &[&str],
    others: &[(&str, &[&str])],
) -> Option<String> {
    if amazon.contains(&value) || others.iter().any(|(_, list)| list.contains(&value)) {
        return None;
    }
    let mut text = format!(
        "unknown {what} {value:?}; Amazon's (mapped on every marketplace) are: {}",
        amazon.join(", ")
    );
    for (marketplace, list) in others {
        text.push_str(&format!("; {marketplace}'s own: {}", list.join(", ")));
    }
    Some(text)
}

/// A marketplace's own reason code for `reason`: one of its `native` codes as it is, or
/// the one `map` gives for an Amazon code (each executor's table); `None` for neither.
pub fn native_reason(
    reason: &str,
    native: &[&'static str],
    map: &[(&str, &'static str)],
) -> Option<&'static str> {
    let reason = reason.trim();
    native
        .iter()
        .find(|code| **code == reason)
        .copied()
        .or_else(|| {
            map.iter()
                .find(|(amazon, _)| *amazon == reason)
                .map(|(_, code)| *code)
        })
}

/// For the executors' tests: every entry of a marketplace's `map` goes from one of
/// Amazon's codes to one of its `native` codes, and with `covers_all`, every Amazon code
/// has an entry (or is a native code too).
#[cfg(test)]
pub(crate) fn assert_reason_table(
    native: &[&'static str],
    map: &[(&str, &'static str)],
    amazon: &[&str],
    covers_all: bool,
) {
    for (from, to) in map {
        assert!(amazon.contains(from), "{from} is not an Amazon code");
        assert!(native.contains(to), "{to} is not a native code");
    }
    if covers_all {
        for code in amazon {
            assert!(
                native_reason(code, native, map).is_some(),
                "{code} has no mapping"
            );
        }
    }
}

/// Why `value` is not in `list`, or `None` if it is.
pub fn unknown(what: &str, value: &str, list: &[&str]) -> Option<String> {
    if list.contains(&value) {
        return None;
    }
    Some(format!(
        "unknown {what} {value:?}; Amazon's are: {}",
        list.join(", ")
    ))
}

static CANCEL_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"\bcancel\s*\([^,()]+,\s*"([^"]*)""#).ok());
static REFUND_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"\brefund\s*\([^#]*#\{[^}]*\breason\s*:\s*"([^"]*)""#).ok());
static NOTIFY_LITERAL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"\bnotify_buyer\s*\([^,()]+,\s*"([^"]*)""#).ok());

/// A pattern that captures a literal, what it names, and the values allowed (Amazon's,
/// and the other marketplaces' own).
type LiteralCheck = (
    &'static LazyLock<Option<Regex>>,
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static [&'static str])],
);

/// Check the reason codes and message types a rule's source names literally; each
/// problem with its 1-based line. (Computed values are checked when the rule runs.)
pub fn check_literals(source: &str) -> Vec<(usize, String)> {
    let checks: [LiteralCheck; 3] = [
        (
            &CANCEL_LITERAL,
            "cancel reason",
            AMAZON_CANCEL_REASONS,
            &OTHER_CANCEL_REASONS,
        ),
        (
            &REFUND_LITERAL,
            "refund reason",
            AMAZON_REFUND_REASONS,
            &OTHER_REFUND_REASONS,
        ),
        (&NOTIFY_LITERAL, "message type", AMAZON_MESSAGE_TYPES, &[]),
    ];
    let mut problems = Vec::new();
    for (pattern, what, list, others) in checks {
        let Some(pattern) = pattern.as_ref() else {
            continue;
        };
        for found in pattern.captures_iter(source) {
            let Some(value) = found.get(1) else { continue };
            if let Some(problem) = unknown_reason(what, value.as_str(), list, others) {
                let line = source[..value.start()].matches('\n').count() + 1;
                problems.push((line, problem));
            }
        }
    }
    problems.sort();
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_reasons_are_checked_with_their_line() {
        let source = "fn on_order_sweep(order) {\n  cancel(order, \"BuyerCanceled\");\n  cancel(order, \"BecauseISaidSo\");\n  refund(order, #{ items: [], reason: \"CustomerReturn\" });\n  refund(order, #{ reason: \"Whatever\" });\n  notify_buyer(order, \"unexpectedProblem\", \"t\");\n  notify_buyer(order, \"pleaseReview\", \"t\");\n}\n";
        let problems = check_literals(source);
        let lines: Vec<usize> = problems.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, vec![3, 5, 7], "{problems:?}");
        assert!(
            problems[0]
                .1
                .contains("unknown cancel reason \"BecauseISaidSo\"")
        );
        assert!(problems[1].1.contains("refund reason"));
        assert!(problems[2].1.contains("message type"));
    }

    #[test]
    fn another_marketplaces_own_reasons_are_accepted_and_listed() {
        let source = "fn on_order_sweep(order) {\n  cancel(order, \"INVENTORY\");\n  cancel(order, \"SELLER_CANCEL_OUT_OF_STOCK\");\n  refund(order, #{ reason: \"BUYER_RETURN\" });\n  cancel(order, \"Nope\");\n}\n";
        let problems = check_literals(source);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 5);
        for listed in ["Amazon's", "Shopify's own", "eBay's own", "Walmart's own"] {
            assert!(problems[0].1.contains(listed), "{}", problems[0].1);
        }
    }
}
