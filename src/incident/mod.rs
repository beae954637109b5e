//! The incident domain: workflow rules, typed inputs, reads and the service functions that are
//! the only code writing to the database (each write also writes its audit row).

pub mod audit;
pub mod budget;
pub mod changes;
pub mod identity;
pub mod input;
pub mod page;
pub mod people;
pub mod read;
mod scope;
pub mod service;
pub mod statistics;
pub mod webhooks;
pub mod workflow;

pub use input::ActionItem;
pub use scope::OrgScope;

/// Now, at the precision both databases store (microseconds), so values compare equal after a round trip.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    truncate(chrono::Utc::now())
}

pub fn truncate(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{DurationRound, TimeDelta};
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap_or(t)
}
