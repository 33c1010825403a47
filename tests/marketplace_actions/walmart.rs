//! walmart refunds and cancellations (tests to come).
