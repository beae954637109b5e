//! Query roots: incidents, postmortems, the audit log and the viewer.

use std::sync::Arc;

use async_graphql::{Context, Object};
use uuid::Uuid;

use super::context::{domain, principal};
use super::fast::FastConnection;
use super::loaders::PageBatches;
use super::types::{
    AuditEvent, Incident, ListTotal, Person, Postmortem, READ_POSTMORTEM, Viewer,
    selected_events_window, time_connection,
};
use crate::graphql::error::GqlResult;
use crate::incident::budget::ResponseBudget;
use crate::incident::input::{self, IncidentFilterInput};
use crate::incident::page::{Cursor, NameCursor, Page, TimeCursor};
use crate::incident::read;

#[derive(Default)]
pub struct IncidentQuery;

#[Object]
impl IncidentQuery {
    // A detail page in one statement: the incident, and with it the first window of events
    // and the postmortem its selection asks for, left where the nested fields find them.
    async fn incident(&self, ctx: &Context<'_>, id: Uuid) -> GqlResult<Option<Incident>> {
        let scope = principal(ctx)?.scope();
        let db = &domain(ctx).db;
        let ahead = ctx.look_ahead();
        let window = ahead
            .field("events")
            .selection_fields()
            .iter()
            .find_map(selected_events_window);
        // The workflow's fields may need the postmortem too; it is one index lookup more.
        let with_postmortem = READ_POSTMORTEM
            .iter()
            .any(|field| ahead.field(field).exists());
        let batches = ctx.data_opt::<PageBatches>();
        let Some(batches) = batches.filter(|_| window.is_some() || with_postmortem) else {
            return Ok(Some(Incident(read::incident(db, scope, id).await?)));
        };
        let budget = ctx.data_opt::<Arc<ResponseBudget>>().map(Arc::as_ref);
        let detail =
            read::incident_detail(db, scope, id, window.as_ref(), with_postmortem, budget).await?;
        batches.prefetch(id, window, &detail);
        Ok(Some(Incident(detail.incident)))
    }

    /// Newest first.
    #[graphql(
        complexity = "crate::graphql::schema::limits::page_complexity(first, last, child_complexity)"
    )]
    async fn incidents(
        &self,
        ctx: &Context<'_>,
        filter: Option<IncidentFilterInput>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<FastConnection<Incident, ListTotal>> {
        let scope = principal(ctx)?.scope();
        let filter = filter.unwrap_or_default().parse()?;
        let page = Page::<TimeCursor>::parse(first, after.as_deref(), last, before.as_deref())?;
        let (rows, total) =
            read::incidents(&domain(ctx).db, scope, &filter, &page, wants_total(ctx)).await?;
        if let Some(batches) = ctx.data_opt::<PageBatches>() {
            batches.register(rows.rows.iter().map(|i| i.id).collect());
        }
        Ok(time_connection(
            rows,
            total.map_or(ListTotal::Incidents(filter), ListTotal::Known),
            |i| TimeCursor {
                at: i.created_at,
                id: i.id,
            },
            Incident,
        ))
    }

    /// Newest first.
    #[graphql(
        complexity = "crate::graphql::schema::limits::page_complexity(first, last, child_complexity)"
    )]
    async fn postmortems(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> GqlResult<FastConnection<Postmortem, ListTotal>> {
        let scope = principal(ctx)?.scope();
        let page = Page::<TimeCursor>::parse(first, after.as_deref(), last, before.as_deref())?;
        let (rows, total) =
            read::postmortems(&domain(ctx).db, scope, &page, wants_total(ctx)).await?;
        Ok(time_connection(
            rows,
            total.map_or(ListTotal::Postmortems, ListTotal::Known),
            |p| TimeCursor {
                at: p.created_at,
                id: p.id,
            },
            Postmortem,
        ))
    }

    /// The audit log, newest first (admins only). `entityId` selects one incident, event or postmortem.
    #[graphql(
        complexity = "crate::graphql::schema::limits::page_complexity(first, None, child_complexity)"
    )]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        entity_id: Option<Uuid>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<FastConnection<AuditEvent, ListTotal>> {
        let principal = principal(ctx)?;
        principal.require_admin()?;
        let page = Page::<TimeCursor>::parse(first, after.as_deref(), None, None)?;
        let db = &domain(ctx).db;
        let (rows, total) =
            read::audit_events(db, principal.scope(), entity_id, &page, wants_total(ctx)).await?;
        Ok(time_connection(
            rows,
            total.map_or(ListTotal::AuditEvents(entity_id), ListTotal::Known),
            |a| TimeCursor {
                at: a.created_at,
                id: a.id,
            },
            AuditEvent,
        ))
    }

    /// The organization's people directory by name; `search` is a case-insensitive substring
    /// of the name or the email.
    #[graphql(
        complexity = "crate::graphql::schema::limits::page_complexity(first, None, child_complexity)"
    )]
    async fn people(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<FastConnection<Person, ListTotal>> {
        let scope = principal(ctx)?.scope();
        let search = input::people_search("search", search)?;
        let page = Page::<NameCursor>::parse(first, after.as_deref(), None, None)?;
        let db = &domain(ctx).db;
        let (rows, total) =
            read::people(db, scope, search.as_deref(), &page, wants_total(ctx)).await?;
        Ok(FastConnection::new(
            rows.has_previous,
            rows.has_next,
            total.map_or(ListTotal::People(search), ListTotal::Known),
            rows.rows
                .into_iter()
                .map(|(p, cursor)| (cursor.encode(), Person(p))),
        ))
    }

    /// Who the bearer token says the caller is.
    async fn viewer(&self, ctx: &Context<'_>) -> GqlResult<Viewer> {
        let p = principal(ctx)?;
        Ok(Viewer {
            user_id: p.user_id,
            organization_id: p.org_id,
            role: p.role,
        })
    }
}

/// Whether the connection this field returns is asked for its `totalCount`: then the page and
/// the count are read in one statement.
fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}
