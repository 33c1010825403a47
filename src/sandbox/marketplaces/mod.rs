//! The other marketplaces' fakes: Shopify, eBay and Walmart, each under its own path
//! prefix, written from their published contracts (`specs/ebay`, `specs/walmart`) and
//! Shopify's documented Admin GraphQL API.

pub mod ebay;
pub mod shopify;
pub mod walmart;

/// The path prefixes (first segment) the marketplaces answer under.
pub(crate) const PREFIXES: [&str; 3] = ["shopify", "ebay", "walmart"];

/// The operation a request under a marketplace prefix is, if known.
pub(crate) fn classify(method: &str, prefix: &str, rest: &[&str]) -> Option<&'static str> {
    match prefix {
        "shopify" => shopify::classify(method, rest),
        "ebay" => ebay::classify(method, rest),
        "walmart" => walmart::classify(method, rest),
        _ => None,
    }
}

pub(in crate::sandbox) fn routes(
    router: axum::Router<std::sync::Arc<super::Shared>>,
) -> axum::Router<std::sync::Arc<super::Shared>> {
    walmart::routes(ebay::routes(shopify::routes(router)))
}
