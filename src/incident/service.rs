//! The service functions: every write incidentd makes. Each runs in one transaction that also
//! writes its audit row and its automatic timeline event, then announces what it committed.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, NotSet, QueryFilter};
use uuid::Uuid;

use std::sync::Arc;

use super::audit::{self, Diff, Entry};
use super::changes::{Announcement, ChangeKind, ChangeSink};
use super::identity::{Principal, Writer};
use super::input::{
    ActionItem, IncidentPatch, NewEvent, NewIncident, PostmortemPatch, ROLE_ASSIGNED,
    ROLE_UNASSIGNED, RoleChange, SEVERITY_CHANGED, STATUS_CHANGED, StatusChange,
};
use super::people::Directory;
use super::webhooks::{self, Detail, WebhookSettings};
use super::{now, people, workflow};
use crate::db::{Db, WriteTxn};
use crate::entity::{
    IncidentRole, Status, incident, incident_event, incident_role, person, postmortem,
};
use crate::error::{AppError, AppResult};

/// The write side of the domain: a database, the sink its commits are announced to, and the
/// queues writers of one incident wait in.
#[derive(Clone)]
pub struct Domain {
    pub db: Db,
    changes: Arc<dyn ChangeSink>,
    turns: Arc<Turns>,
    pub(crate) webhooks: Arc<WebhookSettings>,
    directory: Arc<Directory>,
}

impl Domain {
    pub fn new(db: Db, changes: Arc<dyn ChangeSink>) -> Domain {
        Domain {
            db,
            changes,
            turns: Arc::new(Turns::new()),
            webhooks: Arc::new(WebhookSettings::default()),
            directory: Arc::new(Directory::new()),
        }
    }

    /// Fills the people directory from what the caller's credentials say about them (a bearer
    /// token's `name` and `email`), writing only when that changed. A failed write is logged
    /// and the request goes on: who someone is must not stop them from working.
    pub async fn recognize(&self, principal: &Principal) {
        if let Err(e) = self.directory.recognize(&self.db, principal).await {
            tracing::warn!(error = %e, "the people directory could not be updated");
        }
    }

    /// The same domain, with outbound webhooks configured so.
    pub fn with_webhooks(mut self, settings: WebhookSettings) -> Domain {
        self.webhooks = Arc::new(settings);
        self
    }

    pub fn webhook_settings(&self) -> &WebhookSettings {
        &self.webhooks
    }
}

/// Writers of one incident take turns here, in memory, before they take a database connection:
/// 50 writers to one hot incident then hold one pool connection, not 50, and other
/// organizations' requests still find connections. (Replicas are serialized by the row lock.)
/// Striped, so memory stays fixed; two incidents that share a stripe only take turns too.
struct Turns {
    stripes: Vec<Arc<tokio::sync::Mutex<()>>>,
}

impl Turns {
    const STRIPES: usize = 1024;

    fn new() -> Turns {
        Turns {
            stripes: (0..Self::STRIPES)
                .map(|_| Arc::new(tokio::sync::Mutex::new(())))
                .collect(),
        }
    }

    /// Waits for `incident_id`'s turn, at most `timeout`.
    async fn wait(
        &self,
        incident_id: Uuid,
        timeout: std::time::Duration,
    ) -> AppResult<tokio::sync::OwnedMutexGuard<()>> {
        let stripe = (incident_id.as_u128() % Self::STRIPES as u128) as usize;
        tokio::time::timeout(timeout, self.stripes[stripe].clone().lock_owned())
            .await
            .map_err(|_| crate::db::BeginError::Busy.into())
    }
}

/// A write in progress: the transaction and what it will announce once committed.
struct Unit<'w> {
    txn: WriteTxn,
    writer: &'w Writer,
    announcements: Vec<Announcement>,
    /// The audit row written last: an announcement of an update names it, so the change feed
    /// can tell what the incident looked like before.
    last_audit: Option<Uuid>,
    /// The time the write is stamped with: taken once it holds its turn, and never before
    /// what the incident's previous writes stamped, so times follow commit order.
    at: chrono::DateTime<chrono::Utc>,
    /// The sequence the next appended event takes (under the incident's lock).
    next_sequence: i64,
    webhooks: Arc<WebhookSettings>,
    /// Whether the transaction queued webhook messages (the worker is woken after the commit).
    queued: bool,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<'w> Unit<'w> {
    /// A write that creates (no incident to wait for).
    async fn begin(domain: &Domain, writer: &'w Writer) -> AppResult<Unit<'w>> {
        Ok(Unit {
            txn: domain.db.begin_write().await?,
            writer,
            announcements: Vec::new(),
            last_audit: None,
            at: now(),
            next_sequence: 1,
            webhooks: domain.webhooks.clone(),
            queued: false,
            _turn: None,
        })
    }

    /// A write to an existing incident: waits for its turn, locks its row (NOT_FOUND outside
    /// the scope), and only then takes the time.
    async fn begin_on(
        domain: &Domain,
        writer: &'w Writer,
        incident_id: Uuid,
    ) -> AppResult<(Unit<'w>, incident::Model)> {
        let turn = domain
            .turns
            .wait(incident_id, domain.db.lock_timeout())
            .await?;
        let txn = domain.db.begin_write().await?;
        let incident = writer
            .scope
            .lock_incident(&*txn, incident_id)
            .await?
            .ok_or(AppError::NotFound("incident"))?;
        let (last_sequence, last_event_at) = writer.scope.timeline_end(&*txn, incident_id).await?;
        let at = now()
            .max(incident.updated_at)
            .max(last_event_at.unwrap_or(incident.updated_at));
        let unit = Unit {
            txn,
            writer,
            announcements: Vec::new(),
            last_audit: None,
            at,
            next_sequence: last_sequence + 1,
            webhooks: domain.webhooks.clone(),
            queued: false,
            _turn: Some(turn),
        };
        Ok((unit, incident))
    }

    fn announce(&mut self, incident_id: Uuid, kind: ChangeKind, sequence: Option<i64>) {
        self.announcements.push(Announcement {
            org_id: self.writer.scope.org_id(),
            incident_id,
            kind,
            sequence,
            audit: match kind {
                ChangeKind::Updated | ChangeKind::StatusChanged => self.last_audit,
                _ => None,
            },
        });
    }

    /// Commits, and announces what was committed: the sink's first step runs inside the
    /// transaction, its second after the commit. Both run in a task of their own, so a caller
    /// that goes away meanwhile (a client gone, a request timeout, shutdown) cannot leave a
    /// commit unannounced: once the commit is sent, the announcement follows it.
    async fn commit(self, sink: Arc<dyn ChangeSink>) -> AppResult<()> {
        let Unit {
            txn,
            announcements,
            webhooks,
            queued,
            _turn,
            ..
        } = self;
        let finish = tokio::spawn(async move {
            if !announcements.is_empty() {
                sink.within(&txn, &announcements).await?;
            }
            txn.commit().await?;
            if !announcements.is_empty() {
                sink.committed(announcements);
            }
            drop(_turn);
            Ok::<(), sea_orm::DbErr>(())
        });
        finish
            .await
            .map_err(|e| AppError::Internal(anyhow::anyhow!("the commit task failed: {e}")))??;
        if queued {
            webhooks.wake.notify_one();
        }
        Ok(())
    }

    /// Queues this change's webhook messages, in its transaction: one per enabled endpoint of
    /// the organization that takes `event_type`. Every kind of change calls this once.
    async fn webhook(
        &mut self,
        event_type: &'static str,
        incident: &incident::Model,
        detail: Detail<'_>,
    ) -> AppResult<()> {
        let change = webhooks::Change {
            event_type,
            incident,
            detail,
            sequence: self.next_sequence - 1,
            at: self.at,
        };
        let queued =
            webhooks::enqueue(&*self.txn, self.writer.scope, &self.webhooks, change).await?;
        self.queued |= queued > 0;
        Ok(())
    }

    async fn put_role(
        &mut self,
        incident_id: Uuid,
        role: IncidentRole,
        person_id: Uuid,
    ) -> AppResult<()> {
        let row = incident_role::ActiveModel {
            organization_id: Set(self.writer.scope.org_id()),
            incident_id: Set(incident_id),
            role: Set(role),
            person_id: Set(person_id),
            assigned_at: Set(self.at),
            assigned_by: Set(Some(self.writer.user_id)),
        };
        self.writer.scope.put_role(&*self.txn, row).await?;
        Ok(())
    }

    async fn audit(
        &mut self,
        action: &'static str,
        entity: (&'static str, Uuid),
        incident_id: Uuid,
        diff: Diff,
    ) -> AppResult<()> {
        let id = audit::record(
            &*self.txn,
            Entry {
                action,
                entity_type: entity.0,
                entity_id: entity.1,
                incident_id,
                diff,
                writer: self.writer,
                at: self.at,
            },
        )
        .await?;
        self.last_audit = Some(id);
        Ok(())
    }

    /// Appends an event at the next sequence. The unit holds the incident's lock, so the
    /// sequence is gapless and follows commit order. `status_change` is the (from, to) of a
    /// `status_changed` event, stored in columns of its own: statistics read those, never the
    /// sentence in `content`.
    async fn append_event(
        &mut self,
        incident_id: Uuid,
        id: Uuid,
        event_type: &str,
        content: Option<String>,
        status_change: Option<(Status, Status)>,
        audited: bool,
    ) -> AppResult<Option<incident_event::Model>> {
        let sequence = self.next_sequence;
        let event = incident_event::Model {
            id,
            organization_id: self.writer.scope.org_id(),
            incident_id,
            sequence,
            event_type: event_type.to_string(),
            content,
            created_by: Some(self.writer.user_id),
            created_at: self.at,
            from_status: status_change.map(|(from, _)| from),
            to_status: status_change.map(|(_, to)| to),
        };
        let row: incident_event::ActiveModel = event.clone().into();
        if !self.writer.scope.try_insert_event(&*self.txn, row).await? {
            return Ok(None);
        }
        self.next_sequence += 1;
        // Automatic events (status and severity changes) are part of the change that the
        // caller audits as `incident_updated`; only user events get their own audit row.
        if audited {
            let mut diff = Diff::default();
            diff.created("eventType", &event.event_type);
            diff.created("sequence", &event.sequence);
            diff.created("content", &event.content);
            self.audit(
                audit::INCIDENT_EVENT_ADDED,
                ("incident_event", event.id),
                incident_id,
                diff,
            )
            .await?;
        }
        self.announce(incident_id, ChangeKind::EventAdded, Some(sequence));
        Ok(Some(event))
    }
}

impl Domain {
    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id()))]
    pub async fn create_incident(
        &self,
        writer: &Writer,
        input: NewIncident,
    ) -> AppResult<incident::Model> {
        let mut unit = Unit::begin(self, writer).await?;
        let id = input.id.unwrap_or_else(Uuid::now_v7);
        let model = incident::Model {
            id,
            organization_id: writer.scope.org_id(),
            title: input.title.clone().into_inner(),
            status: Status::Open,
            severity: input.severity,
            highest_severity: Some(input.severity),
            linked_ticket_ids: input.linked_ticket_ids.to_json(),
            linked_problem_id: input.linked_problem_id,
            started_at: input.started_at.unwrap_or(unit.at),
            resolved_at: None,
            created_by: Some(writer.user_id),
            created_at: unit.at,
            updated_at: unit.at,
        };
        if !writer
            .scope
            .try_insert_incident(&*unit.txn, model.clone().into())
            .await?
        {
            // A retry returns what the first call made; anything else with this id is a conflict,
            // including an id taken in another organization (which we must not reveal).
            let existing = writer
                .scope
                .incidents()
                .filter(incident::Column::Id.eq(id))
                .one(&*unit.txn)
                .await?;
            return match existing {
                Some(existing) if same_creation(&existing, &input) => Ok(existing),
                _ => Err(AppError::Conflict(format!(
                    "an incident with id {id} already exists with different input"
                ))),
            };
        }
        // The declarer leads unless the input names someone else, who must be in the
        // directory; the declarer is added to it if they are not (yet) known there.
        let commander = match input.commander {
            Some(person) if person != writer.user_id => self.person_in(&unit, person).await?.id,
            _ => {
                people::ensure(&*unit.txn, writer.scope, writer.user_id).await?;
                writer.user_id
            }
        };
        unit.put_role(id, IncidentRole::Commander, commander)
            .await?;
        let mut diff = Diff::default();
        diff.created("title", &model.title);
        diff.created("status", &model.status);
        diff.created("severity", &model.severity);
        diff.created("linkedTicketIds", &model.linked_ticket_ids);
        diff.created("linkedProblemId", &model.linked_problem_id);
        diff.created("startedAt", &model.started_at);
        diff.created(
            "roles",
            &RoleMap::from([(IncidentRole::Commander, commander)]),
        );
        unit.webhook(webhooks::INCIDENT_CREATED, &model, Detail::None)
            .await?;
        unit.audit(audit::INCIDENT_CREATED, ("incident", id), id, diff)
            .await?;
        unit.announce(id, ChangeKind::Created, None);
        unit.commit(self.changes.clone()).await?;
        Ok(model)
    }

    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id(), %id))]
    pub async fn update_incident(
        &self,
        writer: &Writer,
        id: Uuid,
        patch: IncidentPatch,
    ) -> AppResult<incident::Model> {
        let (mut unit, current) = Unit::begin_on(self, writer, id).await?;
        workflow::check_editable(&current)?;
        let mut next = current.clone();
        if let Some(title) = patch.title {
            next.title = title.into_inner();
        }
        if let Some(severity) = patch.severity {
            next.severity = severity;
            next.highest_severity = workflow::highest_severity_after(&current, severity);
        }
        if let Some(tickets) = patch.linked_ticket_ids {
            next.linked_ticket_ids = tickets.to_json();
        }
        if let Some(problem) = patch.linked_problem_id {
            next.linked_problem_id = problem;
        }
        if let Some(started_at) = patch.started_at {
            next.started_at = started_at;
        }
        workflow::check_times(next.started_at, next.resolved_at)?;
        let mut diff = Diff::default();
        diff.field("title", &current.title, &next.title);
        diff.field("severity", &current.severity, &next.severity);
        diff.field(
            "linkedTicketIds",
            &current.linked_ticket_ids,
            &next.linked_ticket_ids,
        );
        diff.field(
            "linkedProblemId",
            &current.linked_problem_id,
            &next.linked_problem_id,
        );
        diff.field("startedAt", &current.started_at, &next.started_at);
        if diff.is_empty() {
            return Ok(current);
        }
        next.updated_at = unit.at;
        let row = incident::ActiveModel {
            title: Set(next.title.clone()),
            severity: Set(next.severity),
            highest_severity: Set(next.highest_severity),
            linked_ticket_ids: Set(next.linked_ticket_ids.clone()),
            linked_problem_id: Set(next.linked_problem_id),
            started_at: Set(next.started_at),
            updated_at: Set(next.updated_at),
            ..Default::default()
        };
        writer.scope.update_incident(&*unit.txn, id, row).await?;
        if current.severity != next.severity {
            let content = format!("{} → {}", current.severity, next.severity);
            unit.append_event(
                id,
                Uuid::now_v7(),
                SEVERITY_CHANGED,
                Some(content),
                None,
                false,
            )
            .await?;
        }
        unit.audit(audit::INCIDENT_UPDATED, ("incident", id), id, diff)
            .await?;
        unit.webhook(webhooks::INCIDENT_UPDATED, &next, Detail::None)
            .await?;
        unit.announce(id, ChangeKind::Updated, None);
        unit.commit(self.changes.clone()).await?;
        Ok(next)
    }

    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id(), %id, to = %change.to))]
    pub async fn transition(
        &self,
        writer: &Writer,
        id: Uuid,
        change: StatusChange,
    ) -> AppResult<incident::Model> {
        let to = change.to;
        let note = change.note.map(|n| n.into_inner());
        let (mut unit, current) = Unit::begin_on(self, writer, id).await?;
        let has_postmortem = to == Status::Closed && self.has_postmortem(&unit, id).await?;
        let Some(plan) =
            workflow::plan_transition(&current, to, note.as_deref(), has_postmortem, unit.at)?
        else {
            return Ok(current);
        };
        let mut next = current.clone();
        next.status = plan.to;
        next.resolved_at = plan.resolved_at;
        next.updated_at = unit.at;
        let row = incident::ActiveModel {
            status: Set(next.status),
            resolved_at: Set(next.resolved_at),
            updated_at: Set(next.updated_at),
            ..Default::default()
        };
        writer.scope.update_incident(&*unit.txn, id, row).await?;
        let content = match &note {
            Some(note) => format!("{} → {}\n\n{note}", plan.from, plan.to),
            None => format!("{} → {}", plan.from, plan.to),
        };
        let event = unit
            .append_event(
                id,
                Uuid::now_v7(),
                STATUS_CHANGED,
                Some(content),
                Some((plan.from, plan.to)),
                false,
            )
            .await?;
        let mut diff = Diff::default();
        diff.field("status", &current.status, &next.status);
        diff.field("resolvedAt", &current.resolved_at, &next.resolved_at);
        unit.audit(audit::INCIDENT_UPDATED, ("incident", id), id, diff)
            .await?;
        let detail = event.as_ref().map_or(Detail::None, Detail::Event);
        unit.webhook(webhooks::INCIDENT_STATUS_CHANGED, &next, detail)
            .await?;
        unit.announce(id, ChangeKind::StatusChanged, None);
        unit.commit(self.changes.clone()).await?;
        Ok(next)
    }

    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id(), %incident_id))]
    pub async fn add_event(
        &self,
        writer: &Writer,
        incident_id: Uuid,
        input: NewEvent,
    ) -> AppResult<incident_event::Model> {
        let (mut unit, incident) = Unit::begin_on(self, writer, incident_id).await?;
        let id = input.id.unwrap_or_else(Uuid::now_v7);
        let content = Some(input.content.into_inner());
        if let Some(event) = unit
            .append_event(
                incident_id,
                id,
                input.event_type.as_str(),
                content.clone(),
                None,
                true,
            )
            .await?
        {
            unit.webhook(
                webhooks::INCIDENT_TIMELINE_EVENT_ADDED,
                &incident,
                Detail::Event(&event),
            )
            .await?;
            unit.commit(self.changes.clone()).await?;
            return Ok(event);
        }
        // The id exists: a retry of this very event is answered with it, anything else conflicts.
        let existing = writer
            .scope
            .events()
            .filter(incident_event::Column::Id.eq(id))
            .one(&*unit.txn)
            .await?;
        match existing {
            Some(e)
                if e.incident_id == incident_id
                    && e.event_type == input.event_type.as_str()
                    && e.content == content =>
            {
                Ok(e)
            }
            _ => Err(AppError::Conflict(format!(
                "an event with id {id} already exists with different input"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id(), %incident_id))]
    pub async fn create_postmortem(
        &self,
        writer: &Writer,
        incident_id: Uuid,
        patch: PostmortemPatch,
    ) -> AppResult<postmortem::Model> {
        let (mut unit, incident) = Unit::begin_on(self, writer, incident_id).await?;
        if self.postmortem_of(&unit, incident_id).await?.is_some() {
            return Err(AppError::Conflict(
                "this incident already has a postmortem; change it with updatePostmortem".into(),
            ));
        }
        let empty = postmortem::Model {
            id: Uuid::now_v7(),
            incident_id,
            organization_id: writer.scope.org_id(),
            impact_summary: None,
            root_cause: None,
            timeline: None,
            what_went_well: None,
            what_went_wrong: None,
            action_items: serde_json::json!([]),
            public_summary: None,
            internal_notes: None,
            created_by: Some(writer.user_id),
            created_at: unit.at,
            updated_at: unit.at,
        };
        let (model, diff) = apply_postmortem(&empty, patch);
        writer
            .scope
            .insert_postmortem(&*unit.txn, model.clone().into())
            .await?;
        unit.audit(
            audit::POSTMORTEM_UPDATED,
            ("postmortem", model.id),
            incident_id,
            diff,
        )
        .await?;
        unit.webhook(
            webhooks::POSTMORTEM_CREATED,
            &incident,
            Detail::Postmortem(&model),
        )
        .await?;
        unit.announce(incident_id, ChangeKind::PostmortemUpdated, None);
        unit.commit(self.changes.clone()).await?;
        Ok(model)
    }

    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id(), %incident_id))]
    pub async fn update_postmortem(
        &self,
        writer: &Writer,
        incident_id: Uuid,
        patch: PostmortemPatch,
    ) -> AppResult<postmortem::Model> {
        let (mut unit, incident) = Unit::begin_on(self, writer, incident_id).await?;
        let current = self
            .postmortem_of(&unit, incident_id)
            .await?
            .ok_or(AppError::NotFound("postmortem"))?;
        let (mut next, diff) = apply_postmortem(&current, patch);
        if diff.is_empty() {
            return Ok(current);
        }
        next.updated_at = unit.at;
        // `reset_all` marks every field as changed, so the UPDATE sets them; keys stay as they are.
        let mut row = postmortem::ActiveModel::from(next.clone()).reset_all();
        row.id = NotSet;
        row.incident_id = NotSet;
        row.organization_id = NotSet;
        row.created_by = NotSet;
        row.created_at = NotSet;
        writer
            .scope
            .update_postmortem(&*unit.txn, current.id, row)
            .await?;
        unit.audit(
            audit::POSTMORTEM_UPDATED,
            ("postmortem", current.id),
            incident_id,
            diff,
        )
        .await?;
        unit.webhook(
            webhooks::POSTMORTEM_UPDATED,
            &incident,
            Detail::Postmortem(&next),
        )
        .await?;
        unit.announce(incident_id, ChangeKind::PostmortemUpdated, None);
        unit.commit(self.changes.clone()).await?;
        Ok(next)
    }

    /// Gives `change.role` to `change.person` (replacing whoever held it), or to nobody. The
    /// timeline says who holds it now, the audit row records who held it before, and the change
    /// is announced as an update. Giving a role to whoever holds it already, or taking an empty
    /// role away, changes nothing and writes nothing (safe retries, as a transition to the
    /// status an incident has).
    #[tracing::instrument(skip_all, fields(org = %writer.scope.org_id(), %incident_id, role = %change.role))]
    pub async fn change_role(
        &self,
        writer: &Writer,
        incident_id: Uuid,
        change: RoleChange,
    ) -> AppResult<incident::Model> {
        let (mut unit, current) = Unit::begin_on(self, writer, incident_id).await?;
        // The person is looked up before the workflow's answer, so an unknown person reads
        // NOT_FOUND whatever the incident's state.
        let next_holder = match change.person {
            Some(id) => Some(self.person_in(&unit, id).await?),
            None => None,
        };
        workflow::check_editable(&current)?;
        let before: RoleMap = writer
            .scope
            .roles()
            .filter(incident_role::Column::IncidentId.eq(incident_id))
            .all(&*unit.txn)
            .await?
            .into_iter()
            .map(|r| (r.role, r.person_id))
            .collect();
        let held_by = before.get(&change.role).copied();
        if held_by == change.person {
            return Ok(current);
        }
        let mut after = before.clone();
        let (event_type, message_type, content) = match &next_holder {
            Some(person) => {
                unit.put_role(incident_id, change.role, person.id).await?;
                after.insert(change.role, person.id);
                let mut content = format!(
                    "{} is now the {}",
                    display_name(person),
                    change.role.label()
                );
                if let Some(previous) = held_by {
                    let previous = self.person_in(&unit, previous).await?;
                    content += &format!(" (was {})", display_name(&previous));
                }
                (ROLE_ASSIGNED, webhooks::INCIDENT_ROLE_ASSIGNED, content)
            }
            None => {
                writer
                    .scope
                    .delete_role(&*unit.txn, incident_id, change.role)
                    .await?;
                after.remove(&change.role);
                let was = match held_by {
                    Some(id) => self.person_in(&unit, id).await.ok(),
                    None => None,
                };
                let name = was
                    .as_ref()
                    .map_or_else(|| "Nobody".to_string(), display_name);
                let content = format!("{name} is no longer the {}", change.role.label());
                (ROLE_UNASSIGNED, webhooks::INCIDENT_ROLE_UNASSIGNED, content)
            }
        };
        let mut next = current.clone();
        next.updated_at = unit.at;
        let row = incident::ActiveModel {
            updated_at: Set(next.updated_at),
            ..Default::default()
        };
        writer
            .scope
            .update_incident(&*unit.txn, incident_id, row)
            .await?;
        let event = unit
            .append_event(
                incident_id,
                Uuid::now_v7(),
                event_type,
                Some(content),
                None,
                false,
            )
            .await?;
        let detail = event.as_ref().map_or(Detail::None, Detail::Event);
        unit.webhook(message_type, &next, detail).await?;
        let mut diff = Diff::default();
        diff.field("roles", &before, &after);
        unit.audit(
            audit::INCIDENT_UPDATED,
            ("incident", incident_id),
            incident_id,
            diff,
        )
        .await?;
        unit.announce(incident_id, ChangeKind::Updated, None);
        unit.commit(self.changes.clone()).await?;
        Ok(next)
    }

    /// A person of the writer's organization; NOT_FOUND for anyone else, as for nobody.
    async fn person_in(&self, unit: &Unit<'_>, id: Uuid) -> AppResult<person::Model> {
        unit.writer
            .scope
            .people()
            .filter(person::Column::Id.eq(id))
            .one(&*unit.txn)
            .await?
            .ok_or(AppError::NotFound("person"))
    }

    async fn postmortem_of(
        &self,
        unit: &Unit<'_>,
        incident_id: Uuid,
    ) -> AppResult<Option<postmortem::Model>> {
        Ok(unit
            .writer
            .scope
            .postmortems()
            .filter(postmortem::Column::IncidentId.eq(incident_id))
            .one(&*unit.txn)
            .await?)
    }

    async fn has_postmortem(&self, unit: &Unit<'_>, incident_id: Uuid) -> AppResult<bool> {
        Ok(self.postmortem_of(unit, incident_id).await?.is_some())
    }
}

/// Who holds which role, as the audit rows record it (`{"COMMANDER": "<person id>", …}`).
pub type RoleMap = std::collections::BTreeMap<IncidentRole, Uuid>;

/// How the timeline names a person: their name, else their email, else their id.
fn display_name(person: &person::Model) -> String {
    person
        .name
        .clone()
        .or_else(|| person.email.clone())
        .unwrap_or_else(|| person.id.to_string())
}

fn same_creation(existing: &incident::Model, input: &NewIncident) -> bool {
    existing.title == input.title.clone().into_inner()
        && existing.severity == input.severity
        && existing.ticket_ids() == input.linked_ticket_ids.as_slice()
        && existing.linked_problem_id == input.linked_problem_id
        && input.started_at.is_none_or(|t| t == existing.started_at)
}

/// The postmortem with `patch` applied, and the audit diff of what changed.
fn apply_postmortem(
    current: &postmortem::Model,
    patch: PostmortemPatch,
) -> (postmortem::Model, Diff) {
    let patch = patch.into_inner();
    let mut next = current.clone();
    let mut diff = Diff::default();
    macro_rules! text_field {
        ($field:ident, $name:literal) => {
            if let Some(value) = patch.$field {
                next.$field = Some(value);
                diff.field($name, &current.$field, &next.$field);
            }
        };
    }
    text_field!(impact_summary, "impactSummary");
    text_field!(root_cause, "rootCause");
    text_field!(timeline, "timeline");
    text_field!(what_went_well, "whatWentWell");
    text_field!(what_went_wrong, "whatWentWrong");
    text_field!(public_summary, "publicSummary");
    text_field!(internal_notes, "internalNotes");
    if let Some(items) = patch.action_items {
        next.action_items = ActionItem::list_to_json(&items);
        diff.field("actionItems", &current.action_items, &next.action_items);
    }
    (next, diff)
}
