//! Refunds and cancellations on Shopify, eBay and Walmart, performed through the outbox
//! against the sandbox's fakes: each path, its safety class, and what an ambiguous
//! answer leads to. One test binary, one module per marketplace.

#[path = "common/mod.rs"]
mod common;
#[path = "common/openapi.rs"]
mod openapi;

#[path = "marketplace_actions/ebay.rs"]
mod ebay;
#[path = "marketplace_actions/shopify.rs"]
mod shopify;
#[path = "marketplace_actions/support.rs"]
mod support;
#[path = "marketplace_actions/walmart.rs"]
mod walmart;
