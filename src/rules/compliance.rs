//! The compliance linter for outgoing buyer messages: every text the daemon would send to
//! a buyer goes through [`lint`] first, and any [`Violation`] means "do not send, alert a
//! human" (DOMAIN.md, "Compliance of outgoing messages"). Marketplaces block messages and
//! suspend sellers for links, contact details, marketing, review manipulation, emojis and
//! over-long text, and Amazon does not count auto-responder phrasing as a reply; the rules
//! are those of research/marketplaces.md §13, the limits those of §4.
//!
//! It must never do I/O or keep state (the same text always gets the same answer), and it
//! must never let a message through on a check it could not perform: a check whose
//! pattern table does not compile, or a link that does not parse, is itself a violation.

use std::fmt;
use std::sync::LazyLock;

use linkify::{LinkFinder, LinkKind};
use regex::Regex;
use unicode_properties::emoji::{is_regional_indicator, is_tag_character};
use unicode_properties::{EmojiStatus, UnicodeEmoji};
use url::{Host, Url};

/// Which marketplace's policy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Amazon's buyer-seller messaging policy (§13) and Messaging API limits (§4): every check.
    Amazon,
    /// What every marketplace forbids: HTML, e-mail addresses, phone numbers, emojis and
    /// reviews bought with an incentive. Empty text is refused too. Links, marketing,
    /// length and auto-responder phrasing are left to each marketplace's own policy,
    /// which will be a variant of its own when it is written out.
    Baseline,
}

/// What kind of message it is: decides the length limit and whether a tracking link fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// An e-mail reply to the buyer's relay address (`…@marketplace.amazon.com`).
    BuyerReply,
    ConfirmDeliveryDetails,
    ConfirmOrderDetails,
    ConfirmServiceDetails,
    ConfirmCustomizationDetails,
    DigitalAccessKey,
    UnexpectedProblem,
}

impl MessageKind {
    pub const ALL: [MessageKind; 7] = [
        MessageKind::BuyerReply,
        MessageKind::ConfirmDeliveryDetails,
        MessageKind::ConfirmOrderDetails,
        MessageKind::ConfirmServiceDetails,
        MessageKind::ConfirmCustomizationDetails,
        MessageKind::DigitalAccessKey,
        MessageKind::UnexpectedProblem,
    ];

    /// The most characters (Unicode scalar values, as JSON Schema's `maxLength` counts)
    /// the text may have. The Messaging API types carry their own `maxLength` (§4,
    /// specs/amazon/messaging.json). Neither §4 nor §13 gives a limit for e-mail replies
    /// through the relay; a reply gets 2000, the most any Amazon buyer-message text is
    /// documented to accept, so a reply never carries more than Amazon takes anywhere.
    pub fn max_chars(self) -> usize {
        match self {
            MessageKind::ConfirmCustomizationDetails => 800,
            MessageKind::DigitalAccessKey => 400,
            MessageKind::BuyerReply
            | MessageKind::ConfirmDeliveryDetails
            | MessageKind::ConfirmOrderDetails
            | MessageKind::ConfirmServiceDetails
            | MessageKind::UnexpectedProblem => 2000,
        }
    }

    /// The Messaging API's name for the type (the last segment of its path), or `reply`.
    pub fn api_name(self) -> &'static str {
        match self {
            MessageKind::BuyerReply => "reply",
            MessageKind::ConfirmDeliveryDetails => "confirmDeliveryDetails",
            MessageKind::ConfirmOrderDetails => "confirmOrderDetails",
            MessageKind::ConfirmServiceDetails => "confirmServiceDetails",
            MessageKind::ConfirmCustomizationDetails => "confirmCustomizationDetails",
            MessageKind::DigitalAccessKey => "digitalAccessKey",
            MessageKind::UnexpectedProblem => "unexpectedProblem",
        }
    }

    /// The inverse of [`MessageKind::api_name`]; exact names only, so a typo in a rule
    /// is an error rather than a different limit.
    pub fn from_api_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.api_name() == name)
    }

    /// Whether a carrier tracking link belongs in this type. The API allows "only links
    /// related to" the type: delivery, and an unexpected problem (a delay, a lost parcel)
    /// are about the parcel; order details are confirmed before shipping, and
    /// customization, service and access-key links would be the seller's own pages,
    /// which no table here can vouch for.
    pub fn allows_tracking_links(self) -> bool {
        matches!(
            self,
            MessageKind::BuyerReply
                | MessageKind::ConfirmDeliveryDetails
                | MessageKind::UnexpectedProblem
        )
    }
}

/// What a violation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Html,
    Link,
    Email,
    Phone,
    Marketing,
    ReviewRequest,
    Emoji,
    Length,
    AutoResponder,
    Empty,
}

impl Check {
    pub const ALL: [Check; 10] = [
        Check::Html,
        Check::Link,
        Check::Email,
        Check::Phone,
        Check::Marketing,
        Check::ReviewRequest,
        Check::Emoji,
        Check::Length,
        Check::AutoResponder,
        Check::Empty,
    ];

    /// A stable id for logs, alerts and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Html => "html",
            Check::Link => "link",
            Check::Email => "email",
            Check::Phone => "phone",
            Check::Marketing => "marketing",
            Check::ReviewRequest => "review_request",
            Check::Emoji => "emoji",
            Check::Length => "length",
            Check::AutoResponder => "auto_responder",
            Check::Empty => "empty",
        }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason not to send the message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub check: Check,
    /// 1-based line of the text where the offending bit starts.
    pub line: usize,
    /// The offending bit, whitespace collapsed, at most [`EXCERPT_MAX`] characters.
    pub excerpt: String,
    /// A sentence an ops person understands.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {}", self.line, self.check, self.message)?;
        if !self.excerpt.is_empty() {
            write!(f, " ({:?})", self.excerpt)?;
        }
        Ok(())
    }
}

/// Longest excerpt, in characters: enough to find the spot, short enough for a chat alert.
pub const EXCERPT_MAX: usize = 60;

/// Every violation of `text` under `policy` for a message of `kind`, in text order; empty
/// means the text may be sent.
///
/// Amazon: all checks (auto-responder phrasing only for [`MessageKind::BuyerReply`], the
/// one kind that answers a buyer). Baseline: HTML, e-mail, phone, emoji, reviews for an
/// incentive and empty text.
pub fn lint(text: &str, policy: Policy, kind: MessageKind) -> Vec<Violation> {
    if is_blank(text) {
        return vec![Violation {
            check: Check::Empty,
            line: 1,
            excerpt: String::new(),
            message: "The message is empty; a buyer must get a substantive answer.".into(),
        }];
    }
    let amazon = policy == Policy::Amazon;
    let mut found = Vec::new();

    let links = find_links(text);
    for link in &links {
        match link.sort {
            LinkSort::Email => found.push(Found {
                check: Check::Email,
                start: link.start,
                end: link.end,
                message: EMAIL_MESSAGE.into(),
            }),
            LinkSort::Url if amazon => {
                // An unsliceable span checks as "" and fails to parse: refused, not passed.
                let found_text = text.get(link.start..link.end).unwrap_or_default();
                if let Some(message) = link_problem(found_text, kind) {
                    found.push(Found {
                        check: Check::Link,
                        start: link.start,
                        end: link.end,
                        message,
                    });
                }
            }
            LinkSort::Url | LinkSort::AmazonName => {}
        }
    }
    let link_spans: Vec<(usize, usize)> = links.iter().map(|l| (l.start, l.end)).collect();

    check_obfuscated_emails(text, &mut found);
    check_html(text, &mut found);
    check_phones(text, &link_spans, &mut found);
    check_emojis(text, &mut found);

    // Links are masked so that words in a tracking URL's path or query are not phrases.
    let folded = Folded::new(text, &link_spans);
    if amazon {
        check_phrases(
            text,
            &folded,
            &MARKETING_RE,
            Check::Marketing,
            "Marketing or promotion (coupons, sales, newsletters, other products, shops, \
             social media) is not allowed: a message may only complete the order or \
             answer the buyer.",
            &mut found,
        );
    }
    check_reviews(text, &folded, amazon, &mut found);
    if amazon && kind == MessageKind::BuyerReply {
        check_phrases(
            text,
            &folded,
            &AUTO_RESPONDER_RE,
            Check::AutoResponder,
            "Auto-responder phrasing: Amazon does not count an acknowledgement or away \
             message as a reply, and detects it. Answer with the order's real status.",
            &mut found,
        );
    }
    if amazon {
        check_length(text, kind, &mut found);
    }

    found.sort_by_key(|f| (f.start, f.check));
    found.into_iter().map(|f| f.into_violation(text)).collect()
}

/// Whether `url` is an http(s) link to a carrier's tracking site or to Amazon's own
/// tracking pages. The real host decides (as a browser would resolve it): a subdomain of
/// an allowed domain is fine; `ups.com.evil.io`, `evil-ups.com`, `ups.com@evil.io`, an IP
/// address, credentials or a non-default port are not.
pub fn is_carrier_tracking_link(url: &str) -> bool {
    let Ok(parsed) = Url::parse(url.trim()) else {
        return false;
    };
    if !matches!(parsed.scheme(), "https" | "http")
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.port().is_some()
    {
        return false;
    }
    let Some(Host::Domain(host)) = parsed.host() else {
        return false;
    };
    // The url crate has already lower-cased and IDNA-mapped the host; a trailing dot is
    // the same host to DNS.
    let host = host.trim_end_matches('.');
    is_carrier_host(host) || is_amazon_tracking(host, parsed.path())
}

// ---------------------------------------------------------------------------------------
// Allowed hosts

/// Carriers whose tracking pages a message may link to, by registrable domain; any
/// subdomain is the carrier's too (tools.usps.com, nolp.dhl.de, www.royalmail.com). The
/// carriers that ship for sellers on Amazon's North American and European marketplaces.
/// A carrier missing here gets its link refused and a human looks at it, which is the
/// cheap side to err on. Aggregators (17track, parcelsapp) and URL shorteners are not
/// carriers: their links can lead anywhere.
pub const CARRIER_DOMAINS: &[(&str, &[&str])] = &[
    ("UPS", &["ups.com"]),
    ("FedEx / TNT", &["fedex.com", "tnt.com"]),
    ("USPS", &["usps.com"]),
    (
        "DHL",
        &[
            "dhl.com",
            "dhl.de",
            "dhl.co.uk",
            "dhl.fr",
            "dhl.it",
            "dhl.es",
            "dhl.nl",
            "dhl.be",
            "dhl.at",
            "dhl.ch",
            "dhl.pl",
            "dhlparcel.nl",
            "dhlparcel.be",
            "dhlparcel.co.uk",
        ],
    ),
    ("Deutsche Post", &["deutschepost.de"]),
    (
        "DPD",
        &[
            "dpd.com",
            "dpdgroup.com",
            "dpd.de",
            "dpd.co.uk",
            "dpdlocal.co.uk",
            "dpd.fr",
            "dpd.nl",
            "dpd.be",
            "dpd.at",
            "dpd.pl",
            "dpd.ie",
        ],
    ),
    (
        "Royal Mail / Parcelforce",
        &["royalmail.com", "parcelforce.com"],
    ),
    (
        "Evri / Hermes",
        &["evri.com", "myhermes.de", "hermesworld.com"],
    ),
    (
        "GLS",
        &[
            "gls-group.eu",
            "gls-group.com",
            "gls-pakete.de",
            "gls-italy.com",
            "gls-spain.es",
        ],
    ),
    (
        "Canada Post",
        &[
            "canadapost-postescanada.ca",
            "postescanada-canadapost.ca",
            "canadapost.ca",
        ],
    ),
    ("Purolator", &["purolator.com"]),
    ("OnTrac / LaserShip", &["ontrac.com", "lasership.com"]),
    (
        "La Poste / Colissimo / Chronopost",
        &["laposte.fr", "colissimo.fr", "chronopost.fr"],
    ),
    (
        "Correos / SEUR",
        &["correos.es", "correosexpress.com", "seur.com"],
    ),
    (
        "Poste Italiane / SDA / BRT",
        &["poste.it", "sda.it", "brt.it"],
    ),
    ("PostNL", &["postnl.nl", "postnl.com"]),
    ("bpost", &["bpost.be"]),
    ("Austrian Post", &["post.at"]),
    ("Swiss Post", &["post.ch"]),
    ("PostNord", &["postnord.se", "postnord.com"]),
    ("InPost / Poczta Polska", &["inpost.pl", "poczta-polska.pl"]),
    ("An Post", &["anpost.com"]),
    ("Yodel", &["yodel.co.uk"]),
];

/// Amazon's retail domains, `amazon.<tld>`.
const AMAZON_TLDS: &[&str] = &[
    "com", "ca", "com.mx", "com.br", "co.uk", "ie", "de", "fr", "it", "es", "nl", "se", "pl",
    "com.be", "com.tr", "ae", "sa", "eg", "in", "co.jp", "com.au", "sg",
];

/// Amazon's package tracking pages on `(www.)amazon.<tld>`; `track.amazon.<tld>` (Amazon
/// Logistics) is allowed whole. Other Amazon pages (product, storefront) are not
/// "necessary to complete the order" (§13).
const AMAZON_TRACKING_PATHS: &[&str] = &[
    "/progress-tracker",
    "/gp/your-account/ship-track",
    "/gp/css/shiptrack",
];

fn is_carrier_host(host: &str) -> bool {
    CARRIER_DOMAINS
        .iter()
        .flat_map(|(_, domains)| domains.iter())
        .any(|domain| is_same_or_subdomain(host, domain))
}

fn is_same_or_subdomain(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|prefix| prefix.ends_with('.'))
}

/// The Amazon retail TLD of `host` if it is `amazon.<tld>` or `www.amazon.<tld>`.
fn amazon_retail_tld(host: &str) -> Option<&str> {
    let rest = host.strip_prefix("www.").unwrap_or(host);
    let tld = rest.strip_prefix("amazon.")?;
    AMAZON_TLDS.contains(&tld).then_some(tld)
}

fn is_amazon_tracking(host: &str, path: &str) -> bool {
    if let Some(tld) = host.strip_prefix("track.amazon.") {
        return AMAZON_TLDS.contains(&tld);
    }
    amazon_retail_tld(host).is_some()
        && AMAZON_TRACKING_PATHS.iter().any(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
}

/// Top-level domains that make a scheme-less `word.tld` a link. linkify accepts any
/// `a.b`, including a missing space after a full stop ("order.Thanks"); without a
/// scheme, `www.` or a path, only these count. Generic ones, the marketplaces' countries,
/// and the new ones shops and shorteners use.
const KNOWN_TLDS: &[&str] = &[
    "com", "net", "org", "info", "biz", "io", "co", "me", "app", "dev", "shop", "store", "online",
    "site", "website", "xyz", "top", "club", "link", "click", "page", "tech", "eu", "uk", "de",
    "fr", "it", "es", "nl", "be", "at", "ch", "pl", "se", "dk", "no", "fi", "ie", "pt", "cz", "ca",
    "us", "mx", "br", "jp", "au", "in", "sg", "ae", "sa", "eg", "tr", "ru", "cn", "ly", "to", "gl",
    "gd", "tv", "ws",
];

// ---------------------------------------------------------------------------------------
// Phrase tables
//
// One table per check; each entry is (language, pattern). A pattern is a regex fragment
// matched on folded text: lower case, accents stripped (é → e, ü → u, ß → ss),
// typographic apostrophes and dashes made ASCII, invisible characters dropped, links
// blanked, and any run of whitespace one space (one line break if it holds a blank line).
// A space in a pattern matches any whitespace, so phrases wrapped over two lines match. Every table is wrapped in
// word boundaries, so entries start and end with a word character. Languages: the EU
// marketplaces' en, de, fr, es, it; the tests check each table covers all five.

type Phrases = &'static [(&'static str, &'static str)];

/// Marketing and promotion (§13 "Content must NOT include"). Words that also occur in
/// honest messages ("sale", "offer", "novedades", "saldo") only count in a promotional
/// phrase.
const MARKETING: Phrases = &[
    ("en", r"coupons?(?: codes?)?"),
    (
        "en",
        r"(?:promo|promotional|promotion|discount|voucher|referral|offer) codes?",
    ),
    ("en", r"\d+ ?% (?:off|discount)"),
    (
        "en",
        r"(?:off|discount on|discount for|savings on) (?:your )?(?:next|future|another) (?:order|purchase)s?",
    ),
    (
        "en",
        r"(?:on|big|flash|summer|winter|spring|holiday|christmas|black friday|cyber monday|clearance|seasonal|anniversary) sale",
    ),
    ("en", r"sales? (?:ends?|prices?|event|now on)"),
    (
        "en",
        r"(?:special|exclusive|limited[- ]time|limited) (?:offers?|deals?|discounts?)",
    ),
    (
        "en",
        r"(?:check out|take a look at|browse|shop|discover|explore) (?:all )?our (?:other |new |latest |full |whole )?(?:products|items|range|collection|catalog|catalogue|listings|store|shop|storefront)",
    ),
    (
        "en",
        r"visit our (?:store|shop|website|web site|site|storefront|page|amazon store|brand store)",
    ),
    (
        "en",
        r"our (?:other|new|latest) (?:products|items|collection|arrivals|releases)",
    ),
    ("en", r"new arrivals"),
    (
        "en",
        r"you (?:may|might|will|would) also (?:like|love|enjoy)",
    ),
    ("en", r"newsletters?"),
    ("en", r"(?:subscribe|sign up) (?:to|for) our"),
    ("en", r"unsubscribe|opt[- ]out"),
    ("en", r"follow us|(?:like|find) us on"),
    (
        "en",
        r"our (?:facebook|instagram|tiktok|pinterest|twitter|youtube)|(?:facebook|instagram|tiktok|pinterest|twitter|youtube) (?:page|account|channel|profile)",
    ),
    ("en", r"buy (?:one|1|two|2) get|bogo"),
    ("de", r"gutscheine?|gutscheincodes?"),
    ("de", r"(?:rabatt|aktions|promo)-?codes?"),
    ("de", r"\d+ ?% (?:rabatt|nachlass)"),
    (
        "de",
        r"rabatt auf (?:ihre |alle )?(?:nachste|nachsten|kunftige|kunftigen|weitere|weiteren)",
    ),
    (
        "de",
        r"sonderangebote?|sonderaktion(?:en)?|rabattaktion(?:en)?|(?:sommer|winter)?schlussverkauf",
    ),
    ("de", r"folgen sie uns|folge uns"),
    (
        "de",
        r"besuchen sie (?:auch |doch |gerne )*unseren? (?:shop|store|webshop|onlineshop|online-shop|website|webseite|internetseite|markenshop|amazon-shop)",
    ),
    (
        "de",
        r"unseren? (?:anderen|weiteren|neuen) (?:produkte|artikel)",
    ),
    ("de", r"unser (?:gesamtes |komplettes |ganzes )?sortiment"),
    ("de", r"unsere neuheiten"),
    (
        "fr",
        r"codes? (?:promo|promotionnels?|de reduction|de remise|avantage)",
    ),
    ("fr", r"bons? de reduction|bons? d'achat"),
    ("fr", r"\d+ ?% de (?:reduction|remise)"),
    (
        "fr",
        r"(?:reduction|remise) sur (?:votre |vos )?prochaine?s? (?:commandes?|achats?)",
    ),
    (
        "fr",
        r"(?:nos|en) promotions?|soldes|ventes? privees?|ventes? flash",
    ),
    ("fr", r"offres? (?:speciales?|exclusives?|limitees?)"),
    (
        "fr",
        r"lettres? d'information|abonnez-vous|desabonner|desinscri(?:re|vez|ption)",
    ),
    ("fr", r"suivez-nous|suivez nous"),
    (
        "fr",
        r"(?:visitez|decouvrez|consultez) (?:notre|nos) (?:boutique|magasin|site|autres|nouveautes|produits|collection)",
    ),
    ("fr", r"nos autres (?:produits|articles)|nos nouveautes"),
    ("es", r"cupon(?:es)?"),
    (
        "es",
        r"codigos? (?:promocional(?:es)?|de descuento|de promocion)",
    ),
    ("es", r"\d+ ?% de descuento"),
    (
        "es",
        r"descuento (?:en|para) (?:su |tu )?(?:proxim[oa]|siguiente) (?:pedido|compra)",
    ),
    ("es", r"ofertas? (?:especial(?:es)?|exclusivas?|limitadas?)"),
    ("es", r"rebajas|nuestras promociones|en promocion"),
    ("es", r"boletin(?:es)?|suscribete|suscribase|darse de baja"),
    ("es", r"siguenos|siganos"),
    (
        "es",
        r"(?:visite|visita|descubra|descubre) (?:nuestra|nuestros|nuestras) (?:tienda|web|pagina|productos|novedades|coleccion)",
    ),
    (
        "es",
        r"nuestros otros productos|otros productos de nuestra tienda",
    ),
    ("it", r"codic[ei] (?:promozional[ei]|sconto)"),
    ("it", r"buon[oi] sconto"),
    ("it", r"\d+ ?% di sconto"),
    (
        "it",
        r"sconto (?:sul|per il) (?:suo |tuo )?prossimo (?:ordine|acquisto)",
    ),
    ("it", r"offert[ae] (?:special[ei]|esclusiv[ae]|limitat[ae])"),
    (
        "it",
        r"(?:le nostre|in) promozion[ei]|saldi (?:estivi|invernali)",
    ),
    ("it", r"iscriviti|iscrivetevi|disiscriviti"),
    ("it", r"seguici|seguiteci"),
    (
        "it",
        r"visit[ai](?:te)? il nostro (?:negozio|sito|store|shop)",
    ),
    (
        "it",
        r"(?:i nostri altri|altri nostri) prodotti|le nostre novita",
    ),
];

/// Asking for a review, feedback or a star rating (§13: asking for a positive review,
/// steering unhappy buyers away from reviewing, asking to change or remove one). None of
/// the message kinds here is a review request: Amazon's is sent by the Solicitations
/// API, once, in Amazon's words, so under the Amazon policy any of these is a violation.
/// The verb matters: "we will review your request" and "thank you for your feedback"
/// must pass, so a noun counts only with a soliciting verb or a rating adjective.
const REVIEW_REQUESTS: Phrases = &[
    (
        "en",
        r"(?:leave|write|post|submit|give|share|drop) (?:us |me )?(?:a |an |your |some )?(?:quick |short |brief |honest |positive |good |great |nice |favou?rable |glowing |excellent |(?:5|five)[- ]?star )?(?:product )?(?:reviews?|ratings?|testimonials?)",
    ),
    // "Leave feedback" is Amazon's seller feedback; "give us feedback on the cable" is not.
    (
        "en",
        r"(?:leave|post|submit) (?:us |me )?(?:a |an |your |some )?(?:\w+ )?(?:seller )?feedback",
    ),
    ("en", r"(?:\d|one|two|three|four|five)[- ]?stars?"),
    (
        "en",
        r"(?:positive|good|great|favou?rable|glowing|excellent|perfect|(?:5|five)[- ]?star) (?:reviews?|feedback|ratings?|evaluations?)",
    ),
    (
        "en",
        r"rate (?:us|our (?:shop|store|service|product|item))|review us",
    ),
    (
        "en",
        r"(?:before|instead of) (?:leaving|writing|posting|giving) (?:a |any |us )?(?:negative |bad |poor |low |neutral )?(?:reviews?|feedback|ratings?)",
    ),
    (
        "en",
        r"(?:remove|delete|change|update|revise|amend|edit|modify|withdraw|reconsider) (?:your|the|this|that) (?:negative |bad |poor |low |neutral |\d[- ]?star )?(?:reviews?|feedback|ratings?)",
    ),
    (
        "de",
        r"(?:hinterlassen|schreiben|verfassen|geben|abgeben) sie (?:uns )?(?:doch |bitte |gerne )*(?:eine |einen |ihre |ihr )?(?:\w+ )?(?:bewertung|rezension|sternebewertung|produktbewertung)",
    ),
    (
        "de",
        r"(?:hinterlassen|abgeben) sie (?:uns )?(?:doch |bitte |gerne )*(?:ein |ihr )?(?:\w+ )?feedback",
    ),
    (
        "de",
        r"(?:bewertung|rezension|produktbewertung|feedback) (?:auf amazon |bei amazon )?(?:zu )?(?:hinterlassen|schreiben|verfassen|abzugeben)",
    ),
    (
        "de",
        r"bewerten sie (?:uns|unseren? (?:shop|service|artikel)|den artikel|das produkt|ihren kauf)",
    ),
    ("de", r"(?:\d|funf|vier)[- ]?sternen?"),
    (
        "de",
        r"(?:positive|positiven|positives|gute|guten|gutes|sehr gute|sehr guten) (?:bewertung|bewertungen|rezension|rezensionen|feedback)",
    ),
    (
        "de",
        r"(?:bevor|anstatt|statt) sie (?:eine |ein |uns )?(?:\w+ )?(?:bewertung|rezension|feedback)",
    ),
    (
        "de",
        r"(?:bewertung|rezension|feedback) (?:zu )?(?:andern|entfernen|loschen|aktualisieren|zuruckziehen|zuruckzuziehen|anzupassen)",
    ),
    (
        "de",
        r"(?:andern|entfernen|loschen|aktualisieren) sie (?:bitte )?ihre (?:\w+ )?(?:bewertung|rezension|feedback)",
    ),
    // "Avis" alone is also the carrier's "avis de passage" and "note" a note for the
    // driver: they count only as "votre avis" or with a rating word.
    (
        "fr",
        r"(?:laissez|laisser|ecrivez|ecrire|redigez|rediger|donnez|donner|deposez|deposer|publiez|publier|partagez|partager)(?:-nous| nous)? (?:un |une )?(?:petit |petite |bon |bonne |court |courte )?(?:evaluation|commentaire positif|avis (?:positif|favorable|client|sur|\d|cinq))",
    ),
    (
        "fr",
        r"(?:laissez|laisser|ecrivez|ecrire|redigez|rediger|donnez|donner|deposez|deposer|publiez|publier|partagez|partager)(?:-nous| nous)? votre avis",
    ),
    (
        "fr",
        r"(?:avis|commentaires?|evaluations?|notes?) (?:positi(?:f|fs|ve|ves)|favorables?|elogieu(?:x|se|ses)|5 etoiles)",
    ),
    ("fr", r"(?:\d|cinq|quatre) etoiles"),
    ("fr", r"(?:evaluez|notez)(?:-nous| nous)"),
    (
        "fr",
        r"avant de (?:laisser|ecrire|publier|donner|rediger) (?:un |une |votre )?(?:\w+ )?(?:avis|commentaire|evaluation)",
    ),
    (
        "fr",
        r"(?:modifier|supprimer|retirer|changer|mettre a jour|revoir) (?:votre|cet|ce) (?:\w+ )?(?:avis|commentaire|evaluation)",
    ),
    (
        "es",
        r"(?:deje|dejar|deja|dejanos|dejenos|escriba|escribir|escribe|escribanos|publique|publicar|publica) (?:una |un |su |tu )?(?:breve |buena |pequena |excelente )?(?:resena|valoracion|calificacion|opinion|comentario positivo)",
    ),
    (
        "es",
        r"(?:resenas?|valoracion(?:es)?|calificacion(?:es)?|opinion(?:es)?|comentarios?) (?:positiv[oa]s?|favorables?|de (?:\d|cinco) estrellas)",
    ),
    (
        "es",
        r"(?:buena|excelente|gran) (?:resena|valoracion|calificacion)",
    ),
    ("es", r"(?:\d|cinco|cuatro) estrellas"),
    (
        "es",
        r"califiquenos|calificanos|valorenos|valoranos|puntuenos|puntuanos",
    ),
    (
        "es",
        r"antes de (?:dejar|escribir|publicar) (?:una |un |su )?(?:\w+ )?(?:resena|valoracion|opinion|comentario|calificacion)",
    ),
    (
        "es",
        r"(?:modificar|eliminar|retirar|cambiar|actualizar|borrar|modifique|elimine|retire|cambie|actualice) (?:su|tu|la) (?:\w+ )?(?:resena|valoracion|calificacion|opinion)",
    ),
    (
        "it",
        r"(?:lascia|lasciare|lasci|lasciateci|lasciaci|scrivi|scrivere|scriva|pubblica|pubblicare|pubblichi) (?:una |un |la (?:sua|tua) |il (?:suo|tuo) )?(?:breve |buona |piccola |ottima )?(?:recensione|valutazione|feedback)",
    ),
    (
        "it",
        r"(?:recension[ei]|valutazion[ei]|feedback) (?:positiv[aoie]|a (?:\d|cinque) stelle)",
    ),
    ("it", r"(?:buona|ottima|bella) (?:recensione|valutazione)"),
    ("it", r"(?:\d|cinque|quattro) stelle"),
    ("it", r"valutaci|ci valuti|recensiscici"),
    (
        "it",
        r"prima di (?:lasciare|scrivere|pubblicare) (?:una |un )?(?:\w+ )?(?:recensione|valutazione|feedback)",
    ),
    (
        "it",
        r"(?:modificare|rimuovere|eliminare|cambiare|aggiornare|modifichi|rimuova|elimini|cambi|aggiorni) (?:la (?:sua|tua) |il (?:suo|tuo) )?(?:\w+ )?(?:recensione|valutazione|feedback)",
    ),
];

/// An explicit offer of something for a review: forbidden on every marketplace, so it
/// counts under the baseline too. Only "for *a* review", never "for your review", which
/// is how a seller thanks a buyer ("refunded, thank you for your feedback").
const REVIEW_FOR_INCENTIVE: Phrases = &[
    (
        "en",
        r"in (?:exchange|return) for (?:a |an |your |the )?(?:\w+ )?(?:reviews?|feedback|ratings?)",
    ),
    (
        "en",
        r"(?:free|gifts?|gift cards?|vouchers?|refunds?|rebates?|cash ?back|money back|discounts?|rewards?|compensation|coupons?|bonus|reimburse(?:ment)?)\b.{0,60}?\bfor (?:a|an|leaving a|writing a|posting a) (?:\w+ )?(?:reviews?|feedback|ratings?)",
    ),
    (
        "de",
        r"(?:im austausch|als gegenleistung|als dankeschon) (?:fur|gegen) (?:eine |ihre |ein )?(?:\w+ )?(?:bewertung|rezension|feedback)",
    ),
    (
        "de",
        r"(?:gutschein|geschenk|gratis|kostenlos\w*|erstattung|ruckerstattung|rabatt|geld zuruck|belohnung)\b.{0,60}?\b(?:fur|gegen) eine (?:\w+ )?(?:bewertung|rezension)",
    ),
    (
        "fr",
        r"en echange (?:d'un|d'une|de votre) (?:\w+ )?(?:avis|commentaire|evaluation)",
    ),
    (
        "fr",
        r"(?:cadeau|gratuit\w*|bon d'achat|carte cadeau|rembours\w*|reduction|remise|recompense)\b.{0,60}?\bpour (?:un|une) (?:\w+ )?(?:avis|commentaire|evaluation)",
    ),
    (
        "es",
        r"a cambio de (?:una|un|su|tu) (?:\w+ )?(?:resena|valoracion|opinion|calificacion|comentario)",
    ),
    (
        "es",
        r"(?:regalo|gratis|gratuit[oa]|reembols\w*|descuento|cupon|tarjeta regalo|recompensa)\b.{0,60}?\bpor (?:una|dejar una|escribir una) (?:\w+ )?(?:resena|valoracion|opinion|calificacion)",
    ),
    (
        "it",
        r"in cambio (?:di|della|della sua|della tua|di una) (?:\w+ )?(?:recensione|valutazione|feedback)",
    ),
    (
        "it",
        r"(?:omaggio|regalo|gratis|gratuit[oa]|rimbors\w*|sconto|buono|coupon)\b.{0,60}?\bper (?:una|lasciare una|scrivere una) (?:\w+ )?(?:recensione|valutazione)",
    ),
];

/// Things of value (§13: money, gift cards, free or discounted products, refunds,
/// rebates, future benefits). Alone they are ordinary ("we have refunded 24.99 €"); in
/// the same sentence as a [`REVIEW_REQUESTS`] phrase they make it a bought review.
const INCENTIVES: Phrases = &[
    (
        "en",
        r"refund(?:s|ed)?|reimburse\w*|free (?:gift|product|item|sample|unit|replacement|of charge)|for free|gifts?|gift cards?|vouchers?|coupons?|rebates?|cash ?back|money back|discounts?|rewards?|bonus|\d+ ?% off",
    ),
    (
        "de",
        r"(?:ruck)?erstattung|(?:zu)?erstatten|erstattet|gutscheine?|geschenke?|gratis|kostenlos\w*|rabatt|geld zuruck|belohnung|pramie",
    ),
    (
        "fr",
        r"rembours\w*|gratuit\w*|cadeaux?|bons? d'achat|cartes? cadeaux?|reductions?|remises?|recompenses?",
    ),
    (
        "es",
        r"reembols\w*|gratis|gratuit[oa]s?|regalos?|tarjetas? regalo|cupon(?:es)?|descuentos?|recompensas?",
    ),
    (
        "it",
        r"rimbors\w*|gratis|gratuit[oa]|omaggi[oa]?|regal[oi]|buon[oi]|coupon|scont[oi]|ricompens[ae]",
    ),
];

/// Auto-responder phrasing (DOMAIN.md "Why it exists"): receipt confirmations, away
/// messages, "automated message", reply-time promises. A real answer may thank the buyer
/// for the message and promise news "as soon as DHL replies"; it may not stop at "we will
/// get back to you shortly". Generic mentions ("Amazon sends an automatic e-mail") pass:
/// only the message describing itself as automatic counts.
const AUTO_RESPONDER: Phrases = &[
    (
        "en",
        r"(?:we|i)(?: have|'ve)? (?:successfully |just |already )?received your (?:message|e-?mail|mail|inquiry|enquiry|request|query|ticket)",
    ),
    (
        "en",
        r"your (?:message|e-?mail|inquiry|enquiry|request|query|ticket) (?:has been|was) (?:successfully )?received",
    ),
    (
        "en",
        r"(?:we|i|our (?:\w+ )?team|someone|a member of our team|customer service)(?: will| shall|'ll) (?:get back to you|respond(?: to you| to your \w+)?|reply(?: to you| to your \w+)?|answer(?: you| your \w+)?|be in touch|contact you) (?:shortly|soon|as soon as possible|asap|at (?:our|the) earliest|within)",
    ),
    (
        "en",
        r"(?:we|i)(?: are|'re| am|'m) (?:currently |presently |now )?(?:away|out of (?:the )?office|on (?:holiday|vacation|leave))",
    ),
    ("en", r"out[- ]of[- ](?:the[- ])?office"),
    (
        "en",
        r"this (?:is an?|message is an?|e-?mail is an?) (?:automated|automatic|auto-?generated|automatically generated|computer-?generated)",
    ),
    (
        "en",
        r"auto-?repl(?:y|ies)|auto-?responder|automatic repl(?:y|ies)",
    ),
    (
        "en",
        r"(?:do not|don't) reply to this (?:message|e-?mail|mail)",
    ),
    (
        "en",
        r"(?:outside|out of) (?:our |normal |regular |usual )?(?:business|office|working|opening) hours",
    ),
    (
        "en",
        r"(?:office|team|customer service|support) is (?:currently|now|temporarily) closed",
    ),
    (
        "de",
        r"(?:wir haben|ich habe) ihre (?:nachricht|e-?mail|mail|anfrage) (?:\w+ )?(?:erhalten|bekommen)",
    ),
    (
        "de",
        r"ihre (?:nachricht|e-?mail|mail|anfrage) (?:ist|wurde) (?:bei uns )?(?:eingegangen|empfangen)",
    ),
    (
        "de",
        r"(?:wir melden uns|ich melde mich) (?:bei ihnen )?(?:schnellstmoglich|so schnell wie moglich|baldmoglichst|in kurze|in kurzester zeit|innerhalb)",
    ),
    (
        "de",
        r"innerhalb (?:von |der nachsten )?\d+ (?:stunden|werktagen|arbeitstagen|tagen) (?:antworten|beantworten|melden|zuruckmelden|bearbeiten)",
    ),
    (
        "de",
        r"(?:antworten|beantworten) (?:wir |ihnen |ihre (?:nachricht|anfrage) )*(?:schnellstmoglich|so schnell wie moglich|innerhalb)",
    ),
    (
        "de",
        r"(?:bin|sind) (?:derzeit |zurzeit |momentan |aktuell |leider )*(?:nicht im buro|abwesend|im urlaub|nicht erreichbar|ausser haus)",
    ),
    (
        "de",
        r"abwesenheitsnotiz|abwesenheitsnachricht|automatische antwort",
    ),
    (
        "de",
        r"(?:dies ist|es handelt sich um) eine automatisch(?:e|) (?:erstellte |generierte )?(?:nachricht|antwort|e-?mail)",
    ),
    (
        "de",
        r"diese (?:nachricht|e-?mail|antwort) (?:ist|wurde) automatisch",
    ),
    (
        "de",
        r"ausserhalb (?:unserer |der )?(?:geschaftszeiten|burozeiten|offnungszeiten|servicezeiten)",
    ),
    ("de", r"antworten sie nicht auf diese (?:nachricht|e-?mail)"),
    (
        "fr",
        r"nous avons (?:bien )?recu votre (?:message|e-?mail|mail|courriel|demande|requete)",
    ),
    (
        "fr",
        r"votre (?:message|demande|e-?mail|courriel) a (?:bien )?ete (?:recue?|enregistree?)",
    ),
    (
        "fr",
        r"nous (?:reviendrons vers vous|vous repondrons|vous recontacterons|vous contacterons) (?:dans les (?:plus )?brefs delais|rapidement|au plus vite|des que possible|sous \d+|dans \d+|dans un delai)",
    ),
    (
        "fr",
        r"(?:je suis|nous sommes) (?:actuellement |momentanement )?(?:absente?s?|en conges|en vacances|hors du bureau)",
    ),
    ("fr", r"absente?s? du bureau|hors du bureau"),
    (
        "fr",
        r"reponse automatique|(?:ceci est|ce message est|cet e-?mail est) (?:un message|une reponse|un e-?mail|un courriel) automatique",
    ),
    (
        "fr",
        r"(?:merci de ne pas|veuillez ne pas) repondre a ce (?:message|mail|e-?mail|courriel)",
    ),
    (
        "fr",
        r"en dehors (?:de nos|des) (?:heures|horaires) (?:d'ouverture|de bureau|de travail)",
    ),
    (
        "es",
        r"hemos recibido (?:correctamente )?(?:su|tu) (?:mensaje|correo|e-?mail|consulta|solicitud|peticion)",
    ),
    (
        "es",
        r"(?:su|tu) (?:mensaje|consulta|solicitud|correo) (?:ha sido|fue) recibid[oa]",
    ),
    (
        "es",
        r"(?:le|te) (?:responderemos|contestaremos|contactaremos) (?:en breve|lo antes posible|lo mas pronto posible|a la mayor brevedad|en un plazo de|dentro de)",
    ),
    (
        "es",
        r"nos pondremos en contacto con (?:usted|vos|tigo) (?:en breve|lo antes posible|a la mayor brevedad|en un plazo de|dentro de)",
    ),
    (
        "es",
        r"(?:estamos|estoy) (?:actualmente |ahora )?(?:fuera de la oficina|de vacaciones|ausentes?)",
    ),
    ("es", r"fuera de la oficina"),
    (
        "es",
        r"respuesta automatica|(?:este|esto) es un (?:mensaje|correo|e-?mail) automatico",
    ),
    ("es", r"no responda a este (?:mensaje|correo|e-?mail)"),
    (
        "es",
        r"fuera (?:de|del) (?:nuestro )?horario (?:de atencion|laboral|de oficina|comercial)",
    ),
    (
        "it",
        r"abbiamo ricevuto (?:correttamente )?(?:il (?:suo|tuo|vostro) (?:messaggio|e-?mail)|la (?:sua|tua|vostra) (?:richiesta|e-?mail|mail|segnalazione))",
    ),
    (
        "it",
        r"(?:il (?:suo|tuo) messaggio|la (?:sua|tua) richiesta) e stat[oa] ricevut[oa]",
    ),
    (
        "it",
        r"(?:le|ti|vi) (?:risponderemo|ricontatteremo|contatteremo) (?:al piu presto|a breve|prima possibile|il prima possibile|quanto prima|entro)",
    ),
    (
        "it",
        r"(?:siamo|sono) (?:attualmente |al momento )?(?:fuori ufficio|fuori sede|in ferie|in vacanza|assenti?)",
    ),
    ("it", r"fuori ufficio"),
    (
        "it",
        r"risposta automatica|(?:questo|questa) e (?:un messaggio|una risposta|una e-?mail|una mail) automatic[oa]",
    ),
    (
        "it",
        r"non rispondere a (?:questo messaggio|questa e-?mail|questa mail)",
    ),
    (
        "it",
        r"fuori (?:dall'orario|dagli orari) (?:di ufficio|lavorativo|di lavoro|d'ufficio)",
    ),
];

// ---------------------------------------------------------------------------------------
// Compiled patterns. Compiled once and never changed, so they are constants, not state;
// a table that fails to compile makes its check report itself instead of passing.

type Compiled = LazyLock<Result<Regex, String>>;

static MARKETING_RE: Compiled = LazyLock::new(|| phrase_regex(MARKETING));
static REVIEW_REQUESTS_RE: Compiled = LazyLock::new(|| phrase_regex(REVIEW_REQUESTS));
static REVIEW_FOR_INCENTIVE_RE: Compiled = LazyLock::new(|| phrase_regex(REVIEW_FOR_INCENTIVE));
static INCENTIVES_RE: Compiled = LazyLock::new(|| phrase_regex(INCENTIVES));
static AUTO_RESPONDER_RE: Compiled = LazyLock::new(|| phrase_regex(AUTO_RESPONDER));

/// Elements and their closing tags, comments, doctypes and character references. Only
/// real element names: "a < b", "<3" or a leftover placeholder like "<Order ID>" are not
/// markup a mail client would render.
static HTML_RE: Compiled = LazyLock::new(|| {
    const TAGS: &str = "a|abbr|audio|b|big|blockquote|body|br|button|center|code|div|em|\
        embed|font|footer|form|h[1-6]|head|header|hr|html|i|iframe|img|input|label|li|link|\
        meta|nav|object|ol|p|pre|s|script|section|small|source|span|strike|strong|style|\
        sub|sup|svg|table|tbody|td|th|thead|title|tr|tt|u|ul|video";
    compile(&format!(
        r"(?i)</?(?:{TAGS})(?:\s[^<>]*)?/?>|<(?:{TAGS})\s+[a-z-]+\s*=|<!--|<!doctype\b|<\?xml\b|&(?:#[0-9]{{1,7}}|#x[0-9a-f]{{1,6}}|[a-z][a-z0-9]{{1,31}});"
    ))
});

/// Addresses spelled out to dodge filters: "name [at] shop [dot] com", "name at shop dot
/// com". A bare " at " needs a " dot " too, or "look at amazon.com" would count.
static OBFUSCATED_EMAIL_RE: Compiled = LazyLock::new(|| {
    compile(
        r"(?i)\b[a-z0-9._%+-]+\s*(?:\[at\]|\(at\)|\{at\}|\[@\]|\(@\)|<at>)\s*[a-z0-9-]+(?:\s*(?:\.|\[dot\]|\(dot\)|\{dot\}|\sdot\s)\s*[a-z0-9-]+)*\s*(?:\.|\[dot\]|\(dot\)|\{dot\}|\sdot\s)\s*[a-z]{2,}\b|\b[a-z0-9._%+-]+\sat\s[a-z0-9-]+\sdot\s(?:com|net|org|de|fr|it|es|co\sdot\suk|ca|eu|info)\b",
    )
});

/// The phone check's patterns. Digits are `[0-9]`, not `\d`, so the digit count of a
/// candidate is the count of ASCII digits in it.
struct PhonePatterns {
    /// A run of digits and separators that might be a number a buyer could dial.
    candidate: Regex,
    /// Numbers that are something else and may touch a phone-like run: Amazon and eBay
    /// order ids, prices.
    not_phone: Regex,
    /// Dates, blanked unless more digit groups follow (then "06.12.34.56.78" is a French
    /// phone number, not a date with a tail).
    date: Regex,
    /// National formats that do not start with a trunk 0: NANP `(555) 123-4567`,
    /// Spanish `912 345 678`, Italian mobiles `347 1234567`.
    national: Regex,
}

static PHONE_RE: LazyLock<Result<PhonePatterns, String>> = LazyLock::new(|| {
    Ok(PhonePatterns {
        candidate: compile(r"(?:\+|\(\+?)?[0-9][0-9\t \u{a0}().\-/]*[0-9]")?,
        not_phone: compile(
            r"(?i)\b[0-9]{3}-[0-9]{7}-[0-9]{7}\b|\b[0-9]{2}-[0-9]{5}-[0-9]{5}\b|(?:[$€£¥]|\b(?:eur|usd|gbp|cad|chf|sek|pln|aud|mxn|brl)\b)\s?[0-9][0-9.,'\u{a0}\u{202f}]*|[0-9][0-9.,'\u{a0}\u{202f}]*\s?(?:[$€£¥]|(?:eur|euros?|usd|gbp|cad|chf|sek|pln|dollars?|pounds?)\b)",
        )?,
        date: compile(
            r"\b(?:[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}|[0-9]{1,2}[./-][0-9]{1,2}[./-](?:[0-9]{4}|[0-9]{2}))\b",
        )?,
        national: compile(
            r"^(?:(?:1[ .\-]?)?(?:\([2-9][0-9]{2}\)|[2-9][0-9]{2})[ .\-]?[0-9]{3}[ .\-][0-9]{4}|[6-9][0-9]{2} [0-9]{3} [0-9]{3}|[6-9][0-9]{2} [0-9]{2} [0-9]{2} [0-9]{2}|3[0-9]{2}[ .\-/][0-9]{6,7})$",
        )?,
    })
});

fn compile(pattern: &str) -> Result<Regex, String> {
    Regex::new(pattern).map_err(|e| e.to_string())
}

fn phrase_regex(table: Phrases) -> Result<Regex, String> {
    let alternatives: Vec<String> = table
        .iter()
        .map(|(_, pattern)| format!("(?:{})", pattern.replace(' ', r"\s")))
        .collect();
    compile(&format!(r"\b(?:{})\b", alternatives.join("|")))
}

// ---------------------------------------------------------------------------------------
// Checks

const EMAIL_MESSAGE: &str = "E-mail addresses are not allowed: buyers are answered through \
    the marketplace's messaging only, and the Messaging API rejects them.";

/// A violation before its line and excerpt are worked out; `start..end` are byte offsets
/// into the text.
struct Found {
    check: Check,
    start: usize,
    end: usize,
    message: String,
}

impl Found {
    fn into_violation(self, text: &str) -> Violation {
        Violation {
            check: self.check,
            line: line_of(text, self.start),
            excerpt: excerpt(text, self.start, self.end),
            message: self.message,
        }
    }
}

fn could_not_run(check: Check, error: &str) -> Found {
    Found {
        check,
        start: 0,
        end: 0,
        message: format!(
            "The {check} check could not run ({error}), so the message is held; this is a \
             bug in the linter."
        ),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.matches('\n').count())
        + 1
}

fn excerpt(text: &str, start: usize, end: usize) -> String {
    let bit = text.get(start..end).unwrap_or_default();
    let collapsed = bit.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= EXCERPT_MAX {
        return collapsed;
    }
    let mut cut: String = collapsed.chars().take(EXCERPT_MAX - 1).collect();
    cut.push('…');
    cut
}

/// Characters that render as nothing: a text of only these is empty, and inside a word
/// they would hide a phrase ("cou\u{200B}pon").
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
    )
}

fn is_blank(text: &str) -> bool {
    text.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkSort {
    Url,
    Email,
    /// "Amazon.de" in running text: the marketplace's name, not a link to follow.
    AmazonName,
}

struct FoundLink {
    start: usize,
    end: usize,
    sort: LinkSort,
}

fn find_links(text: &str) -> Vec<FoundLink> {
    let mut finder = LinkFinder::new();
    finder.url_must_have_scheme(false);
    finder
        .links(text)
        .filter_map(|link| {
            let sort = match link.kind() {
                LinkKind::Email => LinkSort::Email,
                LinkKind::Url if !link.as_str().contains("://") => schemeless_sort(link.as_str())?,
                // Anything else linkify may learn to find is checked as a URL.
                _ => LinkSort::Url,
            };
            Some(FoundLink {
                start: link.start(),
                end: link.end(),
                sort,
            })
        })
        .collect()
}

/// Whether a scheme-less `a.b` linkify found is a link, and which kind.
fn schemeless_sort(link: &str) -> Option<LinkSort> {
    let host_end = link.find(['/', '?', '#', ':']).unwrap_or(link.len());
    let (host, rest) = link.split_at(host_end);
    let lower = host.to_lowercase();
    if lower.starts_with("www.") || !(rest.is_empty() || rest == "/") {
        return Some(LinkSort::Url);
    }
    let tld = host.rsplit('.').next().unwrap_or_default();
    // "order.To" is a missing space after a full stop; a typed domain is "shop.to" or
    // "SHOP.TO".
    let one_case = tld == tld.to_lowercase() || tld == tld.to_uppercase();
    if !one_case || !KNOWN_TLDS.contains(&tld.to_lowercase().as_str()) {
        return None;
    }
    if lower
        .strip_prefix("amazon.")
        .is_some_and(|t| AMAZON_TLDS.contains(&t))
    {
        return Some(LinkSort::AmazonName);
    }
    Some(LinkSort::Url)
}

/// Why the link (as found in the text) may not be sent, if it may not.
fn link_problem(link: &str, kind: MessageKind) -> Option<String> {
    let absolute = if link.contains("://") {
        link.to_owned()
    } else {
        format!("https://{link}")
    };
    let parsed = match Url::parse(&absolute) {
        Ok(parsed) => parsed,
        Err(e) => {
            return Some(format!(
                "This link could not be parsed ({e}), so it cannot be checked and is refused."
            ));
        }
    };
    if !matches!(parsed.scheme(), "https" | "http") {
        return Some(format!(
            "Only http(s) links to carrier tracking pages are allowed, not {}: links.",
            parsed.scheme()
        ));
    }
    if !is_carrier_tracking_link(&absolute) {
        let host = parsed.host_str().unwrap_or("an unknown host");
        let disguise = if parsed.username().is_empty() {
            ""
        } else {
            " (the part before @ is a disguise)"
        };
        let port = if parsed.port().is_some() {
            " on a non-standard port"
        } else {
            ""
        };
        return Some(format!(
            "Links are allowed only to carrier or Amazon tracking pages; this one goes to \
             {host}{disguise}{port}."
        ));
    }
    if !kind.allows_tracking_links() {
        return Some(format!(
            "{} messages may not contain links, not even tracking links.",
            kind.api_name()
        ));
    }
    None
}

fn check_obfuscated_emails(text: &str, found: &mut Vec<Found>) {
    let re = match &*OBFUSCATED_EMAIL_RE {
        Ok(re) => re,
        Err(e) => return found.push(could_not_run(Check::Email, e)),
    };
    found.extend(re.find_iter(text).map(|m| Found {
        check: Check::Email,
        start: m.start(),
        end: m.end(),
        message: EMAIL_MESSAGE.into(),
    }));
}

fn check_html(text: &str, found: &mut Vec<Found>) {
    let re = match &*HTML_RE {
        Ok(re) => re,
        Err(e) => return found.push(could_not_run(Check::Html, e)),
    };
    let spans = re.find_iter(text).map(|m| (m.start(), m.end()));
    for (start, end) in merge_by_line(text, spans) {
        found.push(Found {
            check: Check::Html,
            start,
            end,
            message: "HTML markup is not allowed: send plain text.".into(),
        });
    }
}

fn check_phones(text: &str, links: &[(usize, usize)], found: &mut Vec<Found>) {
    let patterns = match &*PHONE_RE {
        Ok(patterns) => patterns,
        Err(e) => return found.push(could_not_run(Check::Phone, e)),
    };
    let mut hidden: Vec<(usize, usize)> = links.to_vec();
    hidden.extend(
        patterns
            .not_phone
            .find_iter(text)
            .map(|m| (m.start(), m.end())),
    );
    hidden.extend(
        patterns
            .date
            .find_iter(text)
            .filter(|m| !continues_with_digit_group(&text[m.end()..]))
            .map(|m| (m.start(), m.end())),
    );
    // Same byte length, so offsets in `masked` are offsets in `text`; 'x' is a letter, so
    // a run touching a hidden number is not a standalone number either.
    let masked: String = text
        .char_indices()
        .flat_map(|(i, c)| {
            let hide = hidden.iter().any(|&(s, e)| (s..e).contains(&i));
            let n = if hide { c.len_utf8() } else { 0 };
            std::iter::repeat_n('x', n).chain((!hide).then_some(c))
        })
        .collect();
    for m in patterns.candidate.find_iter(&masked) {
        let before = masked[..m.start()].chars().next_back();
        let after = masked[m.end()..].chars().next();
        // A digit run glued to letters is a tracking number, ASIN, IBAN or reference.
        if before.is_some_and(char::is_alphanumeric) || after.is_some_and(char::is_alphanumeric) {
            continue;
        }
        if looks_like_phone(m.as_str(), &patterns.national) {
            found.push(Found {
                check: Check::Phone,
                start: m.start(),
                end: m.end(),
                message: "Phone numbers are not allowed: buyers are answered through the \
                          marketplace's messaging only."
                    .into(),
            });
        }
    }
}

fn continues_with_digit_group(rest: &str) -> bool {
    let mut chars = rest.chars();
    matches!(chars.next(), Some('.' | '/' | '-'))
        && chars.next().is_some_and(|c| c.is_ascii_digit())
}

/// Whether a run of digits and separators is a phone number. International numbers
/// (`+…`, `00…`) have 8–15 digits after the prefix (E.164). National numbers need
/// separators, because an unbroken run is what tracking numbers, FedEx and DHL numbers
/// and references look like, and either a trunk 0 (European formats: `030 1234 5678`,
/// `06 12 34 56 78`, `020 7946 0958`) or one of the [`PhonePatterns::national`] formats.
fn looks_like_phone(run: &str, national: &Regex) -> bool {
    let digits: Vec<char> = run.chars().filter(char::is_ascii_digit).collect();
    let n = digits.len();
    if run.starts_with('+') || run.starts_with("(+") {
        return (8..=15).contains(&n) && digits.first() != Some(&'0');
    }
    if run.starts_with("00") {
        return (10..=16).contains(&n) && digits.get(2) != Some(&'0');
    }
    if digits.len() == run.chars().count() {
        return false;
    }
    // Tabs, no-break spaces and repeated spaces are one separator to the formats.
    let normalized = run
        .split(|c: char| c.is_whitespace())
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if national.is_match(&normalized) {
        return true;
    }
    if normalized.starts_with('0') || normalized.starts_with("(0") {
        let first_group = normalized
            .trim_start_matches('(')
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap_or_default();
        return (9..=12).contains(&n) && (2..=5).contains(&first_group.len());
    }
    false
}

const ZWJ: char = '\u{200D}';
const VS15: char = '\u{FE0E}';
const VS16: char = '\u{FE0F}';
const KEYCAP: char = '\u{20E3}';

/// Below this, characters with a text default that may also be emoji are typography a
/// seller types on purpose (© ® ™ ‼, arrows, ▪ ▶ bullets); from here on they are
/// pictographs (☀ ☺ ♥ ✈ ✔ ❤ ➡ ⚠) that phones draw as emoji even without U+FE0F.
const PICTOGRAPHS_FROM: char = '\u{2600}';

fn check_emojis(text: &str, found: &mut Vec<Found>) {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let mut i = 0;
    while let Some(&(start, c)) = chars.get(i) {
        if !starts_emoji(c, at(i + 1), at(i + 2)) {
            i += 1;
            continue;
        }
        // One violation per emoji sequence: a family, a flag, a thumbs-up with its skin
        // tone, or several emoji in a row.
        let mut j = i + 1;
        while let Some(d) = at(j) {
            let after_joiner = at(j - 1) == Some(ZWJ) && d.is_emoji_char();
            if continues_emoji(d) || after_joiner || starts_emoji(d, at(j + 1), at(j + 2)) {
                j += 1;
            } else {
                break;
            }
        }
        let end = chars.get(j).map_or(text.len(), |&(offset, _)| offset);
        let code_points: Vec<String> = text[start..end]
            .chars()
            .filter(|&c| !continues_emoji(c))
            .take(4)
            .map(|c| format!("U+{:04X}", u32::from(c)))
            .collect();
        found.push(Found {
            check: Check::Emoji,
            start,
            end,
            message: format!(
                "Emojis are not allowed in buyer messages ({}).",
                code_points.join(" ")
            ),
        });
        i = j;
    }
}

/// Whether `c` begins an emoji. Digits, `#` and `*` are emoji only as keycaps ("1️⃣"), so
/// "Order #1001" and "2 x 3" pass.
fn starts_emoji(c: char, next: Option<char>, after: Option<char>) -> bool {
    if is_regional_indicator(c) {
        return true;
    }
    match c.emoji_status() {
        EmojiStatus::NonEmoji | EmojiStatus::NonEmojiButEmojiComponent => false,
        EmojiStatus::EmojiOtherAndEmojiComponent => {
            next == Some(KEYCAP) || (next == Some(VS16) && after == Some(KEYCAP))
        }
        EmojiStatus::EmojiOther | EmojiStatus::EmojiModifierBase => {
            next == Some(VS16) || (c >= PICTOGRAPHS_FROM && next != Some(VS15))
        }
        // Emoji presentation by default, and whatever a later Unicode version adds.
        _ => true,
    }
}

/// Parts of an emoji sequence that are nothing on their own.
fn continues_emoji(c: char) -> bool {
    matches!(c, ZWJ | VS16 | KEYCAP | '\u{1F3FB}'..='\u{1F3FF}') || is_tag_character(c)
}

fn check_length(text: &str, kind: MessageKind, found: &mut Vec<Found>) {
    let max = kind.max_chars();
    let Some((start, _)) = text.char_indices().nth(max) else {
        return;
    };
    let end = text[start..]
        .char_indices()
        .nth(EXCERPT_MAX)
        .map_or(text.len(), |(i, _)| start + i);
    let n = text.chars().count();
    let what = match kind {
        MessageKind::BuyerReply => "a reply to a buyer".to_owned(),
        other => format!("a {} message", other.api_name()),
    };
    found.push(Found {
        check: Check::Length,
        start,
        end,
        message: format!(
            "The text has {n} characters, more than the {max} {what} may have; it is cut \
             off or refused from here on."
        ),
    });
}

/// Text prepared for phrase matching (see the phrase tables), with the source span of
/// every byte so matches can be reported in the original text.
struct Folded {
    text: String,
    source: Vec<(usize, usize)>,
}

impl Folded {
    fn new(original: &str, masked: &[(usize, usize)]) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut source = Vec::with_capacity(original.len());
        // Pending whitespace: its source span and how many line breaks it held.
        let mut gap: Option<(usize, usize, usize)> = None;
        let mut buf = String::new();
        for (i, c) in original.char_indices() {
            let end = i + c.len_utf8();
            let hidden = masked.iter().any(|&(s, e)| (s..e).contains(&i));
            if hidden || c.is_whitespace() {
                let breaks = usize::from(c == '\n' && !hidden);
                gap = Some(match gap {
                    Some((s, _, n)) => (s, end, n + breaks),
                    None => (i, end, breaks),
                });
                continue;
            }
            buf.clear();
            fold_char(c, &mut buf);
            if buf.is_empty() {
                continue;
            }
            if let Some((s, e, breaks)) = gap.take()
                && !text.is_empty()
            {
                // A blank line ends a paragraph; a single break is how mail wraps a
                // sentence.
                text.push(if breaks > 1 { '\n' } else { ' ' });
                source.push((s, e));
            }
            text.push_str(&buf);
            source.extend(std::iter::repeat_n((i, end), buf.len()));
        }
        Folded { text, source }
    }

    /// The original byte span of the folded span `start..end`.
    fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let first = self.source.get(start).map_or(0, |&(s, _)| s);
        let last = end
            .checked_sub(1)
            .and_then(|i| self.source.get(i))
            .map_or(first, |&(_, e)| e);
        (first, last.max(first))
    }

    /// Sentences, as folded spans: up to a blank line, or to `.`, `!`, `?` or `;` before
    /// whitespace (so "24.99" and "www.ups.com" do not end one).
    fn sentences(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut chars = self.text.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let next_is_space = chars.peek().is_none_or(|&(_, n)| n.is_whitespace());
            if c == '\n' || (matches!(c, '.' | '!' | '?' | ';') && next_is_space) {
                let end = i + c.len_utf8();
                out.push((start, end));
                start = end;
            }
        }
        if start < self.text.len() {
            out.push((start, self.text.len()));
        }
        out
    }
}

fn fold_char(c: char, out: &mut String) {
    for l in c.to_lowercase() {
        match l {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => out.push('a'),
            'ç' | 'ć' | 'č' => out.push('c'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ę' | 'ě' => out.push('e'),
            'ì' | 'í' | 'î' | 'ï' => out.push('i'),
            'ñ' | 'ń' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' => out.push('o'),
            'ù' | 'ú' | 'û' | 'ü' | 'ů' => out.push('u'),
            'ý' | 'ÿ' => out.push('y'),
            'ś' | 'š' => out.push('s'),
            'ź' | 'ż' | 'ž' => out.push('z'),
            'ł' => out.push('l'),
            'ř' => out.push('r'),
            'ß' => out.push_str("ss"),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            '\u{2018}' | '\u{2019}' | '\u{201B}' | '\u{2BC}' | '\u{B4}' | '`' => out.push('\''),
            '\u{2010}'..='\u{2015}' | '\u{2212}' => out.push('-'),
            // Combining accents of decomposed text ("e\u{301}").
            '\u{300}'..='\u{36F}' => {}
            other if is_invisible(other) => {}
            other => out.push(other),
        }
    }
}

/// Joins spans on the same line into one, so a sentence with three promotional words is
/// one alert line, not three.
fn merge_by_line(
    text: &str,
    spans: impl IntoIterator<Item = (usize, usize)>,
) -> Vec<(usize, usize)> {
    let mut merged: Vec<(usize, usize)> = Vec::new();
    for (start, end) in spans {
        match merged.last_mut() {
            Some(last) if line_of(text, last.0) == line_of(text, start) => {
                last.1 = last.1.max(end);
            }
            _ => merged.push((start, end)),
        }
    }
    merged
}

fn check_phrases(
    text: &str,
    folded: &Folded,
    re: &Compiled,
    check: Check,
    message: &str,
    found: &mut Vec<Found>,
) {
    let re = match &**re {
        Ok(re) => re,
        Err(e) => return found.push(could_not_run(check, e)),
    };
    let spans = re
        .find_iter(&folded.text)
        .map(|m| folded.original(m.start(), m.end()));
    for (start, end) in merge_by_line(text, spans) {
        found.push(Found {
            check,
            start,
            end,
            message: message.into(),
        });
    }
}

fn check_reviews(text: &str, folded: &Folded, amazon: bool, found: &mut Vec<Found>) {
    let (requests, offers, incentives) = match (
        &*REVIEW_REQUESTS_RE,
        &*REVIEW_FOR_INCENTIVE_RE,
        &*INCENTIVES_RE,
    ) {
        (Ok(requests), Ok(offers), Ok(incentives)) => (requests, offers, incentives),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return found.push(could_not_run(Check::ReviewRequest, e));
        }
    };
    let mut bought = Vec::new();
    let mut asked = Vec::new();
    for (s, e) in folded.sentences() {
        let sentence = &folded.text[s..e];
        let request = requests.find(sentence);
        if let Some(offer) = offers.find(sentence) {
            bought.push(folded.original(s + offer.start(), s + offer.end()));
        } else if let Some(request) = request
            && let Some(incentive) = incentives.find(sentence)
        {
            let from = request.start().min(incentive.start());
            let to = request.end().max(incentive.end());
            bought.push(folded.original(s + from, s + to));
        } else if let Some(request) = request
            && amazon
        {
            asked.push(folded.original(s + request.start(), s + request.end()));
        }
    }
    let messages = [
        (
            bought,
            "Offering something of value (refund, gift, discount, free product) for a \
             review or feedback is forbidden on every marketplace.",
        ),
        (
            asked,
            "Asking for a review, feedback or star rating is not allowed here: Amazon sends \
             the only permitted request itself (Solicitations API), and asking for a \
             positive one, or to change one, is review manipulation.",
        ),
    ];
    for (spans, message) in messages {
        for (start, end) in merge_by_line(text, spans) {
            found.push(Found {
                check: Check::ReviewRequest,
                start,
                end,
                message: message.into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use MessageKind::*;

    /// (check, line) of every violation.
    fn checks(text: &str, policy: Policy, kind: MessageKind) -> Vec<(Check, usize)> {
        lint(text, policy, kind)
            .iter()
            .map(|v| (v.check, v.line))
            .collect()
    }

    // -- tables and patterns -------------------------------------------------------------

    #[test]
    fn every_pattern_compiles() {
        for (name, compiled) in [
            ("marketing", &MARKETING_RE),
            ("review requests", &REVIEW_REQUESTS_RE),
            ("review for incentive", &REVIEW_FOR_INCENTIVE_RE),
            ("incentives", &INCENTIVES_RE),
            ("auto-responder", &AUTO_RESPONDER_RE),
            ("html", &HTML_RE),
            ("obfuscated e-mail", &OBFUSCATED_EMAIL_RE),
        ] {
            assert!(compiled.is_ok(), "{name}: {:?}", compiled.as_ref().err());
        }
        assert!(PHONE_RE.is_ok(), "phone: {:?}", PHONE_RE.as_ref().err());
    }

    #[test]
    fn phrase_tables_are_folded_and_cover_every_language() {
        for (name, table) in [
            ("marketing", MARKETING),
            ("review requests", REVIEW_REQUESTS),
            ("review for incentive", REVIEW_FOR_INCENTIVE),
            ("incentives", INCENTIVES),
            ("auto-responder", AUTO_RESPONDER),
        ] {
            for lang in ["en", "de", "fr", "es", "it"] {
                assert!(
                    table.iter().any(|(l, _)| *l == lang),
                    "{name} has no {lang} phrase"
                );
            }
            for (lang, pattern) in table {
                // Folded text never holds capitals, accents or typographic apostrophes,
                // so a pattern that does would never match (the patterns use no
                // upper-case escapes like \S, which folding would change).
                let mut folded = String::new();
                pattern.chars().for_each(|c| fold_char(c, &mut folded));
                assert_eq!(&folded, pattern, "{name} {lang} pattern is not folded");
                assert!(Regex::new(pattern).is_ok(), "{name} {lang}: {pattern}");
            }
        }
    }

    #[test]
    fn message_kinds_round_trip_and_have_their_limits() {
        for kind in MessageKind::ALL {
            assert_eq!(MessageKind::from_api_name(kind.api_name()), Some(kind));
        }
        assert_eq!(MessageKind::from_api_name("reply"), Some(BuyerReply));
        assert_eq!(
            MessageKind::from_api_name("unexpectedProblem"),
            Some(UnexpectedProblem)
        );
        assert_eq!(MessageKind::from_api_name("UnexpectedProblem"), None);
        assert_eq!(MessageKind::from_api_name("legalDisclosure"), None);
        let limits: Vec<(&str, usize)> = MessageKind::ALL
            .iter()
            .map(|k| (k.api_name(), k.max_chars()))
            .collect();
        assert_eq!(
            limits,
            [
                ("reply", 2000),
                ("confirmDeliveryDetails", 2000),
                ("confirmOrderDetails", 2000),
                ("confirmServiceDetails", 2000),
                ("confirmCustomizationDetails", 800),
                ("digitalAccessKey", 400),
                ("unexpectedProblem", 2000),
            ]
        );
    }

    #[test]
    fn check_ids_are_stable() {
        let ids: Vec<&str> = Check::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            ids,
            [
                "html",
                "link",
                "email",
                "phone",
                "marketing",
                "review_request",
                "emoji",
                "length",
                "auto_responder",
                "empty"
            ]
        );
        for check in Check::ALL {
            let json = serde_json::to_string(&check).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", check.as_str()));
        }
    }

    // -- messages a seller really sends --------------------------------------------------

    /// (name, kind, text): must pass under every policy.
    const COMPLIANT: &[(&str, MessageKind, &str)] = &[
        (
            "en pending",
            BuyerReply,
            "Hello,\n\nthank you for your message about order 113-4829301-5520617. Your order \
             is pending while Amazon verifies the payment. This is Amazon's standard check and \
             your order is safe; we cannot ship or change it until Amazon releases it. Please \
             check Your Orders for a payment alert.\n\nKind regards,\nThe Nightdesk team",
        ),
        (
            "en pending over 7 days",
            BuyerReply,
            "Your order 113-4829301-5520617 has been pending for 9 days, which is unusually \
             long. It is usually a problem with the payment method, and only Amazon customer \
             service can resolve it. We will not charge you and cannot ship before Amazon \
             confirms the payment.",
        ),
        (
            "en ups parcel",
            BuyerReply,
            "Hello,\n\nyour order 113-4829301-5520617 left our warehouse on 12/05/2024 and is \
             out for delivery today: https://www.ups.com/track?loc=en_US&tracknum=1Z999AA10123456784\n\n\
             Best regards",
        ),
        (
            "en usps parcel",
            ConfirmDeliveryDetails,
            "Your parcel (USPS 9400 1118 9922 3100 0000 00) is in transit and should arrive \
             on 2024-05-14. You can follow it here: \
             https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111899223100000000",
        ),
        (
            "en fedex replacement",
            UnexpectedProblem,
            "We are sorry: the parcel for order 113-4829301-5520617 was damaged in transit. \
             We shipped a replacement today with FedEx 7749 1234 5678: \
             https://www.fedex.com/fedextrack/?trknbr=774912345678",
        ),
        (
            "en amazon tracking",
            BuyerReply,
            "Amazon shows the latest status of your parcel here: \
             https://www.amazon.com/progress-tracker/package/ref=ppx_yo_dt_b_track_package?orderId=113-4829301-5520617",
        ),
        (
            "en fba",
            BuyerReply,
            "This order is fulfilled by Amazon, so Amazon.com customer service handles the \
             delivery and the return directly; they can see the carrier's scans.",
        ),
        (
            "en cancellation",
            BuyerReply,
            "To cancel order 113-4829301-5520617, please use the official path: Your Account > \
             Your Orders > Request cancellation. We will confirm the cancellation as soon as \
             the request reaches us.",
        ),
        (
            "en refund",
            BuyerReply,
            "We have refunded $24.99 to your original payment method for order \
             113-4829301-5520617. Thank you for your feedback, and sorry about the damaged box.",
        ),
        (
            "en refund and feedback in one sentence",
            BuyerReply,
            "Thank you for your feedback, we have issued a full refund of $24.99 (USD 24.99).",
        ),
        (
            "en review in another sense",
            BuyerReply,
            "We will review your return request today and refund you as soon as the parcel \
             is back with us. Please review the enclosed return label before sending.",
        ),
        (
            "en ghost order",
            BuyerReply,
            "We could not find an order with the number you sent: 1Z999AA10123456784 is a UPS \
             tracking number. Could you send us the Amazon order ID? It has the format \
             123-1234567-1234567 (3-7-7 digits) and is shown under Your Orders.",
        ),
        (
            "en numbers that are not phones",
            BuyerReply,
            "Order #1001 holds 2 x 3 m of cable, ZIP 90210, item B08N5WRWNW, 1,234.56 USD in \
             total, eBay order 12-34567-89012, delivery 5-7 business days, 10:00-18:00, \
             2023/2024, reference 20240512-0042.",
        ),
        (
            "en typography that is not emoji",
            BuyerReply,
            "Brand® Cable™ © 2024 – 2 × 3 m → ships today. ▪ Replacement ✓ done * see below.",
        ),
        (
            "en delivered with time",
            ConfirmDeliveryDetails,
            "Your parcel was delivered on 2024-05-12 at 14:30 to the address on the order.",
        ),
        (
            "en access key",
            DigitalAccessKey,
            "Your access key for order 113-4829301-5520617 is ABCD-EFGH-IJKL-MNOP. Enter it \
             in the app under Settings > Licence.",
        ),
        (
            "en a < b",
            BuyerReply,
            "If the width is < 30 cm or the weight > 2 kg, it ships as a parcel. <3 is not a tag.",
        ),
        (
            "en gets back after real news",
            BuyerReply,
            "We have asked DHL to trace the parcel and will get back to you as soon as they \
             reply, at the latest on Friday.",
        ),
        (
            "en look-alikes of forbidden phrases",
            BuyerReply,
            "The carrier will contact you within 24 hours to schedule the delivery. Sellers \
             like us cannot see your payment details. Use the code in Amazon's e-mail to open \
             the locker. Our shop is closed on Sunday, so your order ships on Monday. Please \
             see our store's return policy. Please leave the parcel with a neighbour. Thanks \
             for leaving feedback last time. Feel free to contact us through Amazon messages.",
        ),
        (
            "de pending",
            BuyerReply,
            "Hallo,\n\nvielen Dank für Ihre Nachricht zur Bestellung 302-1234567-7654321. Die \
             Bestellung ist noch „ausstehend“, weil Amazon die Zahlung prüft. Das ist ein \
             normaler Vorgang, Ihre Bestellung ist sicher. Bitte sehen Sie unter „Meine \
             Bestellungen“ nach, ob Amazon einen Zahlungshinweis anzeigt.\n\nMit freundlichen Grüßen",
        ),
        (
            "de dhl parcel",
            BuyerReply,
            "Ihr Paket ist heute in der Zustellung: \
             https://www.dhl.de/de/privatkunden/pakete-empfangen/verfolgen.html?piececode=00340434161094042557 \
             – die Sendungsnummer lautet 00340434161094042557.",
        ),
        (
            "de refund",
            BuyerReply,
            "Wir haben Ihnen 24,99 € für die Bestellung 302-1234567-7654321 erstattet. Die \
             Gutschrift erscheint in 3–5 Werktagen auf Ihrem Konto. Danke für Ihr Feedback.",
        ),
        (
            "de cancellation",
            BuyerReply,
            "Bitte beantragen Sie die Stornierung selbst: Mein Konto > Meine Bestellungen > \
             Stornierung anfordern. Wir bestätigen sie, sobald sie bei uns eingeht.",
        ),
        (
            "de ghost order",
            BuyerReply,
            "Unter dieser Nummer finden wir leider keine Bestellung. Bitte senden Sie uns die \
             Amazon-Bestellnummer im Format 123-1234567-1234567 (3-7-7 Ziffern) und den Namen \
             auf der Bestellung. Die Lieferung erfolgte am 12.05.2024 an 10115 Berlin.",
        ),
        (
            "de will report back",
            BuyerReply,
            "Wir prüfen Ihre Reklamation und melden uns, sobald DHL geantwortet hat. Bitte \
             geben Sie uns Feedback, ob das Ersatzkabel funktioniert.",
        ),
        (
            "fr pending",
            BuyerReply,
            "Bonjour,\n\nmerci pour votre message concernant la commande 405-1234567-7654321. \
             Votre commande est en attente pendant qu’Amazon vérifie le paiement ; elle est en \
             sécurité. Consultez « Vos commandes » pour voir si Amazon affiche une alerte de \
             paiement.\n\nCordialement",
        ),
        (
            "fr colissimo parcel",
            BuyerReply,
            "Votre colis est en cours de livraison : \
             https://www.laposte.fr/outils/suivre-vos-envois?code=6A12345678901. Le livreur a \
             laissé un avis de passage si vous étiez absent ; il peut aussi laisser un avis de \
             passage demain. Vous pouvez laisser une note au livreur.",
        ),
        (
            "fr refund",
            BuyerReply,
            "Nous avons remboursé 24,99 € sur votre moyen de paiement. Merci pour votre avis \
             sur l’emballage, nous allons l’améliorer.",
        ),
        (
            "fr cancellation",
            BuyerReply,
            "Pour annuler, passez par Votre compte > Vos commandes > Demander l’annulation.",
        ),
        (
            "fr ghost order",
            BuyerReply,
            "Pourriez-vous nous envoyer le numéro de commande Amazon (format \
             123-1234567-1234567) ? Nous ne trouvons aucune commande à ce numéro.",
        ),
        (
            "es pending",
            BuyerReply,
            "Hola:\n\ngracias por su mensaje sobre el pedido 171-1234567-7654321. Su pedido está \
             pendiente mientras Amazon verifica el pago; el pedido está seguro. Revise «Mis \
             pedidos» por si Amazon muestra un aviso de pago.\n\nUn saludo",
        ),
        (
            "es seur parcel",
            BuyerReply,
            "Su paquete está en reparto: https://www.seur.com/livetracking/?segOnlineIdentificador=12345678901234",
        ),
        (
            "es refund",
            BuyerReply,
            "Le hemos reembolsado 24,99 € del pedido 171-1234567-7654321. Revisaremos su \
             solicitud de devolución en cuanto recibamos el paquete; sin novedades por ahora.",
        ),
        (
            "es cancellation",
            BuyerReply,
            "Para cancelar el pedido: Mi cuenta > Mis pedidos > Solicitar cancelación.",
        ),
        (
            "es ghost order",
            BuyerReply,
            "No encontramos ningún pedido con ese número. ¿Nos puede enviar el número de \
             pedido de Amazon (formato 123-1234567-1234567)?",
        ),
        (
            "it pending",
            BuyerReply,
            "Buongiorno,\n\ngrazie per il suo messaggio sull’ordine 404-1234567-7654321. \
             L’ordine è in sospeso mentre Amazon verifica il pagamento; è al sicuro. Controlli \
             «I miei ordini» per eventuali avvisi di pagamento.\n\nCordiali saluti",
        ),
        (
            "it poste parcel",
            BuyerReply,
            "Il pacco è in consegna: https://www.poste.it/cerca/index.html#/risultati-spedizioni/RR123456789IT",
        ),
        (
            "it refund",
            BuyerReply,
            "Abbiamo rimborsato 24,99 € per l’ordine 404-1234567-7654321. Verificheremo la \
             sua richiesta di reso entro venerdì; il saldo resta invariato, nessuna novità.",
        ),
        (
            "it courier notice",
            BuyerReply,
            "Il corriere ha lasciato un avviso di passaggio. Non ci sono novità sulla \
             spedizione dal 12/05/2024.",
        ),
        (
            "it cancellation",
            BuyerReply,
            "Per annullare: Il mio account > I miei ordini > Richiedi cancellazione.",
        ),
        (
            "it ghost order",
            BuyerReply,
            "Non troviamo nessun ordine con questo numero. Può inviarci il numero d’ordine \
             Amazon (formato 123-1234567-1234567)?",
        ),
    ];

    #[test]
    fn compliant_messages_pass() {
        for (name, kind, text) in COMPLIANT {
            for policy in [Policy::Amazon, Policy::Baseline] {
                let violations = lint(text, policy, *kind);
                assert!(
                    violations.is_empty(),
                    "{name} ({policy:?}, {kind:?}): {violations:#?}"
                );
            }
        }
    }

    // -- messages that must not go out ---------------------------------------------------

    /// (name, text, check, line): exactly one violation under Amazon's policy for a reply.
    const VIOLATING: &[(&str, &str, Check, usize)] = &[
        // Links
        (
            "look-alike suffix",
            "Track it here: https://www.ups.com.evil.io/track?tracknum=1Z999AA10123456784",
            Check::Link,
            1,
        ),
        (
            "look-alike prefix",
            "Hello,\nTrack it: https://evil-ups.com/track",
            Check::Link,
            2,
        ),
        (
            "userinfo disguise",
            "Track: https://ups.com@evil.io/track",
            Check::Link,
            1,
        ),
        ("glued prefix", "Track: http://myups.com/x", Check::Link, 1),
        (
            "bare www",
            "More at www.mystore.com for details.",
            Check::Link,
            1,
        ),
        (
            "bare domain with path",
            "Returns: mystore.shop/returns",
            Check::Link,
            1,
        ),
        (
            "shortener",
            "Tracking: https://bit.ly/3xYzAbC",
            Check::Link,
            1,
        ),
        (
            "amazon product page",
            "The item: https://www.amazon.com/dp/B08N5WRWNW",
            Check::Link,
            1,
        ),
        (
            "amazon look-alike",
            "Track: https://www.amazon.com.evil.io/progress-tracker/x",
            Check::Link,
            1,
        ),
        ("ftp", "Invoice: ftp://ups.com/track", Check::Link, 1),
        (
            "port",
            "Track: https://www.ups.com:8443/track",
            Check::Link,
            1,
        ),
        (
            "ip host",
            "Track: http://192.168.1.10/track",
            Check::Link,
            1,
        ),
        // Contact details
        (
            "email",
            "Write to support@mystore.com instead.",
            Check::Email,
            1,
        ),
        (
            "email relay address",
            "Reply to\nab12cd@marketplace.amazon.com",
            Check::Email,
            2,
        ),
        (
            "email spelled out",
            "Contact: support [at] mystore [dot] com",
            Check::Email,
            1,
        ),
        ("phone us", "Call us: +1 (555) 123-4567", Check::Phone, 1),
        (
            "phone us national",
            "Call us at (555) 123-4567.",
            Check::Phone,
            1,
        ),
        (
            "phone us toll free",
            "Call 1-800-555-0199 today.",
            Check::Phone,
            1,
        ),
        (
            "phone 00 prefix",
            "Rufen Sie uns an: 0049 30 1234567",
            Check::Phone,
            1,
        ),
        (
            "phone de national",
            "Telefon: 030 1234 5678",
            Check::Phone,
            1,
        ),
        ("phone de slash", "Tel. 030/1234567", Check::Phone, 1),
        ("phone de mobile", "Mobil:\n0171-1234567", Check::Phone, 2),
        ("phone fr", "Appelez le 06 12 34 56 78.", Check::Phone, 1),
        (
            "phone fr dots",
            "Appelez le 06.12.34.56.78.",
            Check::Phone,
            1,
        ),
        ("phone uk", "Ring 020 7946 0958.", Check::Phone, 1),
        ("phone es", "Llámenos al 912 345 678.", Check::Phone, 1),
        ("phone it", "Chiamaci al 347 123 4567.", Check::Phone, 1),
        (
            "phone it mobile",
            "Chiamaci al 347 1234567.",
            Check::Phone,
            1,
        ),
        ("phone plus", "WhatsApp: +4915112345678", Check::Phone, 1),
        (
            "phone trunk in brackets",
            "Kontakt: +49 (0)30 1234567",
            Check::Phone,
            1,
        ),
        (
            "phone dashes after 00",
            "Tel.: 0049-30-1234567",
            Check::Phone,
            1,
        ),
        ("phone us dots", "Call me at 555.123.4567", Check::Phone, 1),
        // HTML
        (
            "html br",
            "Your order is on its way.<br>Thanks",
            Check::Html,
            1,
        ),
        (
            "html bold",
            "Line one\n<b>Important</b> news",
            Check::Html,
            2,
        ),
        ("html entity", "Price &amp; shipping", Check::Html, 1),
        ("html unterminated img", "See <img src=x", Check::Html, 1),
        // Marketing
        (
            "promo code",
            "Use promo code SAVE10 with your next purchase.",
            Check::Marketing,
            1,
        ),
        (
            "percent off",
            "Get 20% off all cables this week.",
            Check::Marketing,
            1,
        ),
        (
            "other products",
            "Check out our other products!",
            Check::Marketing,
            1,
        ),
        (
            "newsletter",
            "Abonnieren Sie unseren Newsletter.",
            Check::Marketing,
            1,
        ),
        (
            "de voucher",
            "Als Entschuldigung erhalten Sie einen Gutschein.",
            Check::Marketing,
            1,
        ),
        (
            "de shop",
            "Besuchen Sie gerne unseren Shop.",
            Check::Marketing,
            1,
        ),
        (
            "fr follow",
            "Suivez-nous sur Instagram !",
            Check::Marketing,
            1,
        ),
        ("fr code", "Votre code promo : MERCI10", Check::Marketing, 1),
        (
            "es store",
            "Visite nuestra tienda para más ofertas.",
            Check::Marketing,
            1,
        ),
        (
            "es discount",
            "Un 15 % de descuento en su próximo pedido.",
            Check::Marketing,
            1,
        ),
        (
            "it newsletter",
            "Iscriviti alla nostra newsletter.",
            Check::Marketing,
            1,
        ),
        (
            "it sale",
            "Approfitta delle nostre offerte speciali.",
            Check::Marketing,
            1,
        ),
        // Review requests
        (
            "en five stars",
            "If you are happy, please leave us a 5-star review.",
            Check::ReviewRequest,
            1,
        ),
        (
            "en feedback",
            "Please leave feedback for us.",
            Check::ReviewRequest,
            1,
        ),
        (
            "en update review",
            "Could you update your review?",
            Check::ReviewRequest,
            1,
        ),
        (
            "en steering",
            "Please contact us before leaving negative feedback.",
            Check::ReviewRequest,
            1,
        ),
        (
            "de review",
            "Bitte hinterlassen Sie uns eine positive Bewertung.",
            Check::ReviewRequest,
            1,
        ),
        (
            "de stars",
            "Wir freuen uns über 5 Sterne.",
            Check::ReviewRequest,
            1,
        ),
        (
            "fr review",
            "N’hésitez pas à nous laisser un avis positif.",
            Check::ReviewRequest,
            1,
        ),
        (
            "fr opinion",
            "Donnez-nous votre avis !",
            Check::ReviewRequest,
            1,
        ),
        (
            "es review",
            "Déjenos una reseña de 5 estrellas.",
            Check::ReviewRequest,
            1,
        ),
        (
            "it review",
            "Ci lasci una recensione positiva.",
            Check::ReviewRequest,
            1,
        ),
        (
            "wrapped over two lines",
            "Please leave us a\nreview on Amazon.",
            Check::ReviewRequest,
            1,
        ),
        (
            "hidden with a zero-width space",
            "Please leave a rev\u{200B}iew.",
            Check::ReviewRequest,
            1,
        ),
        // Emoji
        ("emoji", "Thanks 😊", Check::Emoji, 1),
        ("emoji skin tone", "Line one\nGreat 👍🏽", Check::Emoji, 2),
        ("emoji family", "Family 👨‍👩‍👧 pack", Check::Emoji, 1),
        ("emoji flag", "Made in 🇩🇪", Check::Emoji, 1),
        ("emoji keycap", "Step 1️⃣ first", Check::Emoji, 1),
        (
            "emoji text default heart",
            "With ❤ from us",
            Check::Emoji,
            1,
        ),
        ("emoji check mark", "Shipped ✔", Check::Emoji, 1),
        ("emoji with selector", "Copyright ©️ us", Check::Emoji, 1),
        ("emoji row", "Yay 🎉🎉🎉", Check::Emoji, 1),
        // Auto-responder
        (
            "received and get back",
            "Thank you for your message, we will get back to you shortly.",
            Check::AutoResponder,
            1,
        ),
        (
            "received",
            "Hello,\n\nwe have received your message and will get back to you.",
            Check::AutoResponder,
            3,
        ),
        (
            "away",
            "I am currently out of the office until Monday.",
            Check::AutoResponder,
            1,
        ),
        (
            "team back soon",
            "Our team will get back to you shortly.",
            Check::AutoResponder,
            1,
        ),
        (
            "in touch within",
            "We'll be in touch within 2 days.",
            Check::AutoResponder,
            1,
        ),
        (
            "automated",
            "This is an automated message.",
            Check::AutoResponder,
            1,
        ),
        (
            "respond within",
            "We will respond within 24 hours.",
            Check::AutoResponder,
            1,
        ),
        (
            "de received",
            "Wir haben Ihre Nachricht erhalten.",
            Check::AutoResponder,
            1,
        ),
        (
            "de back soon",
            "Vielen Dank für Ihre Nachricht, wir melden uns schnellstmöglich.",
            Check::AutoResponder,
            1,
        ),
        (
            "de away",
            "Wir sind derzeit im Urlaub.",
            Check::AutoResponder,
            1,
        ),
        (
            "fr received",
            "Nous avons bien reçu votre message.",
            Check::AutoResponder,
            1,
        ),
        (
            "fr back soon",
            "Nous reviendrons vers vous dans les plus brefs délais.",
            Check::AutoResponder,
            1,
        ),
        (
            "es received",
            "Hemos recibido su mensaje.",
            Check::AutoResponder,
            1,
        ),
        ("es away", "Estamos de vacaciones.", Check::AutoResponder, 1),
        (
            "it received",
            "Abbiamo ricevuto il suo messaggio.",
            Check::AutoResponder,
            1,
        ),
        (
            "it automatic",
            "Questa è una risposta automatica.",
            Check::AutoResponder,
            1,
        ),
    ];

    #[test]
    fn violating_messages_fail_exactly_once() {
        for (name, text, check, line) in VIOLATING {
            let got = checks(text, Policy::Amazon, BuyerReply);
            assert_eq!(got, [(*check, *line)], "{name}: {text:?}");
        }
    }

    #[test]
    fn incentives_for_reviews_fail_under_every_policy() {
        let texts = [
            "Leave a review and we will refund the full price.",
            "We'll send you a free gift for a review.",
            "Get a $10 gift card in exchange for your honest review.",
            "Schreiben Sie eine Bewertung und Sie erhalten einen Gutschein.",
            "Recevez un cadeau pour un avis sur Amazon.",
            "Le regalamos un cupón a cambio de una reseña.",
            "Un buono sconto in cambio di una recensione.",
        ];
        for text in texts {
            for policy in [Policy::Amazon, Policy::Baseline] {
                let got = lint(text, policy, BuyerReply);
                // Amazon also counts the coupon or voucher as marketing; the review part
                // is what both policies share.
                let reviews: Vec<&Violation> = got
                    .iter()
                    .filter(|v| v.check == Check::ReviewRequest)
                    .collect();
                let [review] = reviews.as_slice() else {
                    panic!("{text} ({policy:?}): {got:#?}");
                };
                assert!(review.message.contains("value"), "{text}: {review:?}");
                assert!(
                    got.iter()
                        .all(|v| matches!(v.check, Check::ReviewRequest | Check::Marketing)),
                    "{text} ({policy:?}): {got:#?}"
                );
            }
        }
    }

    #[test]
    fn baseline_checks_only_the_common_rules() {
        let allowed_by_baseline = [
            "Use promo code SAVE10 on your order.",
            "Please leave us a 5-star review.",
            "More at https://www.mystore.com/help.",
            "We have received your message and will get back to you shortly.",
        ];
        for text in allowed_by_baseline {
            assert_eq!(checks(text, Policy::Baseline, BuyerReply), [], "{text}");
        }
        let long = "a".repeat(5000);
        assert_eq!(checks(&long, Policy::Baseline, DigitalAccessKey), []);
        let refused = [
            ("<p>Hello</p>", Check::Html),
            ("Write to a@b.com", Check::Email),
            ("Call +44 20 7946 0958", Check::Phone),
            ("Thanks 🙏", Check::Emoji),
            (" \n ", Check::Empty),
        ];
        for (text, check) in refused {
            assert_eq!(
                checks(text, Policy::Baseline, BuyerReply),
                [(check, 1)],
                "{text}"
            );
        }
    }

    #[test]
    fn auto_responder_phrasing_is_checked_only_in_replies() {
        let text = "We have received your message and will get back to you shortly.";
        assert_eq!(
            checks(text, Policy::Amazon, BuyerReply),
            [(Check::AutoResponder, 1)]
        );
        for kind in MessageKind::ALL.into_iter().filter(|k| *k != BuyerReply) {
            assert_eq!(checks(text, Policy::Amazon, kind), [], "{kind:?}");
        }
    }

    #[test]
    fn empty_texts() {
        for text in ["", "   ", "\n\t \r\n", "\u{200B}\u{FEFF}", "\u{A0}"] {
            for policy in [Policy::Amazon, Policy::Baseline] {
                let got = lint(text, policy, ConfirmOrderDetails);
                let [only] = got.as_slice() else {
                    panic!("{text:?}: {got:#?}");
                };
                assert_eq!((only.check, only.line), (Check::Empty, 1), "{text:?}");
            }
        }
    }

    // -- links ---------------------------------------------------------------------------

    #[test]
    fn carrier_tracking_links() {
        let allowed = [
            "https://www.ups.com/track?loc=en_US&tracknum=1Z999AA10123456784",
            "https://wwwapps.ups.com/WebTracking/track?track=yes&trackNums=1Z999AA10123456784",
            "http://www.dhl.com/en/express/tracking.html?brand=DHL&AWB=1234567890",
            "https://nolp.dhl.de/nextt-online-public/set_identcodes.do?idc=00340434161094042557",
            "https://www.fedex.com/apps/fedextrack/?tracknumbers=774912345678",
            "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400111899223100000000",
            "https://www.canadapost-postescanada.ca/track-reperage/en#/search?searchFor=1234",
            "https://www.dpdgroup.com/nl/mydpd/my-parcels/track?parcelNumber=01234567890123",
            "https://tracking.dpd.de/status/de_DE/parcel/01234567890123",
            "https://www.royalmail.com/track-your-item#/tracking-results/AB123456789GB",
            "HTTPS://WWW.UPS.COM/track",
            "https://www.ups.com./track",
            "https://www.amazon.com/progress-tracker/package/ref=ppx?orderId=113-4829301-5520617",
            "https://www.amazon.de/gp/your-account/ship-track?itemId=abc&orderId=302-1234567-7654321",
            "https://amazon.co.uk/progress-tracker",
            "https://track.amazon.it/tracking/TBA123456789000",
        ];
        for url in allowed {
            assert!(is_carrier_tracking_link(url), "{url}");
        }
        let refused = [
            "https://ups.com.evil.io/track",
            "https://evil-ups.com/track",
            "https://myups.com/track",
            "https://ups.co/track",
            "https://ups.com@evil.io/track",
            "https://user:pass@ups.com/track",
            "https://www.ups.com:8443/track",
            "ftp://ups.com/track",
            "javascript:alert(1)",
            "https://evil.io/?next=https://ups.com/track",
            "https://evil.io/ups.com/track",
            "http://192.0.2.1/track",
            "www.ups.com/track",
            "not a url",
            "",
            "https://www.amazon.com/dp/B08N5WRWNW",
            "https://www.amazon.com/progress-trackerx",
            "https://amazon.evil.io/progress-tracker",
            "https://evilamazon.com/progress-tracker",
            "https://www.amazon.com.evil.io/progress-tracker",
            "https://track.amazon.com.evil.io/x",
            "https://sellercentral.amazon.com/progress-tracker",
            "https://17track.net/en/track?nums=1Z999AA10123456784",
        ];
        for url in refused {
            assert!(!is_carrier_tracking_link(url), "{url}");
        }
    }

    #[test]
    fn tracking_links_only_where_the_message_type_allows_them() {
        let text = "Tracking: https://www.ups.com/track?tracknum=1Z999AA10123456784";
        for kind in MessageKind::ALL {
            let got = checks(text, Policy::Amazon, kind);
            if kind.allows_tracking_links() {
                assert_eq!(got, [], "{kind:?}");
            } else {
                assert_eq!(got, [(Check::Link, 1)], "{kind:?}");
            }
        }
    }

    #[test]
    fn words_with_a_full_stop_are_not_links() {
        for text in [
            "We shipped your order.Thanks for waiting.",
            "Mr.Smith signed for it.",
            "See the attached invoice.pdf for details.",
            "Your order.To cancel it, use Your Orders.",
            "Ordered on Amazon.de and Amazon.co.uk.",
        ] {
            assert_eq!(checks(text, Policy::Amazon, BuyerReply), [], "{text}");
        }
        assert_eq!(
            checks("Ordered via mystore.de today", Policy::Amazon, BuyerReply),
            [(Check::Link, 1)]
        );
    }

    #[test]
    fn a_link_inside_html_is_both() {
        let got = checks(
            "<a href=\"https://evil.io/x\">track</a>",
            Policy::Amazon,
            BuyerReply,
        );
        assert_eq!(got, [(Check::Html, 1), (Check::Link, 1)]);
    }

    // -- phones --------------------------------------------------------------------------

    #[test]
    fn numbers_that_are_not_phone_numbers() {
        for text in [
            "Order 113-4829301-5520617",
            "Order 028-1234567-1234567 and 113-4829301-5520617",
            "Tracking 1Z999AA10123456784",
            "Tracking 1Z 999 AA1 0123 4567 84",
            "USPS 9400 1118 9922 3100 0000 00",
            "DHL 00340434161094042557 or 00 3404 3416 1094 0425 57",
            "DPD 0150 0123 4567 89",
            "FedEx 774912345678 / 7749 1234 5678",
            "DHL Express 1234567890",
            "Dates 2024-05-12, 12.05.2024, 05/12/2024, 12/05/24",
            "Prices $24.99, 24,99 €, EUR 1.234,56, 1 234,56 €, £1,299.00, 1.299.000",
            "Postcodes 10115 Berlin, 75008 Paris, SW1A 1AA, K1A 0B1, 90210",
            "IBAN DE89 3704 0044 0532 0130 00",
            "2 x 3, 3-7-7, 5-7 days, 10:00 - 18:00, 1/2 price, 0.5 kg, +5 days, 20 %",
            "Invoice RE-2024-0301234567, EAN 4 006381 333931",
            "Partial order id 113-4829301",
        ] {
            let got: Vec<Violation> = lint(text, Policy::Amazon, BuyerReply)
                .into_iter()
                .filter(|v| v.check == Check::Phone)
                .collect();
            assert!(got.is_empty(), "{text}: {got:#?}");
        }
    }

    #[test]
    fn a_phone_between_numbers_that_are_not() {
        let text = "Order 113-4829301-5520617, call 030 1234 5678, total 24,99 €";
        let got = lint(text, Policy::Amazon, BuyerReply);
        let [phone] = got.as_slice() else {
            panic!("{got:#?}");
        };
        assert_eq!(phone.check, Check::Phone);
        assert_eq!(phone.excerpt, "030 1234 5678");
    }

    #[test]
    fn phone_inside_a_tracking_link_is_not_a_phone() {
        let text = "https://www.ups.com/track?tracknum=1Z999AA10123456784&ref=030-1234567";
        assert_eq!(checks(text, Policy::Amazon, BuyerReply), []);
    }

    // -- emoji, length, lines, excerpts --------------------------------------------------

    #[test]
    fn emoji_components_alone_are_not_emoji() {
        for text in [
            "Order #1001",
            "2 x 3 = 6",
            "*Note*: 0-9 # *",
            "Brand® ™ © ‼ ↔ ▪ ▶",
            "Text style ☺\u{FE0E} smiley",
        ] {
            assert_eq!(checks(text, Policy::Amazon, BuyerReply), [], "{text}");
        }
    }

    #[test]
    fn length_per_kind_counts_characters_not_bytes() {
        for kind in MessageKind::ALL {
            let max = kind.max_chars();
            // 'é' is two bytes: counting bytes would fail at half the limit.
            let at_limit = "é".repeat(max);
            assert_eq!(checks(&at_limit, Policy::Amazon, kind), [], "{kind:?}");
            let over = "é".repeat(max + 1);
            let got = lint(&over, Policy::Amazon, kind);
            let [only] = got.as_slice() else {
                panic!("{kind:?}: {got:#?}");
            };
            assert_eq!((only.check, only.line), (Check::Length, 1), "{kind:?}");
            assert!(only.message.contains(&max.to_string()), "{}", only.message);
        }
    }

    #[test]
    fn length_is_reported_on_the_line_where_the_limit_is_passed() {
        // 399 characters, then a line break (the 400th), then the overflow on line 2.
        let text = format!("{}\nmore", "a".repeat(399));
        assert_eq!(
            checks(&text, Policy::Amazon, DigitalAccessKey),
            [(Check::Length, 2)]
        );
    }

    #[test]
    fn multi_line_message_reports_each_line() {
        let text = "Hello,\n\nyour parcel:\nhttps://evil.io/x\n\nCall +44 20 7946 0958 😊\n\
                    <b>Thanks</b>";
        assert_eq!(
            checks(text, Policy::Amazon, BuyerReply),
            [
                (Check::Link, 4),
                (Check::Phone, 6),
                (Check::Emoji, 6),
                (Check::Html, 7),
            ]
        );
    }

    #[test]
    fn phrases_on_one_line_are_one_violation_and_excerpts_are_short() {
        let text = "Follow us on Instagram and subscribe to our newsletter for coupons!";
        let got = lint(text, Policy::Amazon, BuyerReply);
        let [only] = got.as_slice() else {
            panic!("{got:#?}");
        };
        assert_eq!(only.check, Check::Marketing);
        assert!(only.excerpt.starts_with("Follow us"), "{}", only.excerpt);
        assert!(only.excerpt.chars().count() <= EXCERPT_MAX);

        let long_link = format!("https://evil.io/{}", "x".repeat(200));
        for v in lint(&long_link, Policy::Amazon, BuyerReply) {
            assert!(v.excerpt.chars().count() <= EXCERPT_MAX, "{v:?}");
        }
    }

    #[test]
    fn excerpt_shows_the_offending_bit() {
        let got = lint(
            "Hi,\nsee https://evil-ups.com/track now",
            Policy::Amazon,
            BuyerReply,
        );
        let [link] = got.as_slice() else {
            panic!("{got:#?}");
        };
        assert_eq!(link.excerpt, "https://evil-ups.com/track");
        assert!(link.message.contains("evil-ups.com"), "{}", link.message);
        assert_eq!(
            link.to_string(),
            format!(
                "line 2: link: {} (\"https://evil-ups.com/track\")",
                link.message
            )
        );
    }

    #[test]
    fn accents_and_case_do_not_hide_phrases() {
        for text in [
            "NOUS AVONS BIEN REÇU VOTRE MESSAGE.",
            "Nous avons bien rec\u{327}u votre message.",
            "WIR HABEN IHRE NACHRICHT ERHALTEN.",
        ] {
            assert_eq!(
                checks(text, Policy::Amazon, BuyerReply),
                [(Check::AutoResponder, 1)],
                "{text}"
            );
        }
    }

    #[test]
    fn the_same_text_gets_the_same_answer() {
        let text = "Call +1 (555) 123-4567 😊 https://evil.io <b>x</b> coupon";
        let first = lint(text, Policy::Amazon, BuyerReply);
        assert!(!first.is_empty());
        for _ in 0..3 {
            assert_eq!(lint(text, Policy::Amazon, BuyerReply), first);
        }
    }
}
