//! [`ParsedMail`] → [`Understanding`]: who relayed the mail, whom to answer, the order
//! and parcel it is about, its language and intent, the buyer's own words, and whether it
//! must not be answered.
//!
//! - **Marketplace and relay** come from the From domain: `marketplace.amazon.<site>` is
//!   Amazon's buyer relay (the site gives the marketplace id), any other `amazon.<site>`
//!   sender is Amazon itself (a notification); `members.ebay.<site>` is eBay's member
//!   relay; `relay.walmart.com` is Walmart's; Shopify's contact form comes from
//!   `shopify.com` with the customer in Reply-To. Other senders: no marketplace, the
//!   address to answer is Reply-To or From.
//! - **Buyer's words**: the text between Amazon's "Begin message"/"End message" markers
//!   when present; then quoted history is cut at the first attribution or separator line
//!   ("On … wrote:", "Am … schrieb …:", "Le … a écrit :", "El … escribió:", "Il … ha
//!   scritto:", "-----Original Message-----" and its translations, an Outlook
//!   "From:/Sent:" block, a line of underscores, the "-- " signature line), and lines
//!   starting with `>` are dropped. A forwarded message stays (it is what the sender wants
//!   read) without its From/Date/Subject/To block.
//! - **Order id**: the subject first, then the buyer's words, then the whole text; in each,
//!   Amazon `3-7-7`, then eBay `2-5-5`, then a 13 or 15 digit number labelled as an order
//!   (Walmart), then `#1001` labelled as an order or in a Shopify mail. A number right
//!   after a phone label or a `+`, or glued to other digits or dashes, is never taken; an
//!   unlabelled digit run is never taken (it may be a tracking or phone number).
//! - **Tracking number**: `carriers::detect::find_in_text` on the subject and the buyer's
//!   words, then on the whole text; never the order id.
//! - **Intent**: keyword rules in en/de/fr/es/it on the subject and the buyer's words,
//!   first match in the order of [`Intent::PRECEDENCE`]: cancel, return, refund,
//!   address change, where is my order. A buyer who wants to cancel often also asks
//!   where the order is, a return request usually names the refund, and an address change
//!   mentions the parcel: the more specific request wins.
//! - **Must not answer**, first reason found: our own mail; an auto-reply by header
//!   (`Auto-Submitted` other than `no`, `X-Autoreply`, `X-Autorespond`,
//!   `X-Auto-Response-Suppress`); a bounce; bulk or list mail (`Precedence:
//!   bulk/list/junk/auto_reply`, `List-Id`, `List-Unsubscribe`); a marketplace's own
//!   notification; a no-reply sender; an auto-reply by subject ("Automatic reply",
//!   "Abwesenheitsnotiz", "Réponse automatique"…).

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use whatlang::{Detector, Lang};

use super::parse::{Attachment, ParsedMail};
use crate::sources::carriers::detect::{Detection, find_in_text};

/// What nightdesk understood of one mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Understanding {
    /// `amazon`, `ebay`, `walmart` or `shopify`.
    pub marketplace: Option<String>,
    /// Amazon's marketplace id, from the relay's or sender's site (`amazon.de` →
    /// `A1PA6795UKMFR9`).
    pub marketplace_id: Option<String>,
    /// The address an answer goes to; None for a marketplace notification.
    pub relay_address: Option<String>,
    /// Amazon `302-1234567-1234567`, eBay `12-12345-12345`, Walmart 13/15 digits,
    /// Shopify `#1001`.
    pub order_id: Option<String>,
    pub tracking_number: Option<String>,
    /// `ups`, `fedex`, `usps`, `dhl`, `dpd`, or a label for others ("Amazon Logistics").
    pub tracking_carrier: Option<String>,
    /// ISO 639-1 (en, de, fr, es, it, ja); None when the text is too short to tell.
    pub language: Option<String>,
    /// One of [`Intent`]'s names.
    pub intent: String,
    /// Why the mail must not be answered; None when it may be.
    pub do_not_answer: Option<String>,
    /// The buyer's own words, quoted history stripped.
    pub new_text: String,
    pub attachments: Vec<Attachment>,
}

/// What the buyer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    WhereIsMyOrder,
    Cancel,
    Refund,
    Return,
    AddressChange,
    Other,
}

impl Intent {
    /// The order in which the rules are tried; the first that matches wins.
    pub const PRECEDENCE: [Intent; 5] = [
        Intent::Cancel,
        Intent::Return,
        Intent::Refund,
        Intent::AddressChange,
        Intent::WhereIsMyOrder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::WhereIsMyOrder => "where_is_my_order",
            Intent::Cancel => "cancel",
            Intent::Refund => "refund",
            Intent::Return => "return",
            Intent::AddressChange => "address_change",
            Intent::Other => "other",
        }
    }

    /// The intent of a buyer's text (subject and own words).
    pub fn of(text: &str) -> Intent {
        let text = text.to_lowercase();
        Intent::PRECEDENCE
            .into_iter()
            .find(|intent| intent.matches(&text))
            .unwrap_or(Intent::Other)
    }

    fn matches(self, lower: &str) -> bool {
        let hit = |re: &LazyLock<Result<Regex, regex::Error>>| {
            re.as_ref().is_ok_and(|re| re.is_match(lower))
        };
        match self {
            Intent::Cancel => hit(&CANCEL),
            Intent::Return => hit(&RETURN),
            Intent::Refund => hit(&REFUND),
            Intent::AddressChange => hit(&ADDRESS) && hit(&CHANGE),
            Intent::WhereIsMyOrder => hit(&WHERE_IS),
            Intent::Other => false,
        }
    }
}

type Pattern = LazyLock<Result<Regex, regex::Error>>;

/// A regex compiled on first use; a pattern that fails to compile matches nothing
/// (`every_pattern_compiles` keeps that from shipping).
macro_rules! pattern {
    ($re:expr $(,)?) => {
        LazyLock::new(|| Regex::new($re))
    };
}

// Keyword rules, matched on lower-cased text. Stems cover inflections (cancel → cancelled,
// cancellation, cancelar, cancellare).
static CANCEL: Pattern = pattern!(r"\bcancel\w*|\bstorn\w*|\babbestell\w*|\bannul\w*|\banular\w*");
static RETURN: Pattern = pattern!(
    r"\breturn\w*|\brücksend\w*|\bzurücksend\w*|\bzurückschick\w*|\bretoure\w*|\bretour\w*|\brenvoyer\b|\bdevoluci[oó]n\w*|\bdevolver(lo|la)?\b|\breso\b|\brestitu\w*|\brimandar\w*"
);
static REFUND: Pattern = pattern!(
    r"\brefund\w*|\bmoney back\b|\brückerstatt\w*|\berstatt\w*|\bgeld zurück|\brembours\w*|\breembols\w*|\bdevolver el dinero|\brimbors\w*|\brisarci\w*"
);
static ADDRESS: Pattern = pattern!(r"address|adresse|anschrift|direcci[oó]n|indirizz");
static CHANGE: Pattern = pattern!(
    r"\bchang\w*|\bupdat\w*|\bcorrect\w*|\bwrong\b|\bnew\b|\bmoved\b|ändern|änderung|korrigier\w*|\bfalsch\w*|\bneue\w*|umgezogen|\bmodifi\w*|\bcorrig\w*|\bmauvaise\b|\bnouvelle\b|\bcambi\w*|\bcorreg\w*|\bequivocad\w*|\bnueva\b|\bsbagliat\w*|\bnuovo\b|\berrat\w*"
);
static WHERE_IS: Pattern = pattern!(
    r"(?x)
        where\ is | where's | \bnot\ (yet\ )?(arrived|received|been\ delivered|delivered)
        | hasn'?t\ (yet\ )?(arrived|come|been\ delivered) | haven'?t\ (yet\ )?(received|got)
        | didn'?t\ (receive|arrive|get) | \bstill\ (not|waiting) | never\ (arrived|received|came)
        | \btracking\b | \bdelay\w* | \blate\b
        | \bwo\ ist | \bwo\ bleibt | nicht\ (angekommen|erhalten|geliefert|zugestellt|da)
        | \bsendungsverfolgung | verspät\w*
        | où\ est | pas\ (encore\ )?(reçu|arrivé|été\ livré) | toujours\ pas | \bsuivi\b
        | \bretard\w*
        | d[oó]nde\ est[aá] | no\ (me\ )?ha\ llegado | no\ (lo\ |la\ )?he\ recibido
        | todav[ií]a\ no | a[uú]n\ no | \bseguimiento | \bretras\w*
        | dov'?\ ?è | dove\ si\ trova | non\ (è|e'|mi\ è)\ (ancora\ )?(arrivat|stat)
        | non\ (l'|lo\ )?ho\ (ancora\ )?ricevut | ancora\ non | \btracciamento | \britard\w*
        "
);

/// Amazon's sites and their marketplace ids (as in the config's marketplace table).
const AMAZON_SITES: &[(&str, &str)] = &[
    ("amazon.com", "ATVPDKIKX0DER"),
    ("amazon.ca", "A2EUQ1WTGCTBG2"),
    ("amazon.com.mx", "A1AM78C64UM0Y8"),
    ("amazon.com.br", "A2Q3Y263D00KWC"),
    ("amazon.ie", "A28R8C7NBKEWEA"),
    ("amazon.es", "A1RKKUPIHCS9HS"),
    ("amazon.co.uk", "A1F83G8C2ARO7P"),
    ("amazon.fr", "A13V1IB3VIYZZH"),
    ("amazon.com.be", "AMEN7PMS3EDWL"),
    ("amazon.nl", "A1805IZSGTT6HS"),
    ("amazon.de", "A1PA6795UKMFR9"),
    ("amazon.it", "APJ6JRA9NG5V4"),
    ("amazon.se", "A2NODRKZP88ZB9"),
    ("amazon.co.za", "AE08WJ6YKNBMC"),
    ("amazon.pl", "A1C3SOZRARQ6R3"),
    ("amazon.eg", "ARBP9OOSHTCHU"),
    ("amazon.com.tr", "A33AVAJ2PDY3EV"),
    ("amazon.sa", "A17E79C6D8DWNP"),
    ("amazon.ae", "A2VIGQ35RCS4UG"),
    ("amazon.in", "A21TJRUUN4KGV"),
    ("amazon.sg", "A19VAU5U5O7RUS"),
    ("amazon.com.au", "A39IBJ37TRP1C6"),
    ("amazon.co.jp", "A1VC38T7YXB528"),
];

/// Where a mail comes from.
#[derive(Debug, Default, PartialEq, Eq)]
struct Origin {
    marketplace: Option<&'static str>,
    marketplace_id: Option<&'static str>,
    relay: Option<String>,
    /// Sent by the marketplace itself, not relayed from a buyer.
    notification: bool,
}

/// `domain` is `site` or a subdomain of it.
fn within(domain: &str, site: &str) -> bool {
    domain == site
        || domain
            .strip_suffix(site)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, domain)| domain)
}

fn local_of(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

fn origin(mail: &ParsedMail) -> Origin {
    let from = mail.from_address.as_str();
    let domain = domain_of(from);
    let answer_to = mail
        .reply_to
        .first()
        .cloned()
        .unwrap_or_else(|| from.to_owned());

    if let Some((site, id)) = AMAZON_SITES.iter().find(|(site, _)| within(domain, site)) {
        let relay = domain == format!("marketplace.{site}");
        return Origin {
            marketplace: Some("amazon"),
            marketplace_id: Some(id),
            relay: relay.then(|| from.to_owned()),
            notification: !relay,
        };
    }
    if let Some(ebay) = ebay_site(domain) {
        let relay = ebay.starts_with("members.");
        let reply_relay = mail
            .reply_to
            .iter()
            .find(|a| ebay_site(domain_of(a)).is_some_and(|d| d.starts_with("members.")));
        return Origin {
            marketplace: Some("ebay"),
            relay: if relay {
                Some(from.to_owned())
            } else {
                reply_relay.cloned()
            },
            notification: !relay && reply_relay.is_none(),
            ..Origin::default()
        };
    }
    if within(domain, "walmart.com") {
        let relay = within(domain, "relay.walmart.com");
        return Origin {
            marketplace: Some("walmart"),
            relay: relay.then(|| from.to_owned()),
            notification: !relay,
            ..Origin::default()
        };
    }
    if within(domain, "shopify.com") || within(domain, "shopifyemail.com") {
        // The store's contact form: the customer is in Reply-To.
        let customer = mail.reply_to.first().cloned();
        return Origin {
            marketplace: Some("shopify"),
            notification: customer.is_none(),
            relay: customer,
            ..Origin::default()
        };
    }
    Origin {
        relay: Some(answer_to),
        ..Origin::default()
    }
}

/// The eBay domain (`ebay.com`, `members.ebay.de`…) when `domain` is eBay's.
fn ebay_site(domain: &str) -> Option<&str> {
    let labels: Vec<&str> = domain.split('.').collect();
    let at = labels.iter().position(|l| *l == "ebay")?;
    // ebay.<tld> or ebay.co.<tld>/ebay.com.<tld>: at most two labels after "ebay".
    (labels.len() - at <= 3 && labels.len() - at >= 2).then_some(domain)
}

/// Why the mail must not be answered, if it must not.
fn refusal(mail: &ParsedMail, own_addresses: &[String], origin: &Origin) -> Option<String> {
    let from = mail.from_address.as_str();
    if own_addresses
        .iter()
        .any(|own| own.trim().eq_ignore_ascii_case(from))
    {
        return Some("our own mail: sent from one of the seller's addresses".to_owned());
    }
    if let Some(value) = mail.header("auto-submitted")
        && !value.trim().eq_ignore_ascii_case("no")
    {
        return Some(format!("auto-reply: Auto-Submitted: {}", short(value)));
    }
    for name in ["x-autoreply", "x-autorespond", "x-auto-response-suppress"] {
        if let Some(value) = mail.header(name) {
            return Some(format!(
                "auto-reply: {}: {}",
                header_case(name),
                short(value)
            ));
        }
    }
    let local = local_of(from);
    if mail.content_type == "multipart/report"
        || mail.header("return-path").is_some_and(|v| v.trim() == "<>")
        || mail.header("x-failed-recipients").is_some()
        || ["mailer-daemon", "postmaster"].contains(&local)
    {
        return Some("bounce: a delivery status report".to_owned());
    }
    if let Some(value) = mail.header("precedence") {
        let value = value.trim().to_ascii_lowercase();
        if ["bulk", "list", "junk", "auto_reply"].contains(&value.as_str()) {
            return Some(format!("bulk mail: Precedence: {value}"));
        }
    }
    if mail.header("list-id").is_some() || mail.header("list-unsubscribe").is_some() {
        return Some("bulk mail: a mailing list (List-Id/List-Unsubscribe)".to_owned());
    }
    if origin.notification {
        return Some(format!(
            "marketplace notification: from {}, not a buyer's relay address",
            domain_of(from)
        ));
    }
    let squashed: String = local
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    if squashed.contains("noreply") || squashed.contains("donotreply") {
        return Some("no-reply sender".to_owned());
    }
    let subject = mail.subject.to_lowercase();
    if AUTO_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return Some("auto-reply: the subject says so".to_owned());
    }
    None
}

/// Subjects of automatic replies (lower case).
const AUTO_SUBJECTS: &[&str] = &[
    "automatic reply",
    "auto-reply",
    "autoreply",
    "auto reply",
    "out of office",
    "out of the office",
    "abwesenheitsnotiz",
    "automatische antwort",
    "réponse automatique",
    "respuesta automática",
    "risposta automatica",
    "delivery status notification",
    "undeliverable:",
    "unzustellbar:",
];

fn short(value: &str) -> String {
    value.chars().take(40).collect()
}

/// `x-autoreply` → `X-Autoreply`.
fn header_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

// ---------------------------------------------------------------------------------------
// The buyer's words

static AMAZON_BEGIN: Pattern = pattern!(
    r"(?i)^-{3,}\s*(begin message|beginn der nachricht|début du message|inicio del mensaje|inizio (del )?messaggio)\s*:?\s*-{3,}$",
);
static AMAZON_END: Pattern = pattern!(
    r"(?i)^-{3,}\s*(end message|end of message|ende der nachricht|fin du message|fin del mensaje|fine (del )?messaggio)\s*-{3,}$",
);
/// Lines where quoted history starts (tried on one line and on a line joined with the
/// next, as clients wrap long attributions).
static ATTRIBUTION: Pattern = pattern!(
    r"(?ix)^(
      on\b.{0,300}\bwrote\s?:
    | am\b.{0,300}\bschrieb\b.{0,300}:
    | le\b.{0,300}\ba\ écrit\s?:
    | el\b.{0,300}\bescribió\s?:
    | il\b.{0,300}\bha\ scritto\s?:
    | -{2,}\s*(original\ message|ursprüngliche\ nachricht|message\ d'origine|mensaje\ original|messaggio\ originale)\s*-{2,}
    | _{10,}
    )$",
);
static OUTLOOK_FROM: Pattern = pattern!(r"(?i)^\*?(from|von|de|da)\s?:\*?\s+\S");
static OUTLOOK_SENT: Pattern =
    pattern!(r"(?i)^\*?(sent|date|gesendet|datum|envoyé|enviado|fecha|inviato|data)\s?:");
static FORWARD: Pattern = pattern!(
    r"(?i)^(-{2,}\s*(forwarded message|weitergeleitete nachricht|message transféré|mensaje reenviado|messaggio inoltrato)\s*-{2,}|begin forwarded message\s?:|anfang der weitergeleiteten nachricht\s?:|début du message réexpédié\s?:)$",
);
static FORWARD_HEADER: Pattern = pattern!(
    r"(?i)^\*?(from|von|de|da|date|datum|sent|gesendet|envoyé|enviado|fecha|inviato|data|subject|betreff|objet|asunto|oggetto|to|an|à|para|a|cc|reply-to)\s?:",
);

fn is(re: &Pattern, line: &str) -> bool {
    re.as_ref().is_ok_and(|re| re.is_match(line))
}

/// The buyer's own words in a mail's text (see the module doc).
pub(crate) fn buyer_words(text: &str) -> String {
    let all: Vec<&str> = text.lines().collect();
    let lines: &[&str] = match all.iter().position(|l| is(&AMAZON_BEGIN, l.trim())) {
        Some(begin) => {
            let rest = all.get(begin + 1..).unwrap_or_default();
            let end = rest
                .iter()
                .position(|l| is(&AMAZON_END, l.trim()))
                .unwrap_or(rest.len());
            rest.get(..end).unwrap_or_default()
        }
        None => &all,
    };

    let mut kept: Vec<&str> = Vec::new();
    let mut in_forward_header = false;
    for (i, raw) in lines.iter().enumerate() {
        let line = raw.trim();
        if in_forward_header {
            if line.is_empty() || is(&FORWARD_HEADER, line) {
                continue;
            }
            in_forward_header = false;
        }
        if is(&FORWARD, line) {
            in_forward_header = true;
            continue;
        }
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        if is(&ATTRIBUTION, line)
            || is(&ATTRIBUTION, &format!("{line} {next}"))
            || raw.trim_end() == "--"
            || (is(&OUTLOOK_FROM, line)
                && lines
                    .iter()
                    .skip(i + 1)
                    .take(3)
                    .any(|l| is(&OUTLOOK_SENT, l.trim())))
        {
            break;
        }
        if line.starts_with('>') {
            continue;
        }
        kept.push(raw.trim_end());
    }
    let joined = kept.join("\n");
    let mut out: Vec<&str> = Vec::new();
    for line in joined.trim().lines() {
        if line.is_empty() && out.last().is_none_or(|l| l.is_empty()) {
            continue;
        }
        out.push(line);
    }
    out.join("\n")
}

// ---------------------------------------------------------------------------------------
// Order ids

static AMAZON_ORDER: Pattern = pattern!(r"\b\d{3}-\d{7}-\d{7}\b");
static EBAY_ORDER: Pattern = pattern!(r"\b\d{2}-\d{5}-\d{5}\b");
/// A 13 or 15 digit number right after an order label (Walmart's purchase order and
/// customer order numbers).
static LABELLED_DIGITS: Pattern = pattern!(
    r"(?i)\b(?:order|po|purchase order|bestellung|bestellnummer|auftrag|commande|pedido|ordine)\b[^\d\n]{0,20}?\b(\d{15}|\d{13})\b",
);
/// `#1001`, with its label when it has one.
static HASH_ORDER: Pattern = pattern!(
    r"(?i)(\b(?:order|bestellung|commande|pedido|ordine)\b[^\d\n#]{0,12})?#\s?(\d{3,9})\b",
);
/// Labels that make the number after them a phone number.
static PHONE_LABEL: Pattern =
    pattern!(r"(?i)(tel|phone|telefon|téléphone|teléfono|telefono|fax|mobile|handy|cell)\W{0,5}$");

/// Whether the match at `start..end` stands on its own: not glued to digits, dashes or a
/// `+`, and not right after a phone label.
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = text.get(..start).and_then(|t| t.chars().next_back());
    let after = text.get(end..).and_then(|t| t.chars().next());
    if before.is_some_and(|c| c.is_ascii_digit() || "+-/(".contains(c))
        || after.is_some_and(|c| c.is_ascii_digit() || c == '-')
    {
        return false;
    }
    let mut from = start.saturating_sub(20);
    while !text.is_char_boundary(from) {
        from -= 1;
    }
    !is(&PHONE_LABEL, text.get(from..start).unwrap_or_default())
}

fn order_in(text: &str, shopify: bool) -> Option<String> {
    if let Some(re) = AMAZON_ORDER.as_ref().ok()
        && let Some(m) = re
            .find_iter(text)
            .find(|m| stands_alone(text, m.start(), m.end()))
    {
        return Some(m.as_str().to_owned());
    }
    if let Some(re) = EBAY_ORDER.as_ref().ok()
        && let Some(m) = re
            .find_iter(text)
            .find(|m| stands_alone(text, m.start(), m.end()))
    {
        return Some(m.as_str().to_owned());
    }
    if let Some(re) = LABELLED_DIGITS.as_ref().ok()
        && let Some(m) = re
            .captures_iter(text)
            .filter_map(|c| c.get(1))
            .find(|m| stands_alone(text, m.start(), m.end()))
    {
        return Some(m.as_str().to_owned());
    }
    if let Some(re) = HASH_ORDER.as_ref().ok()
        && let Some(m) = re
            .captures_iter(text)
            .filter(|c| shopify || c.get(1).is_some())
            .filter_map(|c| c.get(2))
            .find(|m| {
                text.get(m.end()..)
                    .and_then(|t| t.chars().next())
                    .is_none_or(|c| c != '-')
            })
    {
        return Some(format!("#{}", m.as_str()));
    }
    None
}

// ---------------------------------------------------------------------------------------
// Language

static LANGUAGES: LazyLock<Detector> = LazyLock::new(|| {
    Detector::with_allowlist(vec![
        Lang::Eng,
        Lang::Deu,
        Lang::Fra,
        Lang::Spa,
        Lang::Ita,
        Lang::Jpn,
    ])
});

/// Letters needed before a language is named.
const MIN_LETTERS: usize = 12;

fn language_of(text: &str) -> Option<String> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < MIN_LETTERS {
        return None;
    }
    let code = match LANGUAGES.detect_lang(text)? {
        Lang::Eng => "en",
        Lang::Deu => "de",
        Lang::Fra => "fr",
        Lang::Spa => "es",
        Lang::Ita => "it",
        Lang::Jpn => "ja",
        _ => return None,
    };
    Some(code.to_owned())
}

// ---------------------------------------------------------------------------------------

/// Understand one mail. `own_addresses` are the seller's addresses: mail from them is our
/// own reply (seen again through a copy or a loop) and must not be answered.
pub fn understand(mail: &ParsedMail, own_addresses: &[String]) -> Understanding {
    let origin = origin(mail);
    let do_not_answer = refusal(mail, own_addresses, &origin);
    let new_text = buyer_words(&mail.text);
    let shopify = origin.marketplace == Some("shopify");

    let order_id = [mail.subject.as_str(), new_text.as_str(), mail.text.as_str()]
        .into_iter()
        .find_map(|text| order_in(text, shopify));
    let order_digits: Option<String> = order_id
        .as_ref()
        .map(|id| id.chars().filter(char::is_ascii_digit).collect());
    let not_the_order = |d: &Detection| order_digits.as_deref() != Some(d.number.as_str());
    let tracking = find_in_text(&format!("{}\n{}", mail.subject, new_text))
        .into_iter()
        .find(not_the_order)
        .or_else(|| find_in_text(&mail.text).into_iter().find(not_the_order));

    let words = if new_text.chars().filter(|c| c.is_alphabetic()).count() >= MIN_LETTERS * 2 {
        new_text.clone()
    } else {
        format!("{}\n{}", mail.subject, new_text)
    };
    let intent_text = format!("{}\n{}", mail.subject, new_text);

    Understanding {
        marketplace: origin.marketplace.map(str::to_owned),
        marketplace_id: origin.marketplace_id.map(str::to_owned),
        relay_address: origin.relay.clone(),
        order_id,
        tracking_number: tracking.as_ref().map(|d| d.number.clone()),
        tracking_carrier: tracking.as_ref().map(Detection::carrier_label),
        language: language_of(&words),
        intent: Intent::of(&intent_text).as_str().to_owned(),
        do_not_answer,
        new_text,
        attachments: mail.attachments.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mail(from: &str, subject: &str, text: &str) -> ParsedMail {
        ParsedMail {
            from_address: from.to_owned(),
            subject: subject.to_owned(),
            text: text.to_owned(),
            content_type: "text/plain".to_owned(),
            ..ParsedMail::default()
        }
    }

    const RELAY: &str = "k2x9q7v1m3zt5wd@marketplace.amazon.de";

    #[test]
    fn every_pattern_compiles() {
        for (name, re) in [
            ("cancel", &CANCEL),
            ("return", &RETURN),
            ("refund", &REFUND),
            ("address", &ADDRESS),
            ("change", &CHANGE),
            ("where", &WHERE_IS),
            ("begin", &AMAZON_BEGIN),
            ("end", &AMAZON_END),
            ("attribution", &ATTRIBUTION),
            ("outlook from", &OUTLOOK_FROM),
            ("outlook sent", &OUTLOOK_SENT),
            ("forward", &FORWARD),
            ("forward header", &FORWARD_HEADER),
            ("amazon order", &AMAZON_ORDER),
            ("ebay order", &EBAY_ORDER),
            ("labelled", &LABELLED_DIGITS),
            ("hash", &HASH_ORDER),
            ("phone", &PHONE_LABEL),
        ] {
            if let Err(e) = re.as_ref() {
                panic!("pattern {name} does not compile: {e}");
            }
        }
    }

    #[test]
    fn intent_precedence() {
        for (text, want) in [
            ("Where is my order? Please cancel it", Intent::Cancel),
            ("Bitte stornieren, noch nicht angekommen", Intent::Cancel),
            ("I want to return it and get a refund", Intent::Return),
            ("Never arrived, I want a refund", Intent::Refund),
            ("Je voudrais être remboursé", Intent::Refund),
            (
                "Can I change the delivery address before it ships?",
                Intent::AddressChange,
            ),
            (
                "Ich bin umgezogen, neue Adresse: ...",
                Intent::AddressChange,
            ),
            (
                "Delivered to the address on the order, thanks",
                Intent::Other,
            ),
            ("Wo ist mein Paket?", Intent::WhereIsMyOrder),
            (
                "Je n'ai toujours pas reçu mon colis",
                Intent::WhereIsMyOrder,
            ),
            ("¿Dónde está mi pedido?", Intent::WhereIsMyOrder),
            ("Dov'è il mio pacco?", Intent::WhereIsMyOrder),
            ("Vorrei annullare l'ordine", Intent::Cancel),
            ("Quiero cancelar el pedido", Intent::Cancel),
            ("Vorrei il rimborso", Intent::Refund),
            ("Quiero una devolución", Intent::Return),
            ("Rücksendung", Intent::Return),
            ("Thanks, great product", Intent::Other),
        ] {
            assert_eq!(Intent::of(text), want, "{text}");
        }
    }

    #[test]
    fn quoted_history_is_cut() {
        for (text, want) in [
            (
                "Still nothing.\n\nOn Mon, 2 Nov 2026 at 09:00, Shop <s@example.com> wrote:\n> You can cancel here",
                "Still nothing.",
            ),
            (
                "Still nothing.\nOn Mon, 2 Nov 2026 at 09:00, Shop Support\n<s@example.com> wrote:\n> old",
                "Still nothing.",
            ),
            (
                "Danke!\n\nAm 02.11.2026 um 09:00 schrieb Shop <s@example.com>:\n> alt",
                "Danke!",
            ),
            (
                "Merci\n\nLe lun. 2 nov. 2026 à 09:00, Shop a écrit :\n> vieux",
                "Merci",
            ),
            (
                "Gracias\n\nEl lun, 2 nov 2026, Shop escribió:\n> viejo",
                "Gracias",
            ),
            (
                "Grazie\n\nIl giorno lun 2 nov 2026, Shop ha scritto:\n> vecchio",
                "Grazie",
            ),
            ("Ok\n\n-----Original Message-----\nFrom: Shop\nold", "Ok"),
            (
                "Ok\n\nFrom: Shop <s@example.com>\nSent: Monday\nSubject: old\n\nold",
                "Ok",
            ),
            ("Ok\n> a\n>> b\nthen more", "Ok\nthen more"),
            ("Ok\n-- \nJana\n+49 30 1234567", "Ok"),
        ] {
            assert_eq!(buyer_words(text), want, "{text}");
        }
    }

    #[test]
    fn amazon_markers_frame_the_message() {
        let text = "Dear Seller,\n\n------------- Begin message -------------\n\nWhere is my parcel?\n\n------------- End message -------------\n\nFor Your Information: to cancel ...";
        assert_eq!(buyer_words(text), "Where is my parcel?");
    }

    #[test]
    fn forwarded_content_stays_without_its_header_block() {
        let text = "See below.\n\n---------- Forwarded message ---------\nFrom: Amazon.com <auto-confirm@amazon.com>\nDate: Sun, 1 Nov 2026\nSubject: Your order\nTo: <me@example.com>\n\nOrder #113-4829301-5520617 has shipped.";
        assert_eq!(
            buyer_words(text),
            "See below.\n\nOrder #113-4829301-5520617 has shipped."
        );
    }

    #[test]
    fn order_ids_by_format_and_never_phone_or_tracking() {
        for (text, shopify, want) in [
            (
                "Order: 302-1234567-1234567",
                false,
                Some("302-1234567-1234567"),
            ),
            ("eBay order 12-34567-89012", false, Some("12-34567-89012")),
            (
                "Order number 200012345678901",
                false,
                Some("200012345678901"),
            ),
            ("PO# 1234567890123", false, Some("1234567890123")),
            ("just 200012345678901 there", false, None),
            ("Tel. 12-34567-89012", false, None),
            ("call +49-12-34567-89012", false, None),
            ("Phone: 4930123456789", false, None),
            ("Order #1001 please", false, Some("#1001")),
            ("Commande n° #1042", false, Some("#1042")),
            ("#1001 please", false, None),
            ("#1001 please", true, Some("#1001")),
            ("302-1234567-12345678", false, None),
            ("1Z999AA10123456784", false, None),
        ] {
            assert_eq!(order_in(text, shopify).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn subject_order_wins_over_body() {
        let m = mail(
            RELAY,
            "Anfrage von Amazon-Kunde (Bestellung: 302-1111111-1111111)",
            "Meine andere Bestellung 302-2222222-2222222 ist auch noch nicht da",
        );
        let u = understand(&m, &[]);
        assert_eq!(u.order_id.as_deref(), Some("302-1111111-1111111"));
        assert_eq!(u.marketplace.as_deref(), Some("amazon"));
        assert_eq!(u.marketplace_id.as_deref(), Some("A1PA6795UKMFR9"));
        assert_eq!(u.relay_address.as_deref(), Some(RELAY));
        assert_eq!(u.do_not_answer, None);
    }

    #[test]
    fn origins() {
        let o = origin(&mail("donotreply@amazon.com", "", ""));
        assert!(o.notification);
        assert_eq!(o.marketplace_id, Some("ATVPDKIKX0DER"));
        let o = origin(&mail("x@marketplace.amazon.co.uk", "", ""));
        assert_eq!(o.marketplace_id, Some("A1F83G8C2ARO7P"));
        assert!(!o.notification);
        let o = origin(&mail("x@marketplace.amazon.com.au", "", ""));
        assert_eq!(o.marketplace_id, Some("A39IBJ37TRP1C6"));
        let o = origin(&mail("someone@notamazon.com", "", ""));
        assert_eq!(o.marketplace, None);
        assert_eq!(o.relay.as_deref(), Some("someone@notamazon.com"));
        let o = origin(&mail("abc@relay.walmart.com", "", ""));
        assert_eq!((o.marketplace, o.notification), (Some("walmart"), false));
        let o = origin(&mail("buyer_x@members.ebay.com", "", ""));
        assert_eq!((o.marketplace, o.notification), (Some("ebay"), false));
        let o = origin(&mail("ebay@ebay.com", "", ""));
        assert_eq!((o.marketplace, o.notification), (Some("ebay"), true));
        let mut shop = mail("mailer@shopify.com", "", "");
        assert!(origin(&shop).notification);
        shop.reply_to = vec!["customer@example.net".into()];
        let o = origin(&shop);
        assert_eq!(o.relay.as_deref(), Some("customer@example.net"));
        assert!(!o.notification);
    }

    #[test]
    fn refusals() {
        let own = ["Support@Example-Shop.com".to_owned()];
        let m = mail("support@example-shop.com", "Re: your order", "Hello");
        assert!(understand(&m, &own).do_not_answer.is_some());

        let mut m = mail(RELAY, "Hello", "Hello there");
        m.headers = vec![("auto-submitted".into(), "no".into())];
        assert_eq!(understand(&m, &own).do_not_answer, None);
        m.headers = vec![("auto-submitted".into(), "auto-replied".into())];
        assert_eq!(
            understand(&m, &own).do_not_answer.as_deref(),
            Some("auto-reply: Auto-Submitted: auto-replied")
        );
        m.headers = vec![("precedence".into(), "Bulk".into())];
        assert_eq!(
            understand(&m, &own).do_not_answer.as_deref(),
            Some("bulk mail: Precedence: bulk")
        );
        m.headers = vec![("x-auto-response-suppress".into(), "All".into())];
        assert!(understand(&m, &own).do_not_answer.is_some());
        m.headers = Vec::new();
        m.subject = "Automatic reply: Inquiry".into();
        assert!(understand(&m, &own).do_not_answer.is_some());
        let m = mail("no-reply@example.org", "Hello", "Hello");
        assert_eq!(
            understand(&m, &own).do_not_answer.as_deref(),
            Some("no-reply sender")
        );
    }

    #[test]
    fn tracking_is_found_and_not_taken_for_the_order() {
        let m = mail(
            "buyer@example.net",
            "Order number 200012345678901",
            "My parcel 1Z999AA10123456784 has not arrived.",
        );
        let u = understand(&m, &[]);
        assert_eq!(u.order_id.as_deref(), Some("200012345678901"));
        assert_eq!(u.tracking_number.as_deref(), Some("1Z999AA10123456784"));
        assert_eq!(u.tracking_carrier.as_deref(), Some("ups"));
        assert_eq!(u.intent, "where_is_my_order");
        assert_eq!(u.language.as_deref(), Some("en"));
    }

    #[test]
    fn short_text_has_no_language() {
        assert_eq!(language_of("ok"), None);
        assert_eq!(
            language_of("Bonjour, je n'ai toujours pas reçu mon colis.").as_deref(),
            Some("fr")
        );
    }
}
