//! Refunds and cancellations on Shopify, eBay and Walmart, performed through the outbox
//! against the sandbox's fakes: each path, its safety class, and what an ambiguous
//! answer leads to. One test binary, one module per marketplace.

#[path = "common/mod.rs"]
mod common;

mod ebay;
mod shopify;
mod walmart;
