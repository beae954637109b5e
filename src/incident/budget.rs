//! The byte budget of one response, and the server's budget of bytes in flight. Limits count
//! fields, not bytes: an event's content can be 64 KiB, so a query within every field limit
//! could still build hundreds of megabytes. Reads charge the text they load, and resolvers the
//! text they return before they copy it, each up to the limit; past it the response is refused
//! as a whole (`RESPONSE_TOO_LARGE`), and what was built is dropped. A request therefore holds
//! at most about twice its budget. Every charge is also taken from the server's budget, shared
//! by all requests in flight; when that runs out the request answers `BUSY` (retry) instead of
//! growing the process further.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::{AppError, AppResult};

/// The bytes every response in flight may hold together, counted in KiB.
#[derive(Debug, Clone)]
pub struct ServerBudget(Arc<Semaphore>);

impl ServerBudget {
    pub fn new(bytes: usize) -> ServerBudget {
        let kib = (bytes / 1024).min(Semaphore::MAX_PERMITS);
        ServerBudget(Arc::new(Semaphore::new(kib)))
    }
}

#[derive(Debug)]
pub struct ResponseBudget {
    limit: usize,
    loaded: AtomicUsize,
    returned: AtomicUsize,
    exceeded: AtomicBool,
    server: Option<ServerBudget>,
    /// What this response holds of the server's budget, in KiB, given back when it is dropped.
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl ResponseBudget {
    pub fn new(limit: usize) -> ResponseBudget {
        ResponseBudget {
            limit,
            loaded: AtomicUsize::new(0),
            returned: AtomicUsize::new(0),
            exceeded: AtomicBool::new(false),
            server: None,
            held: Mutex::new(None),
        }
    }

    /// A budget whose charges are also taken from the server's.
    pub fn within(limit: usize, server: &ServerBudget) -> ResponseBudget {
        ResponseBudget {
            server: Some(server.clone()),
            ..ResponseBudget::new(limit)
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
        self.take_from_server()
    }

    /// Holds as many KiB of the server's budget as this response has charged in all.
    fn take_from_server(&self) -> AppResult<()> {
        let Some(server) = &self.server else {
            return Ok(());
        };
        let charged = self.loaded.load(Ordering::Relaxed) + self.returned.load(Ordering::Relaxed);
        let wanted = u32::try_from(charged.div_ceil(1024)).unwrap_or(u32::MAX);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let have = held.as_ref().map_or(0, |p| p.num_permits() as u32);
        if wanted <= have {
            return Ok(());
        }
        match server.0.clone().try_acquire_many_owned(wanted - have) {
            Ok(more) => {
                match held.as_mut() {
                    Some(permit) => permit.merge(more),
                    None => *held = Some(more),
                }
                Ok(())
            }
            Err(_) => {
                self.exceeded.store(true, Ordering::Relaxed);
                Err(AppError::Busy(SERVER_BUSY))
            }
        }
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Why the response was refused once `exceeded()`: its own budget, or the server's.
    pub fn error(&self) -> AppError {
        let charged = self
            .loaded
            .load(Ordering::Relaxed)
            .max(self.returned.load(Ordering::Relaxed));
        if charged > self.limit {
            AppError::ResponseTooLarge(self.limit)
        } else {
            AppError::Busy(SERVER_BUSY)
        }
    }
}

const SERVER_BUSY: &str =
    "the server is building other large responses; retry shortly or ask for less";

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

    #[test]
    fn the_servers_budget_is_shared_and_given_back() {
        let server = super::ServerBudget::new(10 * 1024);
        let first = ResponseBudget::within(1 << 20, &server);
        assert!(first.charge(6 * 1024).is_ok());
        let second = ResponseBudget::within(1 << 20, &server);
        assert!(second.charge_loaded(3 * 1024).is_ok());
        let err = second.charge(2 * 1024).unwrap_err();
        assert_eq!(err.code(), "BUSY");
        assert!(second.exceeded());
        assert_eq!(second.error().code(), "BUSY");
        drop((first, second));
        let third = ResponseBudget::within(1 << 20, &server);
        assert!(
            third.charge(10 * 1024).is_ok(),
            "dropped budgets give their share back"
        );
    }
}
