//! Shopify's refunds and cancellations, performed for the outbox. (Not built yet: every
//! action is held for a person.)

use async_trait::async_trait;

use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::model::ActionRequest;
use crate::sources::shopify::ShopifySource;

/// Acts on one Shopify account.
#[derive(Debug)]
pub struct ShopifyExecutor {
    account: String,
}

impl ShopifyExecutor {
    pub fn new(source: &ShopifySource) -> Self {
        use crate::sources::OrderSource;
        Self {
            account: source.key().to_owned(),
        }
    }
}

#[async_trait]
impl ActionExecutor for ShopifyExecutor {
    fn safety(&self, _request: &ActionRequest) -> Safety {
        Safety::VerifyThenRetry
    }

    async fn perform(&self, attempt: &mut Attempt<'_>) -> Result<Performed, ActionError> {
        Err(ActionError::Held(format!(
            "{} actions on {} are not built yet; do it in the seller console, then reject this action",
            attempt.request.kind(),
            self.account
        )))
    }
}
