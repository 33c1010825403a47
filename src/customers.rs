//! One customer across channels: the keys an order is indexed under (a real e-mail
//! address, a normalised name), and how a buyer message finds the same customer's
//! orders on every connected channel, each with a confidence a rule can read.
//!
//! Marketplace relay addresses (Amazon, Walmart, eBay members) never match real ones,
//! so a relayed message matches by name, which is weak on its own: a name alone is
//! shown to rules with a low confidence and is never enough to answer with another
//! person's order ([`ANSWERABLE`]). An order number the buyer quotes finds its order on
//! whichever channel uses that format.
//!
//! What it must never do: treat a relay address as the customer's, or log names and
//! addresses (personal data).

use std::collections::BTreeMap;

use unicode_normalization::UnicodeNormalization;

use crate::model::{BuyerMessage, Customer, SalesChannel, StoredOrder};
use crate::store::{Store, StoreError};

/// The confidence from which a match may be answered with that order's status (the
/// shipped ghost-order rule's threshold, and what a reply falls back to).
pub const ANSWERABLE: f64 = 0.75;

/// Below this a candidate is not shown to rules at all.
const SHOWN: f64 = 0.5;

/// Courtesy titles dropped from names before comparing.
const TITLES: &[&str] = &[
    "mr", "mrs", "ms", "miss", "dr", "prof", "herr", "frau", "m", "mme", "mlle", "sr", "sra",
    "sig", "signora",
];

/// Domains that relay buyer mail: their addresses are not the customer's.
const RELAY_DOMAINS: &[&str] = &[
    "marketplace.amazon.",
    "relay.walmart.com",
    "members.ebay.",
    "ebay.com",
];

/// The words of `text` as compared across channels: no accents, lower case, letters
/// NFKD keeps whole (`ß`, `æ`, `ø`…) written as keyboards without them write them.
fn plain_words(text: &str) -> Vec<String> {
    let spelled: String = text
        .chars()
        .map(|c| match c {
            'ß' | 'ẞ' => "ss".to_owned(),
            'æ' | 'Æ' => "ae".to_owned(),
            'œ' | 'Œ' => "oe".to_owned(),
            'ø' | 'Ø' => "o".to_owned(),
            'ł' | 'Ł' => "l".to_owned(),
            'đ' | 'Đ' => "d".to_owned(),
            other => other.to_string(),
        })
        .collect();
    let plain: String = spelled
        .nfkd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    plain.split_whitespace().map(str::to_owned).collect()
}

/// A name as compared across channels: [`plain_words`] in alphabetical order, courtesy
/// titles dropped. `None` when fewer than two words remain (a single word says too
/// little about who it is).
pub fn normalise_name(name: &str) -> Option<String> {
    let mut words: Vec<String> = plain_words(name)
        .into_iter()
        .filter(|w| !TITLES.contains(&w.as_str()))
        .collect();
    if words.len() < 2 {
        return None;
    }
    words.sort_unstable();
    Some(words.join(" "))
}

/// A postcode as compared: upper case, no spaces or dashes.
pub fn normalise_postcode(postcode: &str) -> String {
    postcode
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_uppercase)
        .collect()
}

/// A city as compared: [`plain_words`] in their own order (`Saint-Étienne` is
/// `saint etienne`).
fn normalise_city(city: &str) -> String {
    plain_words(city).join(" ")
}

/// Whether `address` is a marketplace's relay address rather than the customer's own.
pub fn is_relay_address(address: &str) -> bool {
    let Some((_, domain)) = address.rsplit_once('@') else {
        return true;
    };
    let domain = domain.to_ascii_lowercase();
    RELAY_DOMAINS.iter().any(|relay| {
        domain.starts_with(relay) || domain.ends_with(&format!(".{relay}")) || domain == *relay
    })
}

/// The keys an order's customer is indexed under: `email:<address>` for a real address,
/// `name:<normalised>` for a name.
pub fn index_keys(customer: &Customer) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(email) = &customer.email {
        let email = email.trim().to_ascii_lowercase();
        if email.contains('@') && !is_relay_address(&email) {
            keys.push(format!("email:{email}"));
        }
    }
    if let Some(name) = customer.name.as_deref().and_then(normalise_name) {
        keys.push(format!("name:{name}"));
    }
    keys
}

/// What a buyer message says about who wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    pub email: Option<String>,
    pub name: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
}

impl Writer {
    pub fn of(message: &BuyerMessage) -> Writer {
        let address = message
            .mail
            .reply_to
            .iter()
            .chain(std::iter::once(&message.from))
            .map(|a| a.trim().to_ascii_lowercase())
            .find(|a| a.contains('@') && !is_relay_address(a));
        Writer {
            email: address,
            name: message.mail.from_name.clone(),
            postcode: None,
            city: None,
        }
    }

    fn keys(&self) -> Vec<String> {
        index_keys(&Customer {
            email: self.email.clone(),
            name: self.name.clone(),
            ..Customer::default()
        })
    }
}

/// How sure a candidate order's customer is the writer, and why; `None` when nothing
/// matches.
pub fn score(writer: &Writer, customer: &Customer) -> Option<(f64, &'static str)> {
    let same = |a: &Option<String>, b: &Option<String>, f: fn(&str) -> String| match (a, b) {
        (Some(a), Some(b)) => {
            let (a, b) = (f(a), f(b));
            !a.is_empty() && a == b
        }
        _ => false,
    };
    // ZIP+4 and its five digits are one postcode.
    let same_postcode = |a: &Option<String>, b: &Option<String>| match (a, b) {
        (Some(a), Some(b)) => {
            let (a, b) = (normalise_postcode(a), normalise_postcode(b));
            let (short, long) = if a.len() <= b.len() {
                (&a, &b)
            } else {
                (&b, &a)
            };
            short.len() >= 4
                && (short == long
                    || (short.len() == 5 && long.len() == 9 && long.starts_with(short.as_str())))
        }
        _ => false,
    };
    let lower = |s: &str| s.trim().to_ascii_lowercase();
    if same(&writer.email, &customer.email, lower)
        && writer
            .email
            .as_deref()
            .is_some_and(|e| !is_relay_address(e))
    {
        return Some((1.0, "same e-mail address"));
    }
    let name = |s: &str| normalise_name(s).unwrap_or_default();
    if !same(&writer.name, &customer.name, name) {
        return None;
    }
    if same_postcode(&writer.postcode, &customer.postcode) {
        return Some((0.9, "same name and postcode"));
    }
    if same(&writer.city, &customer.city, normalise_city) {
        return Some((0.75, "same name and city"));
    }
    Some((SHOWN, "same name only"))
}

/// An order the writer of a message probably placed.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomerMatch {
    pub order: StoredOrder,
    pub confidence: f64,
    pub reason: &'static str,
}

/// The order a message is about on its own channel: the order id it names (in that
/// channel's format), else the order whose parcel has the tracking number it names.
pub async fn order_of_message(
    store: &dyn Store,
    message: &BuyerMessage,
) -> Result<Option<StoredOrder>, StoreError> {
    if let Some(id) = &message.order_id {
        let channel = SalesChannel::of_order_number(id).unwrap_or(message.channel);
        if channel == message.channel
            && let Some(order) = store.order(channel, id).await?
        {
            return Ok(Some(order));
        }
    }
    let Some(number) = &message.tracking_number else {
        return Ok(None);
    };
    for watch in store.parcel_watches(Some(number)).await? {
        if let Some((channel, id)) = watch.subject.as_order()
            && channel == message.channel
            && let Some(order) = store.order(channel, id).await?
        {
            return Ok(Some(order));
        }
    }
    Ok(None)
}

/// The writer's orders on the other channels (and other accounts), best first: an
/// order number in another channel's format (certain), then the customer index.
pub async fn matches(
    store: &dyn Store,
    message: &BuyerMessage,
    own: Option<&StoredOrder>,
) -> Result<Vec<CustomerMatch>, StoreError> {
    let mut found: BTreeMap<(String, String), CustomerMatch> = BTreeMap::new();
    let is_own = |o: &StoredOrder| {
        own.is_some_and(|own| own.order.channel == o.order.channel && own.order.id == o.order.id)
    };
    if let Some(id) = &message.order_id
        && let Some(channel) = SalesChannel::of_order_number(id)
        && channel != message.channel
        && let Some(order) = store.order(channel, id).await?
        && !is_own(&order)
    {
        found.insert(
            (channel.as_str().to_owned(), order.order.id.clone()),
            CustomerMatch {
                order,
                confidence: 1.0,
                reason: "the order number the buyer gave",
            },
        );
    }
    let writer = Writer::of(message);
    let keys = writer.keys();
    if !keys.is_empty() {
        for (channel, id) in store.customer_orders(&keys).await? {
            if found.contains_key(&(channel.clone(), id.clone())) {
                continue;
            }
            let Ok(channel_enum) = channel.parse::<SalesChannel>() else {
                continue;
            };
            let Some(order) = store.order(channel_enum, &id).await? else {
                continue;
            };
            if is_own(&order) {
                continue;
            }
            if let Some((confidence, reason)) = score(&writer, &order.order.customer) {
                found.insert(
                    (channel, id),
                    CustomerMatch {
                        order,
                        confidence,
                        reason,
                    },
                );
            }
        }
    }
    let mut list: Vec<CustomerMatch> = found.into_values().collect();
    list.sort_by(|a, b| {
        b.confidence.total_cmp(&a.confidence).then(
            b.order
                .order
                .purchase_date
                .cmp(&a.order.order.purchase_date),
        )
    });
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(name: &str, email: Option<&str>, postcode: &str, city: &str) -> Customer {
        Customer {
            email: email.map(str::to_owned),
            name: Some(name.to_owned()),
            postcode: Some(postcode.to_owned()),
            city: Some(city.to_owned()),
            country: None,
        }
    }

    #[test]
    fn names_compare_without_case_accents_spacing_titles_or_word_order() {
        for (a, b) in [
            ("Élodie Fournier", "elodie fournier"),
            ("FOURNIER Élodie", "Elodie  Fournier"),
            ("Jürgen Weiß", "Jurgen Weiss"),
            ("Mme Élodie Fournier", "Élodie Fournier"),
            ("José-María García", "Jose Maria Garcia"),
            ("Dr. Karen Miller", "karen MILLER"),
        ] {
            assert_eq!(normalise_name(a), normalise_name(b), "{a} ~ {b}");
            assert!(normalise_name(a).is_some(), "{a}");
        }
        for (a, b) in [
            ("Karen Miller", "Karin Miller"),
            ("Élodie Fournier", "Élodie Fournet"),
            ("Anna Maria Schmidt", "Anna Schmidt"),
        ] {
            assert_ne!(normalise_name(a), normalise_name(b), "{a} !~ {b}");
        }
        assert_eq!(normalise_name("Cher"), None, "one word says too little");
        assert_eq!(normalise_name("Mr Smith"), None);
    }

    #[test]
    fn weiss_and_weiss_with_eszett_are_one_name() {
        // NFKD leaves ß as it is; compare what buyers type on keyboards without it.
        let a = normalise_name("Jürgen Weiß");
        let b = normalise_name("Jurgen Weiss");
        assert_eq!(a, b);
    }

    #[test]
    fn relay_addresses_are_never_the_customers() {
        for relay in [
            "x7k2p9q4r1@marketplace.amazon.com",
            "abc@marketplace.amazon.de",
            "f00d@relay.walmart.com",
            "buyer_x@members.ebay.com",
        ] {
            assert!(is_relay_address(relay), "{relay}");
            assert!(
                index_keys(&customer("Jane Doe", Some(relay), "1", "x"))
                    .iter()
                    .all(|k| !k.starts_with("email:"))
            );
        }
        assert!(!is_relay_address("elodie.fournier@example.fr"));
    }

    #[test]
    fn the_match_table() {
        let writer =
            |name: &str, email: Option<&str>, postcode: Option<&str>, city: Option<&str>| Writer {
                email: email.map(str::to_owned),
                name: Some(name.to_owned()),
                postcode: postcode.map(str::to_owned),
                city: city.map(str::to_owned),
            };
        let elodie = customer(
            "Élodie Fournier",
            Some("Elodie.Fournier@example.fr"),
            "69002",
            "Lyon",
        );
        let etienne = customer("Elodie Fournier", None, "42000", "saint etienne");
        let cases: [(Writer, &Customer, Option<f64>); 9] = [
            // The same address, whatever the name says.
            (
                writer("E. F.", Some("elodie.fournier@example.fr"), None, None),
                &elodie,
                Some(1.0),
            ),
            (
                writer("FOURNIER Elodie", None, Some("69 002"), None),
                &elodie,
                Some(0.9),
            ),
            (
                writer("Elodie Fournier", None, None, Some("LYON")),
                &elodie,
                Some(0.75),
            ),
            (
                writer("Élodie Fournier", None, None, Some("Saint-Étienne")),
                &etienne,
                Some(0.75),
            ),
            (
                writer("Élodie Fournier", None, None, None),
                &elodie,
                Some(0.5),
            ),
            // A different person: another name, or the same name elsewhere is still
            // only a name.
            (
                writer("Élodie Fournet", None, Some("69002"), None),
                &elodie,
                None,
            ),
            (
                writer("Elodie Fournier", None, Some("75001"), Some("Paris")),
                &elodie,
                Some(0.5),
            ),
            // A relay address never matches anything.
            (
                writer("Someone Else", Some("x@marketplace.amazon.fr"), None, None),
                &customer("Someone Other", Some("x@marketplace.amazon.fr"), "1", "x"),
                None,
            ),
            (
                writer("Karen Miller", None, Some("97209"), None),
                &customer("Karen Miller", None, "97209-1234", "Portland"),
                Some(0.9),
            ),
        ];
        for (i, (writer, customer, expected)) in cases.iter().enumerate() {
            assert_eq!(
                score(writer, customer).map(|(c, _)| c),
                *expected,
                "case {i}: {writer:?}"
            );
        }
    }
}
