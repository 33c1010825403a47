//! ebay refunds and cancellations (tests to come).
