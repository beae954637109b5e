//! Reads: single rows, keyset-paginated lists, and the batched lookups behind GraphQL's
//! DataLoaders. Every function takes an `OrgScope`, so every query is the caller's organization's.

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic, Iterable,
    QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select, StreamTrait,
};
use uuid::Uuid;

use futures_util::TryStreamExt;

use super::OrgScope;
use super::budget::{ResponseBudget, event_bytes};
use super::input::IncidentFilter;
use super::page::{NameCursor, Page, PageOf, TimeCursor};
use super::workflow;
use crate::db::Db;
use crate::entity::by_index::ByIndex;
use crate::entity::{
    Status, audit_event, incident, incident_event, incident_role, person, postmortem,
};
use crate::error::{AppError, AppResult};

pub use super::scope::EventWindow;

pub async fn incident(db: &Db, scope: OrgScope, id: Uuid) -> AppResult<incident::Model> {
    scope
        .incidents()
        .filter(incident::Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or(AppError::NotFound("incident"))
}

/// An incident with what its detail page nests under it, read in one statement.
pub struct Detail {
    pub incident: incident::Model,
    /// The window asked for, in its order (newest first when taken backward); empty when
    /// none was asked for.
    pub events: Vec<Arc<incident_event::Model>>,
    /// When asked for: the postmortem, or `Some(None)` when it has none.
    pub postmortem: Option<Option<postmortem::Model>>,
}

/// A row of `OrgScope::incident_detail` (the incident's is one of many, so it is boxed).
enum DetailRow {
    Incident(Box<(incident::Model, Option<postmortem::Model>)>),
    Event(incident_event::Model),
}

impl DetailRow {
    /// Reads a row by index: the incident's columns, the postmortem's, then (when a window was
    /// asked for) the event's, each in `Column::iter()` order, and the part last.
    fn read(row: &sea_orm::QueryResult) -> Result<Self, sea_orm::DbErr> {
        use super::scope::DETAIL_PART;
        let postmortem_at = <incident::Model as ByIndex>::width();
        let event_at = postmortem_at + <postmortem::Model as ByIndex>::width();
        if row.try_get::<i32>("", DETAIL_PART)? != 0 {
            return Ok(DetailRow::Event(incident_event::Model::by_index(
                row, event_at,
            )?));
        }
        let incident = incident::Model::by_index(row, 0)?;
        // The postmortem's id is NULL when it has none (or none was asked for).
        let id_at = postmortem::Column::iter()
            .position(|c| matches!(c, postmortem::Column::Id))
            .unwrap_or(0);
        let postmortem_id: Option<Uuid> = row.try_get_by_index(postmortem_at + id_at)?;
        let postmortem = match postmortem_id {
            Some(_) => Some(postmortem::Model::by_index(row, postmortem_at)?),
            None => None,
        };
        Ok(DetailRow::Incident(Box::new((incident, postmortem))))
    }
}

/// The incident, and in the same statement (one round trip, one connection) one `window` of
/// its events and its postmortem (`with_postmortem`): a detail page. The events are charged to
/// `budget` as they are read, as `event_windows` charges them. `NOT_FOUND` when the incident
/// is not the organization's; its events and postmortem are then not read either.
pub async fn incident_detail(
    db: &Db,
    scope: OrgScope,
    id: Uuid,
    window: Option<&EventWindow>,
    with_postmortem: bool,
    budget: Option<&ResponseBudget>,
) -> AppResult<Detail> {
    let stmt = scope.incident_detail(db.backend(), id, window, with_postmortem);
    let mut rows = db.stream_raw(stmt).await?;
    let (mut head, mut events) = (None, Vec::new());
    while let Some(row) = rows.try_next().await? {
        match DetailRow::read(&row)? {
            DetailRow::Incident(row) => head = Some(*row),
            DetailRow::Event(event) => {
                if let Some(budget) = budget {
                    budget.charge_loaded(event_bytes(&event))?;
                }
                events.push(Arc::new(event));
            }
        }
    }
    let (incident, postmortem) = head.ok_or(AppError::NotFound("incident"))?;
    // The parts of a `UNION ALL` come in no promised order; the window's is its sequence.
    events.sort_unstable_by_key(|e| e.sequence);
    if window.is_some_and(|w| w.backward) {
        events.reverse();
    }
    Ok(Detail {
        incident,
        events,
        postmortem: with_postmortem.then_some(postmortem),
    })
}

pub(crate) fn filtered(
    db: &Db,
    scope: OrgScope,
    filter: &IncidentFilter,
) -> Select<incident::Entity> {
    use incident::Column as C;
    let mut q = scope.incidents();
    if let Some(statuses) = &filter.status {
        q = q.filter(C::Status.is_in(statuses.iter().copied()));
    }
    if let Some(severities) = &filter.severity {
        q = q.filter(C::Severity.is_in(severities.iter().copied()));
    }
    if let Some(search) = &filter.search {
        // Lowercased by the filter's parse, as the title is here.
        let pattern = format!("%{}%", escape_like(search));
        q = q.filter(
            Expr::expr(Func::lower(Expr::col((incident::Entity, C::Title))))
                .like(LikeExpr::new(pattern).escape('\\')),
        );
    }
    if let Some(after) = filter.started_after {
        q = q.filter(C::StartedAt.gt(after));
    }
    if let Some(before) = filter.started_before {
        q = q.filter(C::StartedAt.lt(before));
    }
    if let Some(problem) = filter.linked_problem_id {
        q = q.filter(C::LinkedProblemId.eq(problem));
    }
    if let Some(ticket) = &filter.linked_ticket_id {
        q = q.filter(OrgScope::links_ticket(db.backend(), ticket));
    }
    if let Some(person) = filter.person {
        q = q.filter(scope.holds_role(person));
    }
    if let Some(awaiting) = filter.awaiting_postmortem {
        // `workflow::awaiting_postmortem` in SQL: resolved, the highest severity ever (the
        // larger of the two columns; a row from before `highest_severity` has NULL there)
        // needs a postmortem, and none exists. No term is NULL, so `NOT` is its complement.
        let severities = workflow::POSTMORTEM_SEVERITIES;
        let needs = Condition::any()
            .add(
                Condition::all()
                    .add(C::HighestSeverity.is_not_null())
                    .add(C::HighestSeverity.is_in(severities)),
            )
            .add(C::Severity.is_in(severities));
        let waiting = Condition::all()
            .add(C::Status.eq(Status::Resolved))
            .add(needs)
            .add(scope.postmortem_exists().not());
        q = q.filter(if awaiting { waiting } else { waiting.not() });
    }
    q
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Applies a (created_at, id) keyset page to a list shown newest first.
fn newest_first<E, C>(mut q: Select<E>, ts: C, id: C, page: &Page<TimeCursor>) -> Select<E>
where
    E: EntityTrait,
    C: ColumnTrait,
{
    if let Some(after) = page.after {
        q = q.filter(
            Condition::any()
                .add(ts.lt(after.at))
                .add(Condition::all().add(ts.eq(after.at)).add(id.lt(after.id))),
        );
    }
    if let Some(before) = page.before {
        q = q.filter(
            Condition::any()
                .add(ts.gt(before.at))
                .add(Condition::all().add(ts.eq(before.at)).add(id.gt(before.id))),
        );
    }
    let q = if page.backward {
        q.order_by_asc(ts).order_by_asc(id)
    } else {
        q.order_by_desc(ts).order_by_desc(id)
    };
    q.limit(page.fetch())
}

/// A page of incidents and, with `total`, the number the filter selects (`totalCount`), read
/// in the same statement.
pub async fn incidents(
    db: &Db,
    scope: OrgScope,
    filter: &IncidentFilter,
    page: &Page<TimeCursor>,
    total: bool,
) -> AppResult<(PageOf<incident::Model>, Option<u64>)> {
    use incident::Column as C;
    newest_first_page(
        db,
        filtered(db, scope, filter),
        C::CreatedAt,
        C::Id,
        page,
        total,
    )
    .await
}

/// A page of `list`, newest first, and with `total` the number of its rows (see `listed`).
async fn newest_first_page<E>(
    db: &Db,
    list: Select<E>,
    ts: E::Column,
    id: E::Column,
    page: &Page<TimeCursor>,
    total: bool,
) -> AppResult<(PageOf<E::Model>, Option<u64>)>
where
    E: EntityTrait,
    E::Model: ListRow,
{
    let q = newest_first(list.clone(), ts, id, page);
    let direction = if page.backward {
        sea_orm::Order::Asc
    } else {
        sea_orm::Order::Desc
    };
    let order = [(ts.as_str(), direction.clone()), (id.as_str(), direction)];
    let columns = E::Column::iter().map(|c| c.as_str().to_owned());
    let (rows, total) = listed(db, q, total.then_some(list), columns, &order).await?;
    Ok((PageOf::from_fetched(rows, page), total))
}

/// A row of `scope::with_total`: one of the page's, or none when the page is empty.
struct WithTotal<M> {
    row: Option<M>,
    total: i64,
}

impl<M: ListRow> WithTotal<M> {
    fn read(row: &QueryResult) -> Result<Self, sea_orm::DbErr> {
        let id: Option<Uuid> = row.try_get("", "id")?;
        Ok(WithTotal {
            row: id.map(|_| M::read(row)).transpose()?,
            total: row.try_get("", super::scope::TOTAL)?,
        })
    }
}

/// A listed row, its table's columns first in `Column::iter()` order: read by index where the
/// table has a reader for that (the pages whose size the profile shows), by name otherwise.
pub(crate) trait ListRow: Sized {
    fn read(row: &QueryResult) -> Result<Self, sea_orm::DbErr>;
}

impl ListRow for incident::Model {
    fn read(row: &QueryResult) -> Result<Self, sea_orm::DbErr> {
        Self::by_index(row, 0)
    }
}

impl ListRow for postmortem::Model {
    fn read(row: &QueryResult) -> Result<Self, sea_orm::DbErr> {
        Self::by_index(row, 0)
    }
}

impl ListRow for audit_event::Model {
    fn read(row: &QueryResult) -> Result<Self, sea_orm::DbErr> {
        Self::from_query_result(row, "")
    }
}

impl ListRow for Listed {
    fn read(row: &QueryResult) -> Result<Self, sea_orm::DbErr> {
        Self::from_query_result(row, "")
    }
}

/// Rows of a statement that selects one entity's columns (what its `find()` selects).
fn decoded<M: ListRow>(rows: &[QueryResult]) -> AppResult<Vec<M>> {
    Ok(rows.iter().map(M::read).collect::<Result<_, _>>()?)
}

/// The rows `page` selects (named `columns`, in `order`: the page's own order on those
/// names) and, given the `list` it pages through, the number of rows the list holds, in the
/// same statement (`scope::with_total`): a page with its `totalCount` is one round trip.
async fn listed<E, M>(
    db: &Db,
    page: Select<E>,
    list: Option<Select<E>>,
    columns: impl IntoIterator<Item = String>,
    order: &[(&str, sea_orm::Order)],
) -> AppResult<(Vec<M>, Option<u64>)>
where
    E: EntityTrait,
    M: ListRow,
{
    let Some(list) = list else {
        return Ok((decoded(&db.query_all(&page.into_query()).await?)?, None));
    };
    let stmt = super::scope::with_total(
        page.into_query(),
        counting(list, super::scope::TOTAL).into_query(),
        columns,
        order,
    );
    let rows = db
        .query_all(&stmt)
        .await?
        .iter()
        .map(WithTotal::<M>::read)
        .collect::<Result<Vec<_>, _>>()?;
    let total = rows
        .first()
        .map_or(0, |r| u64::try_from(r.total).unwrap_or(0));
    Ok((
        rows.into_iter().filter_map(|r| r.row).collect(),
        Some(total),
    ))
}

/// `COUNT(*)` over `q`'s table and conditions, as `name`: sea-orm's `count` wraps a subquery
/// that names every column.
fn counting<E: EntityTrait>(q: Select<E>, name: &str) -> Select<E> {
    q.select_only().expr_as(Expr::col(Asterisk).count(), name)
}

/// The number of rows `q` selects.
async fn count<E: EntityTrait>(db: &Db, q: Select<E>) -> AppResult<u64> {
    let n: Option<i64> = counting(q, "n").into_tuple().one(db).await?;
    Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
}

pub async fn count_incidents(db: &Db, scope: OrgScope, filter: &IncidentFilter) -> AppResult<u64> {
    count(db, filtered(db, scope, filter)).await
}

/// A page of postmortems and, with `total`, their number, in the same statement.
pub async fn postmortems(
    db: &Db,
    scope: OrgScope,
    page: &Page<TimeCursor>,
    total: bool,
) -> AppResult<(PageOf<postmortem::Model>, Option<u64>)> {
    use postmortem::Column as C;
    newest_first_page(db, scope.postmortems(), C::CreatedAt, C::Id, page, total).await
}

pub async fn count_postmortems(db: &Db, scope: OrgScope) -> AppResult<u64> {
    count(db, scope.postmortems()).await
}

fn audit_query(scope: OrgScope, entity_id: Option<Uuid>) -> Select<audit_event::Entity> {
    let q = scope.audit_events();
    match entity_id {
        Some(id) => q.filter(
            Condition::any()
                .add(audit_event::Column::EntityId.eq(id))
                .add(audit_event::Column::IncidentId.eq(id)),
        ),
        None => q,
    }
}

/// A page of the audit log and, with `total`, the number of its rows, in the same statement.
pub async fn audit_events(
    db: &Db,
    scope: OrgScope,
    entity_id: Option<Uuid>,
    page: &Page<TimeCursor>,
    total: bool,
) -> AppResult<(PageOf<audit_event::Model>, Option<u64>)> {
    use audit_event::Column as C;
    let list = audit_query(scope, entity_id);
    newest_first_page(db, list, C::CreatedAt, C::Id, page, total).await
}

pub async fn count_audit_events(
    db: &Db,
    scope: OrgScope,
    entity_id: Option<Uuid>,
) -> AppResult<u64> {
    count(db, audit_query(scope, entity_id)).await
}

/// The key people are listed by: the lowercased name, or the empty string for someone unnamed.
fn name_key() -> sea_orm::sea_query::SimpleExpr {
    let name = Expr::expr(Func::lower(Expr::col((
        person::Entity,
        person::Column::Name,
    ))));
    Func::coalesce([name, Expr::val("")]).into()
}

fn people_query(scope: OrgScope, search: Option<&str>) -> Select<person::Entity> {
    let mut q = scope.people();
    if let Some(search) = search {
        // Lowercased by the caller, as name and email are here.
        let pattern = format!("%{}%", escape_like(search));
        let like = |column: person::Column| {
            Expr::expr(Func::lower(Expr::col((person::Entity, column))))
                .like(LikeExpr::new(pattern.clone()).escape('\\'))
        };
        q = q.filter(
            Condition::any()
                .add(like(person::Column::Name))
                .add(like(person::Column::Email)),
        );
    }
    q
}

/// A listed person with the key they sort by, as the database computed it: the next page's
/// cursor must compare as the database compares (SQLite's `LOWER` folds ASCII only).
#[derive(Debug, FromQueryResult)]
struct Listed {
    organization_id: Uuid,
    id: Uuid,
    issuer: Option<String>,
    subject: Option<String>,
    name: Option<String>,
    email: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    sort_key: String,
}

/// The organization's people whose name or email contains `search` (lowercased), by name;
/// each with the cursor that names its place. With `total`, their number too, in the same
/// statement.
pub async fn people(
    db: &Db,
    scope: OrgScope,
    search: Option<&str>,
    page: &Page<NameCursor>,
    total: bool,
) -> AppResult<(PageOf<(person::Model, NameCursor)>, Option<u64>)> {
    let list = people_query(scope, search);
    let mut q = list.clone();
    if let Some(after) = &page.after {
        q = q.filter(
            Condition::any().add(name_key().gt(after.name.clone())).add(
                Condition::all()
                    .add(name_key().eq(after.name.clone()))
                    .add(person::Column::Id.gt(after.id)),
            ),
        );
    }
    let q = q
        .column_as(name_key(), SORT_KEY)
        .order_by(name_key(), sea_orm::Order::Asc)
        .order_by_asc(person::Column::Id)
        .limit(page.fetch());
    let columns = person::Column::iter()
        .map(|c| c.as_str().to_owned())
        .chain([SORT_KEY.to_owned()]);
    let order = [
        (SORT_KEY, sea_orm::Order::Asc),
        (person::Column::Id.as_str(), sea_orm::Order::Asc),
    ];
    let (rows, total) = listed::<_, Listed>(db, q, total.then_some(list), columns, &order).await?;
    let rows = rows
        .into_iter()
        .map(|r| {
            let cursor = NameCursor {
                name: r.sort_key,
                id: r.id,
            };
            let person = person::Model {
                organization_id: r.organization_id,
                id: r.id,
                issuer: r.issuer,
                subject: r.subject,
                name: r.name,
                email: r.email,
                created_at: r.created_at,
                updated_at: r.updated_at,
            };
            (person, cursor)
        })
        .collect();
    Ok((PageOf::from_fetched(rows, page), total))
}

/// The column a listed person's sort key is read from.
const SORT_KEY: &str = "sort_key";

pub async fn count_people(db: &Db, scope: OrgScope, search: Option<&str>) -> AppResult<u64> {
    count(db, people_query(scope, search)).await
}

pub async fn people_by_id(db: &Db, scope: OrgScope, ids: &[Uuid]) -> AppResult<Vec<person::Model>> {
    Ok(scope
        .people()
        .filter(person::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

/// The role holders of these incidents, in role order.
pub async fn roles_of(
    db: &Db,
    scope: OrgScope,
    incident_ids: &[Uuid],
) -> AppResult<Vec<incident_role::Model>> {
    Ok(scope
        .roles()
        .filter(incident_role::Column::IncidentId.is_in(incident_ids.iter().copied()))
        .order_by_asc(incident_role::Column::IncidentId)
        .all(db)
        .await?)
}

pub async fn incidents_by_id(
    db: &Db,
    scope: OrgScope,
    ids: &[Uuid],
) -> AppResult<Vec<incident::Model>> {
    Ok(scope
        .incidents()
        .filter(incident::Column::Id.is_in(ids.iter().copied()))
        .all(db)
        .await?)
}

pub async fn postmortems_by_incident(
    db: &Db,
    scope: OrgScope,
    incident_ids: &[Uuid],
) -> AppResult<Vec<postmortem::Model>> {
    let q = scope
        .postmortems()
        .filter(postmortem::Column::IncidentId.is_in(incident_ids.iter().copied()));
    decoded(&db.query_all(&q.into_query()).await?)
}

/// One window of events for each incident, in one statement; grouped by incident, in window
/// order. Rows are read one by one and charged to `budget`, so a page of large events stops
/// loading once the response could not carry it anyway. Each row is shared (`Arc`): the fields
/// that ask for one window of one incident (aliases, a page's nested fields) hold one copy of
/// its text between them, which is what the budget charged.
pub async fn event_windows(
    db: &Db,
    scope: OrgScope,
    incident_ids: &[Uuid],
    window: &EventWindow,
    budget: Option<&ResponseBudget>,
) -> AppResult<HashMap<Uuid, Vec<Arc<incident_event::Model>>>> {
    let stmt = scope.events_window(db.backend(), incident_ids, window);
    let mut rows = db.stream_raw(stmt).await?;
    let mut grouped: HashMap<Uuid, Vec<Arc<incident_event::Model>>> = HashMap::new();
    while let Some(row) = rows.try_next().await? {
        let row = incident_event::Model::by_index(&row, 0)?;
        if let Some(budget) = budget {
            budget.charge_loaded(event_bytes(&row))?;
        }
        grouped
            .entry(row.incident_id)
            .or_default()
            .push(Arc::new(row));
    }
    Ok(grouped)
}

pub async fn event_counts(
    db: &Db,
    scope: OrgScope,
    incident_ids: &[Uuid],
    types: Option<&[String]>,
) -> AppResult<HashMap<Uuid, u64>> {
    let mut q = scope
        .events()
        .select_only()
        .column(incident_event::Column::IncidentId)
        .column_as(incident_event::Column::Id.count(), "n")
        .filter(incident_event::Column::IncidentId.is_in(incident_ids.iter().copied()))
        .group_by(incident_event::Column::IncidentId);
    if let Some(types) = types {
        q = q.filter(incident_event::Column::EventType.is_in(types.iter().cloned()));
    }
    let rows: Vec<(Uuid, i64)> = q.into_tuple().all(db).await?;
    Ok(rows
        .into_iter()
        .map(|(id, n)| (id, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// Up to `limit` events of one incident after `after_sequence`, oldest first, and at most about
/// `max_bytes` of them (always at least one): a subscription's replay, a REST page.
pub struct EventBatch {
    pub rows: Vec<incident_event::Model>,
    /// Whether the timeline ended within this batch (nothing after its last row, for now).
    pub complete: bool,
}

pub async fn events_after(
    db: &Db,
    scope: OrgScope,
    incident_id: Uuid,
    after_sequence: i64,
    limit: u64,
    max_bytes: usize,
) -> AppResult<EventBatch> {
    let mut stream = scope
        .events()
        .filter(incident_event::Column::IncidentId.eq(incident_id))
        .filter(incident_event::Column::Sequence.gt(after_sequence))
        .order_by_asc(incident_event::Column::Sequence)
        .limit(limit.saturating_add(1))
        .stream(db)
        .await?;
    let (mut rows, mut bytes, mut complete) = (Vec::new(), 0usize, true);
    while let Some(row) = stream.try_next().await? {
        if rows.len() as u64 == limit {
            // The row past the limit only says there is more. It is the statement's last, so
            // the stream is still read to its end: a statement read to its end leaves its
            // connection ready for the next without a ping.
            complete = false;
            continue;
        }
        if !rows.is_empty() && bytes >= max_bytes {
            complete = false;
            break;
        }
        bytes += event_bytes(&row);
        rows.push(row);
    }
    Ok(EventBatch { rows, complete })
}

/// What the change feed reads for one batch of announcements, several organizations at once:
/// the incidents, the announced events, and the audit rows of updates (`changes` only).
pub struct Announced {
    pub incidents: Vec<incident::Model>,
    pub events: Vec<incident_event::Model>,
    pub audits: HashMap<Uuid, serde_json::Value>,
    /// The people holding a role on each incident, by (organization, incident).
    pub holders: HashMap<(Uuid, Uuid), Vec<Uuid>>,
}

/// One round trip per kind of row, however many announcements and organizations: every key
/// carries its organization.
pub async fn announced(
    db: &Db,
    incidents: &[(OrgScope, Uuid)],
    events: &[(OrgScope, Uuid, i64)],
    audits: &[(OrgScope, Uuid)],
) -> AppResult<Announced> {
    let (incidents, holders) = if incidents.is_empty() {
        (Vec::new(), HashMap::new())
    } else {
        let mut holders: HashMap<(Uuid, Uuid), Vec<Uuid>> = HashMap::new();
        for role in OrgScope::roles_of(incidents).all(db).await? {
            holders
                .entry((role.organization_id, role.incident_id))
                .or_default()
                .push(role.person_id);
        }
        (OrgScope::incidents_of(incidents).all(db).await?, holders)
    };
    let events = if events.is_empty() {
        Vec::new()
    } else {
        OrgScope::events_of(events).all(db).await?
    };
    let audits = if audits.is_empty() {
        HashMap::new()
    } else {
        OrgScope::audit_events_of(audits)
            .all(db)
            .await?
            .into_iter()
            .map(|row| (row.id, row.changes))
            .collect()
    };
    Ok(Announced {
        incidents,
        events,
        audits,
        holders,
    })
}

/// Which of these incidents (several organizations' at once, each key with its organization)
/// have a postmortem: the change feed asks for the ones whose filter answer depends on it.
pub async fn with_postmortem(
    db: &Db,
    incidents: &[(OrgScope, Uuid)],
) -> AppResult<std::collections::HashSet<(Uuid, Uuid)>> {
    if incidents.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(Uuid, Uuid)> = OrgScope::postmortems_of(incidents)
        .select_only()
        .column(postmortem::Column::OrganizationId)
        .column(postmortem::Column::IncidentId)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().collect())
}
