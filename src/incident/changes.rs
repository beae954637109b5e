//! What the domain announces about its commits, and the trait it announces through. The domain
//! never names a fan-out: `live/` implements `ChangeSink` (PostgreSQL NOTIFY or in-process).

use futures_util::future::BoxFuture;
use sea_orm::{DatabaseTransaction, DbErr};
use serde::{Deserialize, Serialize};
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

/// One committed change. `sequence` is set for `EventAdded`; `audit` names the audit row of an
/// `Updated` or `StatusChanged` (its `before` says what the incident looked like). Ids only: announcements may travel
/// through channels every database user can read (NOTIFY), so they carry no tenant data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    #[serde(rename = "o")]
    pub org_id: Uuid,
    #[serde(rename = "i")]
    pub incident_id: Uuid,
    #[serde(rename = "k")]
    pub kind: ChangeKind,
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<i64>,
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<Uuid>,
}

/// Where a write's announcements go. Both steps see the same list, in the order the write made
/// its changes; a write that announces nothing calls neither.
pub trait ChangeSink: Send + Sync + 'static {
    /// Inside the transaction, before it commits: an announcement written here exists exactly
    /// when the commit does (PostgreSQL NOTIFY is delivered at commit, and not at all on rollback).
    fn within<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        announcements: &'a [Announcement],
    ) -> BoxFuture<'a, Result<(), DbErr>>;

    /// After the commit succeeded.
    fn committed(&self, announcements: Vec<Announcement>);
}
