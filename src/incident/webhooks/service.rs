//! The admins' operations on endpoints and their delivery log. Each write runs in one
//! transaction with its audit row; the secret is never written to the audit log.

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use serde_json::json;
use uuid::Uuid;

use super::{WEBHOOK_TEST, message_id, pending, rfc3339, secret, store};
use crate::entity::{WebhookDeliveryStatus, audit_event, webhook_delivery, webhook_endpoint};
use crate::error::{AppError, AppResult};
use crate::incident::OrgScope;
use crate::incident::audit::Diff;
use crate::incident::identity::Principal;
use crate::incident::input::{NewWebhookEndpoint, WebhookEndpointPatch};
use crate::incident::now;
use crate::incident::service::Domain;

pub const ENDPOINT_CREATED: &str = "webhook_endpoint_created";
pub const ENDPOINT_UPDATED: &str = "webhook_endpoint_updated";
pub const ENDPOINT_DELETED: &str = "webhook_endpoint_deleted";
pub const ENDPOINT_SECRET_ROTATED: &str = "webhook_endpoint_secret_rotated";
pub const ENDPOINT_DISABLED: &str = "webhook_endpoint_disabled";

/// An audit row about an endpoint; `actor` is `None` when the delivery worker acted.
pub fn audit_row(
    actor: Option<Uuid>,
    action: &str,
    endpoint_id: Uuid,
    diff: Diff,
    at: DateTime<Utc>,
) -> audit_event::ActiveModel {
    audit_event::ActiveModel {
        id: Set(Uuid::now_v7()),
        organization_id: Set(Uuid::nil()), // set by the scope
        actor_id: Set(actor),
        action: Set(action.to_string()),
        entity_type: Set("webhook_endpoint".to_string()),
        entity_id: Set(endpoint_id),
        incident_id: Set(None),
        changes: Set(diff.into_json()),
        created_at: Set(at),
    }
}

/// The endpoint in the scope, or `NOT_FOUND` (another organization's answers the same).
async fn existing<C: sea_orm::ConnectionTrait>(
    txn: &C,
    scope: OrgScope,
    id: Uuid,
) -> AppResult<webhook_endpoint::Model> {
    store::endpoint(txn, scope, id)
        .await?
        .ok_or(AppError::NotFound("webhook endpoint"))
}

impl Domain {
    async fn checked_url(&self, raw: &str) -> AppResult<String> {
        let settings = &self.webhooks;
        super::address::check_url(raw, &settings.destinations, settings.resolver.as_ref())
            .await
            .map(|url| url.to_string())
            .map_err(|reason| AppError::bad_input("url", reason))
    }

    fn admin_scope(principal: &Principal) -> AppResult<OrgScope> {
        principal.require_admin()?;
        Ok(principal.scope())
    }

    pub async fn webhook_endpoints(
        &self,
        principal: &Principal,
    ) -> AppResult<Vec<webhook_endpoint::Model>> {
        let scope = Self::admin_scope(principal)?;
        Ok(store::endpoints(&self.db, scope).await?)
    }

    pub async fn webhook_endpoint(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> AppResult<Option<webhook_endpoint::Model>> {
        let scope = Self::admin_scope(principal)?;
        Ok(store::endpoint(&self.db, scope, id).await?)
    }

    /// The new endpoint and its secret (shown this once).
    #[tracing::instrument(skip_all, fields(org = %principal.org_id))]
    pub async fn create_webhook_endpoint(
        &self,
        principal: &Principal,
        input: NewWebhookEndpoint,
    ) -> AppResult<(webhook_endpoint::Model, String)> {
        let scope = Self::admin_scope(principal)?;
        let url = self.checked_url(&input.url).await?;
        let secret = secret::generate();
        let at = now();
        let model = webhook_endpoint::Model {
            id: Uuid::now_v7(),
            organization_id: scope.org_id(),
            url,
            description: input.description,
            event_types: json!(input.event_types),
            format: input.format,
            enabled: true,
            disabled_reason: None,
            secret: secret::seal(self.webhooks.cipher.as_ref(), &secret),
            previous_secret: None,
            previous_secret_expires_at: None,
            failing_since: None,
            created_at: at,
            updated_at: at,
        };
        let txn = self.db.begin_write().await?;
        store::insert_endpoint(&*txn, scope, model.clone().into()).await?;
        let mut diff = Diff::default();
        diff.created("url", &model.url);
        diff.created("eventTypes", &model.event_types);
        diff.created("format", &model.format);
        let row = audit_row(
            Some(principal.user_id),
            ENDPOINT_CREATED,
            model.id,
            diff,
            at,
        );
        store::insert_audit(&*txn, scope, row).await?;
        txn.commit().await?;
        Ok((model, secret))
    }

    #[tracing::instrument(skip_all, fields(org = %principal.org_id, %id))]
    pub async fn update_webhook_endpoint(
        &self,
        principal: &Principal,
        id: Uuid,
        patch: WebhookEndpointPatch,
    ) -> AppResult<webhook_endpoint::Model> {
        let scope = Self::admin_scope(principal)?;
        let url = match &patch.url {
            Some(url) => Some(self.checked_url(url).await?),
            None => None,
        };
        let txn = self.db.begin_write().await?;
        let current = existing(&*txn, scope, id).await?;
        let mut next = current.clone();
        if let Some(url) = url {
            next.url = url;
        }
        if let Some(description) = patch.description {
            next.description = Some(description).filter(|d| !d.is_empty());
        }
        if let Some(types) = patch.event_types {
            next.event_types = json!(types);
        }
        if let Some(enabled) = patch.enabled {
            next.enabled = enabled;
            if enabled {
                next.disabled_reason = None;
                next.failing_since = None;
            } else if current.enabled {
                next.disabled_reason = Some("disabled by an admin".into());
            }
        }
        let mut diff = Diff::default();
        diff.field("url", &current.url, &next.url);
        diff.field("description", &current.description, &next.description);
        diff.field("eventTypes", &current.event_types, &next.event_types);
        diff.field("enabled", &current.enabled, &next.enabled);
        if diff.is_empty() {
            return Ok(current);
        }
        let at = now();
        next.updated_at = at;
        let row = webhook_endpoint::ActiveModel {
            url: Set(next.url.clone()),
            description: Set(next.description.clone()),
            event_types: Set(next.event_types.clone()),
            enabled: Set(next.enabled),
            disabled_reason: Set(next.disabled_reason.clone()),
            failing_since: Set(next.failing_since),
            updated_at: Set(at),
            ..Default::default()
        };
        store::update_endpoint(&*txn, scope, id, row).await?;
        let audit = audit_row(Some(principal.user_id), ENDPOINT_UPDATED, id, diff, at);
        store::insert_audit(&*txn, scope, audit).await?;
        txn.commit().await?;
        if next.enabled {
            self.webhooks.wake.notify_one();
        }
        Ok(next)
    }

    #[tracing::instrument(skip_all, fields(org = %principal.org_id, %id))]
    pub async fn delete_webhook_endpoint(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> AppResult<bool> {
        let scope = Self::admin_scope(principal)?;
        let txn = self.db.begin_write().await?;
        let current = existing(&*txn, scope, id).await?;
        store::delete_endpoint(&*txn, scope, id).await?;
        let mut diff = Diff::default();
        diff.field("url", &Some(current.url), &None);
        let audit = audit_row(Some(principal.user_id), ENDPOINT_DELETED, id, diff, now());
        store::insert_audit(&*txn, scope, audit).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// A new secret; the old one keeps signing beside it for `keep_old_for` seconds.
    #[tracing::instrument(skip_all, fields(org = %principal.org_id, %id))]
    pub async fn rotate_webhook_secret(
        &self,
        principal: &Principal,
        id: Uuid,
        keep_old_for: i64,
    ) -> AppResult<(webhook_endpoint::Model, String)> {
        let scope = Self::admin_scope(principal)?;
        if !(0..=30 * 86_400).contains(&keep_old_for) {
            return Err(AppError::bad_input(
                "keepOldFor",
                "between 0 and 2592000 seconds (30 days)",
            ));
        }
        let txn = self.db.begin_write().await?;
        let mut endpoint = existing(&*txn, scope, id).await?;
        let secret = secret::generate();
        let at = now();
        let (previous, expires) = if keep_old_for > 0 {
            (
                Some(endpoint.secret.clone()),
                Some(at + chrono::TimeDelta::seconds(keep_old_for)),
            )
        } else {
            (None, None)
        };
        endpoint.secret = secret::seal(self.webhooks.cipher.as_ref(), &secret);
        endpoint.previous_secret = previous;
        endpoint.previous_secret_expires_at = expires;
        endpoint.updated_at = at;
        let row = webhook_endpoint::ActiveModel {
            secret: Set(endpoint.secret.clone()),
            previous_secret: Set(endpoint.previous_secret.clone()),
            previous_secret_expires_at: Set(expires),
            updated_at: Set(at),
            ..Default::default()
        };
        store::update_endpoint(&*txn, scope, id, row).await?;
        let mut diff = Diff::default();
        diff.created("keepOldFor", &keep_old_for);
        let audit = audit_row(
            Some(principal.user_id),
            ENDPOINT_SECRET_ROTATED,
            id,
            diff,
            at,
        );
        store::insert_audit(&*txn, scope, audit).await?;
        txn.commit().await?;
        Ok((endpoint, secret))
    }

    /// Sends a delivery again now, with its message id and body.
    #[tracing::instrument(skip_all, fields(org = %principal.org_id, %delivery_id))]
    pub async fn replay_webhook_message(
        &self,
        principal: &Principal,
        delivery_id: Uuid,
    ) -> AppResult<webhook_delivery::Model> {
        let scope = Self::admin_scope(principal)?;
        let txn = self.db.begin_write().await?;
        store::delivery(&*txn, scope, delivery_id)
            .await?
            .ok_or(AppError::NotFound("webhook delivery"))?;
        store::requeue(&*txn, scope, store::Requeue::One(delivery_id), now()).await?;
        let delivery = store::delivery(&*txn, scope, delivery_id)
            .await?
            .ok_or(AppError::NotFound("webhook delivery"))?;
        txn.commit().await?;
        self.webhooks.wake.notify_one();
        Ok(delivery)
    }

    /// Queues again the endpoint's failed and dead deliveries created since `since`; how many.
    #[tracing::instrument(skip_all, fields(org = %principal.org_id, %id))]
    pub async fn replay_webhook_endpoint(
        &self,
        principal: &Principal,
        id: Uuid,
        since: DateTime<Utc>,
    ) -> AppResult<u64> {
        let scope = Self::admin_scope(principal)?;
        let txn = self.db.begin_write().await?;
        existing(&*txn, scope, id).await?;
        let selection = store::Requeue::Since {
            endpoint_id: id,
            since,
        };
        let n = store::requeue(&*txn, scope, selection, now()).await?;
        txn.commit().await?;
        self.webhooks.wake.notify_one();
        Ok(n)
    }

    /// Queues a `webhook.test` message to the endpoint, whatever types it takes.
    #[tracing::instrument(skip_all, fields(org = %principal.org_id, %id))]
    pub async fn send_test_webhook(
        &self,
        principal: &Principal,
        id: Uuid,
    ) -> AppResult<webhook_delivery::Model> {
        let scope = Self::admin_scope(principal)?;
        let txn = self.db.begin_write().await?;
        existing(&*txn, scope, id).await?;
        let at = now();
        let payload = json!({
            "type": WEBHOOK_TEST,
            "timestamp": rfc3339(at),
            "data": { "organization_id": scope.org_id(), "endpoint_id": id },
        });
        let row = pending(id, &message_id(), WEBHOOK_TEST, None, payload, at);
        let delivery_id = *row.id.as_ref();
        store::insert_deliveries(&*txn, scope, vec![row]).await?;
        let delivery = store::delivery(&*txn, scope, delivery_id)
            .await?
            .ok_or(AppError::NotFound("webhook delivery"))?;
        txn.commit().await?;
        self.webhooks.wake.notify_one();
        Ok(delivery)
    }
}

/// The delivery log's reads, for an admin's scope (the GraphQL types resolve through these).
pub async fn deliveries(
    domain: &Domain,
    scope: OrgScope,
    endpoint_id: Uuid,
    after: Option<Uuid>,
    status: Option<WebhookDeliveryStatus>,
    limit: u64,
) -> AppResult<Vec<webhook_delivery::Model>> {
    Ok(store::deliveries(&domain.db, scope, endpoint_id, after, status, limit).await?)
}

/// The attempts of some deliveries, oldest first.
pub async fn attempts(
    domain: &Domain,
    scope: OrgScope,
    delivery_ids: &[Uuid],
) -> AppResult<Vec<crate::entity::webhook_attempt::Model>> {
    Ok(store::attempts(&domain.db, scope, delivery_ids).await?)
}
