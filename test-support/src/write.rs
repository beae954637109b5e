//! Writes through the service layer, the mutations' own path minus HTTP: for tests that set up
//! data quickly and for benchmarks that take the time of a commit.

use incidentd::app::AppState;
use incidentd::incident::identity::{Principal, Role, Writer};
use incidentd::incident::input::{Content, EventType, NewEvent};
use uuid::Uuid;

/// A responder `user` of `org`, as the service layer takes it.
pub fn writer(org: Uuid, user: Uuid) -> Writer {
    Principal {
        user_id: user,
        org_id: org,
        role: Role::Responder,
        expires_at: u64::MAX,
        person: None,
    }
    .writer()
    .unwrap()
}

/// Adds a note to `incident` as `writer`; its sequence.
pub async fn write_event(state: &AppState, writer: &Writer, incident: Uuid, content: &str) -> i64 {
    let event = NewEvent {
        id: None,
        event_type: EventType::parse("eventType", "note").unwrap(),
        content: Content::parse("content", content).unwrap(),
    };
    state
        .graphql
        .domain
        .add_event(writer, incident, event)
        .await
        .expect("event written")
        .sequence
}
