//! The last gate before a buyer message leaves: render its template in the buyer's
//! language, then lint the rendered text for the marketplace. A message that breaks the
//! policy is refused with its violations, for the caller to alert instead of sending.
//! `check` lints templates as written; this catches what only the data brings (a
//! tracking URL that is not a carrier's, an e-mail address in an item title).

use super::compliance::{self, MessageKind, Policy, Violation};
use super::templates::{Rendered, TemplateError, Templates};

/// What may be sent, or why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Composed {
    Ready(Rendered),
    Refused {
        rendered: Rendered,
        violations: Vec<Violation>,
    },
}

/// Render `template` for `language` with `context` and lint it as `kind` under `policy`.
pub fn compose(
    templates: &Templates,
    template: &str,
    language: &str,
    context: &serde_json::Value,
    policy: Policy,
    kind: MessageKind,
) -> Result<Composed, TemplateError> {
    let rendered = templates.render(template, language, context)?;
    let violations = compliance::lint(&rendered.text, policy, kind);
    Ok(if violations.is_empty() {
        Composed::Ready(rendered)
    } else {
        Composed::Refused {
            rendered,
            violations,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compliance::Check;
    use serde_json::json;

    fn templates() -> Templates {
        let sources = [(
            "parcel.en.txt",
            "Your order {{ order.id }} is on its way with {{ shipment.carrier }}: {{ shipment.tracking_url }}\n",
        )];
        match Templates::from_sources(&sources) {
            Ok(t) => t,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn context(url: &str) -> serde_json::Value {
        json!({ "order": { "id": "112-5502938-1174650", "marketplace": "ATVPDKIKX0DER" },
                "shipment": { "carrier": "UPS", "tracking_url": url } })
    }

    #[test]
    fn a_compliant_message_is_ready() {
        let composed = compose(
            &templates(),
            "parcel",
            "en",
            &context("https://www.ups.com/track?tracknum=1Z999AA10123456784"),
            Policy::Amazon,
            MessageKind::BuyerReply,
        );
        assert!(
            matches!(composed, Ok(Composed::Ready(ref r)) if r.text.contains("1Z999AA10123456784")),
            "{composed:?}"
        );
    }

    #[test]
    fn data_that_breaks_the_policy_is_refused_not_sent() {
        let composed = compose(
            &templates(),
            "parcel",
            "en",
            &context("https://track-my-parcel.example/1Z999"),
            Policy::Amazon,
            MessageKind::BuyerReply,
        );
        let Ok(Composed::Refused { violations, .. }) = composed else {
            panic!("{composed:?}")
        };
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].check, Check::Link);
    }

    #[test]
    fn a_message_type_without_links_refuses_even_a_carrier_link() {
        let composed = compose(
            &templates(),
            "parcel",
            "en",
            &context("https://www.ups.com/track?tracknum=1Z999AA10123456784"),
            Policy::Amazon,
            MessageKind::ConfirmCustomizationDetails,
        );
        assert!(
            matches!(composed, Ok(Composed::Refused { .. })),
            "{composed:?}"
        );
    }
}
