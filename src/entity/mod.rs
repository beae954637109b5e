//! sea-orm entities for the tenant tables (incidents, events, postmortems, audit, people, incident
//! roles, webhook endpoints, deliveries and attempts, sessions), the persisted-query table, the
//! two workflow enums and the incident roles.
//! Nothing outside `crate::incident::scope` queries these directly (see `scope.rs` for why), but
//! `graphql::transport::persisted::store`, which owns the persisted-query table,
//! `incident::webhooks::store`, which owns the three webhook tables, and `auth::sessions`, which
//! owns the sessions table.

pub mod audit_event;
pub mod by_index;
pub mod incident;
pub mod incident_event;
pub mod incident_role;
pub mod openapi;
pub mod persisted_query;
pub mod person;
pub mod postmortem;
pub mod session;
pub mod webhook_attempt;
pub mod webhook_delivery;
pub mod webhook_endpoint;

use async_graphql::Enum;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// SEV1 is the most severe.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Enum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Enum", enum_name = "incident_severity")]
#[graphql(name = "IncidentSeverity")]
pub enum Severity {
    #[sea_orm(string_value = "SEV1")]
    #[graphql(name = "SEV1")]
    #[serde(rename = "SEV1")]
    Sev1,
    #[sea_orm(string_value = "SEV2")]
    #[graphql(name = "SEV2")]
    #[serde(rename = "SEV2")]
    Sev2,
    #[sea_orm(string_value = "SEV3")]
    #[graphql(name = "SEV3")]
    #[serde(rename = "SEV3")]
    Sev3,
    #[sea_orm(string_value = "SEV4")]
    #[graphql(name = "SEV4")]
    #[serde(rename = "SEV4")]
    Sev4,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Enum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "Enum", enum_name = "incident_status")]
#[graphql(name = "IncidentStatus")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    #[sea_orm(string_value = "OPEN")]
    Open,
    #[sea_orm(string_value = "MITIGATING")]
    Mitigating,
    #[sea_orm(string_value = "RESOLVED")]
    Resolved,
    #[sea_orm(string_value = "CLOSED")]
    Closed,
}

/// The roles a person can hold on an incident, one person per role.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumIter,
    DeriveActiveEnum,
    Enum,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IncidentRole {
    /// Leads the response and decides.
    #[sea_orm(string_value = "COMMANDER")]
    Commander,
    /// Keeps stakeholders and customers informed.
    #[sea_orm(string_value = "COMMUNICATIONS")]
    Communications,
    /// Keeps the timeline.
    #[sea_orm(string_value = "SCRIBE")]
    Scribe,
}

impl IncidentRole {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentRole::Commander => "COMMANDER",
            IncidentRole::Communications => "COMMUNICATIONS",
            IncidentRole::Scribe => "SCRIBE",
        }
    }

    /// The role in words, for the timeline.
    pub fn label(self) -> &'static str {
        match self {
            IncidentRole::Commander => "commander",
            IncidentRole::Communications => "communications lead",
            IncidentRole::Scribe => "scribe",
        }
    }
}

impl std::fmt::Display for IncidentRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Severity {
    /// The more severe of two levels (SEV1 is the most severe).
    pub fn most_severe(a: Severity, b: Severity) -> Severity {
        if a.rank() <= b.rank() { a } else { b }
    }

    fn rank(self) -> u8 {
        match self {
            Severity::Sev1 => 1,
            Severity::Sev2 => 2,
            Severity::Sev3 => 3,
            Severity::Sev4 => 4,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Sev1 => "SEV1",
            Severity::Sev2 => "SEV2",
            Severity::Sev3 => "SEV3",
            Severity::Sev4 => "SEV4",
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::Mitigating => "MITIGATING",
            Status::Resolved => "RESOLVED",
            Status::Closed => "CLOSED",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body an endpoint receives.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Enum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookFormat {
    #[sea_orm(string_value = "STANDARD")]
    Standard,
    #[sea_orm(string_value = "SLACK")]
    Slack,
    #[sea_orm(string_value = "TEAMS")]
    Teams,
}

/// `FAILED`: will retry; `DEAD`: gave up.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Enum,
    Serialize,
    Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WebhookDeliveryStatus {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "DELIVERED")]
    Delivered,
    #[sea_orm(string_value = "FAILED")]
    Failed,
    #[sea_orm(string_value = "DEAD")]
    Dead,
}

impl WebhookDeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookDeliveryStatus::Pending => "PENDING",
            WebhookDeliveryStatus::Delivered => "DELIVERED",
            WebhookDeliveryStatus::Failed => "FAILED",
            WebhookDeliveryStatus::Dead => "DEAD",
        }
    }
}
