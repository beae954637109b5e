//! The change feed: what each committed write announces, and the in-process fan-out to
//! subscribers. Announcements carry ids only; subscribers re-read rows through their own scope.

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, async_graphql::Enum)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[graphql(name = "IncidentChangeKind")]
pub enum ChangeKind {
    Created,
    Updated,
    StatusChanged,
    EventAdded,
    PostmortemUpdated,
}

/// One committed change. `sequence` is set for `EventAdded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    #[serde(rename = "o")]
    pub org_id: Uuid,
    #[serde(rename = "i")]
    pub incident_id: Uuid,
    #[serde(rename = "k")]
    pub kind: ChangeKind,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i32>,
}

#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Announcement>,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(4096)
    }
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        let (tx, _) = broadcast::channel(capacity);
        Hub { tx }
    }

    /// Called after a transaction commits, with what it announced.
    pub fn committed(&self, announcements: &[Announcement]) {
        for a in announcements {
            // No receiver is not an error: nobody is listening yet.
            let _ = self.tx.send(*a);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.tx.subscribe()
    }
}
