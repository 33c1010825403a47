//! Walmart's refunds and cancellations, performed for the outbox. (Not built yet: every
//! action is held for a person.)

use async_trait::async_trait;

use crate::executors::{ActionError, ActionExecutor, Attempt, Performed, Safety};
use crate::model::ActionRequest;
use crate::sources::walmart::WalmartSource;

/// Acts on one Walmart account.
#[derive(Debug)]
pub struct WalmartExecutor {
    account: String,
}

impl WalmartExecutor {
    pub fn new(source: &WalmartSource) -> Self {
        use crate::sources::OrderSource;
        Self {
            account: source.key().to_owned(),
        }
    }
}

#[async_trait]
impl ActionExecutor for WalmartExecutor {
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
