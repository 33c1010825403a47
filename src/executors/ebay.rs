//! Ebay's refunds and cancellations, performed for the outbox. (Not built yet: every
//! action is held for a person.)

use async_trait::async_trait;

use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::model::ActionRequest;
use crate::sources::ebay::EbaySource;

/// Acts on one Ebay account.
#[derive(Debug)]
pub struct EbayExecutor {
    account: String,
}

impl EbayExecutor {
    pub fn new(source: &EbaySource) -> Self {
        use crate::sources::OrderSource;
        Self {
            account: source.key().to_owned(),
        }
    }
}

#[async_trait]
impl ActionExecutor for EbayExecutor {
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
