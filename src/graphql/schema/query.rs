//! Query roots: incidents, postmortems, the audit log and the viewer.

use async_graphql::{Context, Object};
use uuid::Uuid;

use super::context::{domain, principal};
use super::fast::FastConnection;
use super::loaders::PageBatches;
use super::types::{AuditEvent, Incident, ListTotal, Person, Postmortem, Viewer, time_connection};
use crate::graphql::error::GqlResult;
use crate::incident::input::{self, IncidentFilterInput};
use crate::incident::page::{Cursor, NameCursor, Page, TimeCursor};
use crate::incident::read;

#[derive(Default)]
pub struct IncidentQuery;

#[Object]
impl IncidentQuery {
    async fn incident(&self, ctx: &Context<'_>, id: Uuid) -> GqlResult<Option<Incident>> {
        let scope = principal(ctx)?.scope();
        Ok(Some(Incident(
            read::incident(&domain(ctx).db, scope, id).await?,
        )))
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
        let rows = read::incidents(&domain(ctx).db, scope, &filter, &page).await?;
        if let Some(batches) = ctx.data_opt::<PageBatches>() {
            batches.register(rows.rows.iter().map(|i| i.id).collect());
        }
        Ok(time_connection(
            rows,
            ListTotal::Incidents(filter),
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
        let rows = read::postmortems(&domain(ctx).db, scope, &page).await?;
        Ok(time_connection(
            rows,
            ListTotal::Postmortems,
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
        let rows = read::audit_events(&domain(ctx).db, principal.scope(), entity_id, &page).await?;
        Ok(time_connection(
            rows,
            ListTotal::AuditEvents(entity_id),
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
        let rows = read::people(&domain(ctx).db, scope, search.as_deref(), &page).await?;
        Ok(FastConnection::new(
            rows.has_previous,
            rows.has_next,
            ListTotal::People(search),
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
