//! Outbound webhooks in GraphQL: endpoints, their delivery log, replay and test messages.
//! Admins only: the service refuses everyone else with `FORBIDDEN`.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Json, Object};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::context::{domain, principal};
use crate::entity::{
    WebhookDeliveryStatus, WebhookFormat, webhook_attempt, webhook_delivery, webhook_endpoint,
};
use crate::error::AppError;
use crate::graphql::error::GqlResult;
use crate::incident::input::{WebhookEndpointInput, WebhookEndpointUpdate};
use crate::incident::webhooks;

pub struct WebhookEndpoint(webhook_endpoint::Model);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> Uuid {
        self.0.id
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    /// Empty: every type.
    async fn event_types(&self) -> Vec<String> {
        serde_json::from_value(self.0.event_types.clone()).unwrap_or_default()
    }
    async fn format(&self) -> WebhookFormat {
        self.0.format
    }
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn disabled_reason(&self) -> Option<&str> {
        self.0.disabled_reason.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Newest first.
    #[graphql(
        complexity = "crate::graphql::schema::limits::page_complexity(first, None, child_complexity)"
    )]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<WebhookDeliveryStatus>,
    ) -> GqlResult<Connection<String, WebhookDelivery>> {
        let principal = principal(ctx)?;
        principal.require_admin()?;
        let first = first.unwrap_or(20);
        if !(0..=100).contains(&first) {
            return Err(AppError::bad_input("first", "between 0 and 100").into());
        }
        let after = after
            .map(|a| a.parse::<Uuid>())
            .transpose()
            .map_err(|_| AppError::bad_input("after", "not a cursor of this list"))?;
        let scope = principal.scope();
        let mut rows = webhooks::deliveries(
            domain(ctx),
            scope,
            self.0.id,
            after,
            status,
            first as u64 + 1,
        )
        .await?;
        let has_next = rows.len() > first as usize;
        rows.truncate(first as usize);
        let nodes = with_attempts(ctx, rows).await?;
        let mut connection = Connection::new(after.is_some(), has_next);
        connection.edges.extend(
            nodes
                .into_iter()
                .map(|d| Edge::new(d.delivery.id.to_string(), d)),
        );
        Ok(connection)
    }
}

/// The deliveries with their attempts, read in one statement.
async fn with_attempts(
    ctx: &Context<'_>,
    rows: Vec<webhook_delivery::Model>,
) -> GqlResult<Vec<WebhookDelivery>> {
    let scope = principal(ctx)?.scope();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut attempts = if ids.is_empty() {
        vec![]
    } else {
        webhooks::attempts(domain(ctx), scope, &ids).await?
    };
    Ok(rows
        .into_iter()
        .map(|delivery| {
            let (mine, rest): (Vec<_>, Vec<_>) = attempts
                .drain(..)
                .partition(|a| a.delivery_id == delivery.id);
            attempts = rest;
            WebhookDelivery {
                delivery,
                attempts: mine,
            }
        })
        .collect())
}

pub struct WebhookAttempt(webhook_attempt::Model);

#[Object]
impl WebhookAttempt {
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn response_status(&self) -> Option<i32> {
        self.0.response_status
    }
    async fn duration_ms(&self) -> i32 {
        self.0.duration_ms
    }
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

pub struct WebhookDelivery {
    delivery: webhook_delivery::Model,
    attempts: Vec<webhook_attempt::Model>,
}

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> Uuid {
        self.delivery.id
    }
    /// The `webhook-id` of every attempt.
    async fn message_id(&self) -> &str {
        &self.delivery.message_id
    }
    async fn event_type(&self) -> &str {
        &self.delivery.event_type
    }
    async fn incident_id(&self) -> Option<Uuid> {
        self.delivery.incident_id
    }
    async fn status(&self) -> WebhookDeliveryStatus {
        self.delivery.status
    }
    /// Oldest first.
    async fn attempts(&self) -> Vec<WebhookAttempt> {
        self.attempts.iter().cloned().map(WebhookAttempt).collect()
    }
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        match self.delivery.status {
            WebhookDeliveryStatus::Pending | WebhookDeliveryStatus::Failed => {
                self.delivery.next_attempt_at
            }
            _ => None,
        }
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.delivery.created_at
    }
    /// The `STANDARD` body (other formats are rendered from it).
    async fn payload(&self) -> Json<serde_json::Value> {
        Json(self.delivery.payload.clone())
    }
}

pub struct WebhookEndpointWithSecret {
    endpoint: webhook_endpoint::Model,
    secret: String,
}

#[Object]
impl WebhookEndpointWithSecret {
    async fn endpoint(&self) -> WebhookEndpoint {
        WebhookEndpoint(self.endpoint.clone())
    }
    /// `whsec_…`: shown this once.
    async fn secret(&self) -> &str {
        &self.secret
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// The organization's webhook endpoints (admins only).
    async fn webhook_endpoints(&self, ctx: &Context<'_>) -> GqlResult<Vec<WebhookEndpoint>> {
        let rows = domain(ctx).webhook_endpoints(principal(ctx)?).await?;
        Ok(rows.into_iter().map(WebhookEndpoint).collect())
    }

    async fn webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
    ) -> GqlResult<Option<WebhookEndpoint>> {
        let row = domain(ctx).webhook_endpoint(principal(ctx)?, id).await?;
        Ok(row.map(WebhookEndpoint))
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// The secret is shown this once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: WebhookEndpointInput,
    ) -> GqlResult<WebhookEndpointWithSecret> {
        let principal = principal(ctx)?;
        principal.require_admin()?;
        let input = input.parse()?;
        let (endpoint, secret) = domain(ctx)
            .create_webhook_endpoint(principal, input)
            .await?;
        Ok(WebhookEndpointWithSecret { endpoint, secret })
    }

    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        input: WebhookEndpointUpdate,
    ) -> GqlResult<WebhookEndpoint> {
        let principal = principal(ctx)?;
        principal.require_admin()?;
        let patch = input.parse()?;
        Ok(WebhookEndpoint(
            domain(ctx)
                .update_webhook_endpoint(principal, id, patch)
                .await?,
        ))
    }

    async fn delete_webhook_endpoint(&self, ctx: &Context<'_>, id: Uuid) -> GqlResult<bool> {
        Ok(domain(ctx)
            .delete_webhook_endpoint(principal(ctx)?, id)
            .await?)
    }

    /// A new secret; the old one keeps signing beside it for `keepOldFor` seconds.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        #[graphql(default = 86400)] keep_old_for: Option<i32>,
    ) -> GqlResult<WebhookEndpointWithSecret> {
        let (endpoint, secret) = domain(ctx)
            .rotate_webhook_secret(
                principal(ctx)?,
                id,
                i64::from(keep_old_for.unwrap_or(86400)),
            )
            .await?;
        Ok(WebhookEndpointWithSecret { endpoint, secret })
    }

    /// Sends the delivery again now, with the same `webhook-id` and body.
    async fn replay_webhook_message(
        &self,
        ctx: &Context<'_>,
        delivery_id: Uuid,
    ) -> GqlResult<WebhookDelivery> {
        let row = domain(ctx)
            .replay_webhook_message(principal(ctx)?, delivery_id)
            .await?;
        Ok(with_attempts(ctx, vec![row]).await?.remove(0))
    }

    /// How many failed or dead deliveries created since `since` were queued again.
    async fn replay_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> GqlResult<i32> {
        let n = domain(ctx)
            .replay_webhook_endpoint(principal(ctx)?, id, since)
            .await?;
        Ok(i32::try_from(n).unwrap_or(i32::MAX))
    }

    /// Queues a `webhook.test` message to the endpoint.
    async fn send_test_webhook(&self, ctx: &Context<'_>, id: Uuid) -> GqlResult<WebhookDelivery> {
        let row = domain(ctx).send_test_webhook(principal(ctx)?, id).await?;
        Ok(with_attempts(ctx, vec![row]).await?.remove(0))
    }
}
