//! The byte budget of one response. Limits count fields, not bytes: an event's content can be
//! 64 KiB, so a query within every field limit could still build hundreds of megabytes. Reads
//! charge the text they load, and resolvers the text they return, each up to the limit; past
//! it the response is refused as a whole (`RESPONSE_TOO_LARGE`), and what was built is dropped.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::error::{AppError, AppResult};

#[derive(Debug)]
pub struct ResponseBudget {
    limit: usize,
    loaded: AtomicUsize,
    returned: AtomicUsize,
    exceeded: AtomicBool,
}

impl ResponseBudget {
    pub fn new(limit: usize) -> ResponseBudget {
        ResponseBudget {
            limit,
            loaded: AtomicUsize::new(0),
            returned: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
        }
    }

    /// Text a resolver returns; once the budget runs out, this and every later charge fail.
    pub fn charge(&self, bytes: usize) -> AppResult<()> {
        self.take(&self.returned, bytes)
    }

    /// Rows a read loads for the response (what it holds in memory while the response is built).
    pub fn charge_loaded(&self, bytes: usize) -> AppResult<()> {
        self.take(&self.loaded, bytes)
    }

    fn take(&self, counter: &AtomicUsize, bytes: usize) -> AppResult<()> {
        let used = counter
            .fetch_add(bytes, Ordering::Relaxed)
            .saturating_add(bytes);
        if used > self.limit || self.exceeded.load(Ordering::Relaxed) {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(self.error());
        }
        Ok(())
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    pub fn error(&self) -> AppError {
        AppError::ResponseTooLarge(self.limit)
    }
}

/// What a stored event costs a response: its text and a fixed share for the rest of the row.
pub fn event_bytes(event: &crate::entity::incident_event::Model) -> usize {
    EVENT_OVERHEAD + event.content.as_ref().map_or(0, String::len)
}

/// Ids, times, type and sequence of an event as JSON, roughly.
const EVENT_OVERHEAD: usize = 200;

#[cfg(test)]
mod tests {
    use super::ResponseBudget;

    #[test]
    fn the_budget_runs_out_once_and_stays_out() {
        let budget = ResponseBudget::new(100);
        assert!(budget.charge(60).is_ok());
        assert!(
            budget.charge_loaded(90).is_ok(),
            "loading and returning count apart"
        );
        assert!(!budget.exceeded());
        assert!(budget.charge(41).is_err());
        assert!(budget.exceeded());
        assert!(budget.charge(0).is_err(), "sticky");
    }
}
