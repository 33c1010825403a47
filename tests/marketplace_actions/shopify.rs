//! shopify refunds and cancellations (tests to come).
