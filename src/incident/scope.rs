//! An organization's view of the database, and the only place that names the tenant tables or
//! writes SQL against them (other modules run what it builds).
//!
//! Every query and every write starts from an `OrgScope`, whose builders already carry
//! `organization_id = <caller's org>`; inserts take the organization from the scope, never from
//! input. A test (`tenancy_is_structural` in `tests/api/tenancy.rs`) fails when code outside this
//! file queries an entity directly, so an unscoped query cannot be written by accident.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{
    Alias, Asterisk, Expr, ExprTrait, JoinType, Order, Query, SelectStatement, SimpleExpr,
    UnionType,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseBackend, DbErr, EntityTrait,
    IdenStatic, Iterable, QueryFilter, QuerySelect, Select, Statement, TryInsertResult, Value,
};
use uuid::Uuid;

use crate::entity::{
    IncidentRole, audit_event, incident, incident_event, incident_role, person, postmortem,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrgScope {
    org_id: Uuid,
}

impl OrgScope {
    pub(crate) fn new(org_id: Uuid) -> OrgScope {
        OrgScope { org_id }
    }

    pub fn org_id(&self) -> Uuid {
        self.org_id
    }

    pub fn incidents(&self) -> Select<incident::Entity> {
        incident::Entity::find().filter(incident::Column::OrganizationId.eq(self.org_id))
    }

    pub fn events(&self) -> Select<incident_event::Entity> {
        incident_event::Entity::find()
            .filter(incident_event::Column::OrganizationId.eq(self.org_id))
    }

    pub fn postmortems(&self) -> Select<postmortem::Entity> {
        postmortem::Entity::find().filter(postmortem::Column::OrganizationId.eq(self.org_id))
    }

    pub fn people(&self) -> Select<person::Entity> {
        person::Entity::find().filter(person::Column::OrganizationId.eq(self.org_id))
    }

    /// People of several organizations by id, each named with its organization.
    pub fn people_of(keys: &[(OrgScope, Uuid)]) -> Select<person::Entity> {
        person::Entity::find().filter(each_in_its_org(
            keys,
            person::Column::OrganizationId,
            person::Column::Id,
        ))
    }

    /// Writes the person, or refreshes what the directory knows of them (issuer, subject, name,
    /// email) when they are already in it; `created_at` stays the first sighting.
    pub async fn upsert_person<C: ConnectionTrait>(
        &self,
        db: &C,
        mut row: person::ActiveModel,
    ) -> Result<(), DbErr> {
        use person::Column as C;
        row.organization_id = Set(self.org_id);
        person::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([C::OrganizationId, C::Id])
                    .update_columns([C::Issuer, C::Subject, C::Name, C::Email, C::UpdatedAt])
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    /// Adds the person to the directory unless they are in it already (then nothing changes):
    /// a writer who is not known yet gets a row a role can name.
    pub async fn insert_person_if_absent<C: ConnectionTrait>(
        &self,
        db: &C,
        mut row: person::ActiveModel,
    ) -> Result<(), DbErr> {
        row.organization_id = Set(self.org_id);
        let result = person::Entity::insert(row)
            .on_conflict_do_nothing()
            .exec_without_returning(db)
            .await;
        inserted(result).map(|_| ())
    }

    pub fn roles(&self) -> Select<incident_role::Entity> {
        incident_role::Entity::find().filter(incident_role::Column::OrganizationId.eq(self.org_id))
    }

    /// The role holders of several organizations' incidents, each named with its organization.
    pub fn roles_of(keys: &[(OrgScope, Uuid)]) -> Select<incident_role::Entity> {
        incident_role::Entity::find().filter(each_in_its_org(
            keys,
            incident_role::Column::OrganizationId,
            incident_role::Column::IncidentId,
        ))
    }

    /// Gives the role to `row`'s person, replacing whoever held it.
    pub async fn put_role<C: ConnectionTrait>(
        &self,
        txn: &C,
        mut row: incident_role::ActiveModel,
    ) -> Result<(), DbErr> {
        use incident_role::Column as C;
        row.organization_id = Set(self.org_id);
        incident_role::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::columns([
                    C::OrganizationId,
                    C::IncidentId,
                    C::Role,
                ])
                .update_columns([C::PersonId, C::AssignedAt, C::AssignedBy])
                .to_owned(),
            )
            .exec_without_returning(txn)
            .await?;
        Ok(())
    }

    /// Takes the role away; whether anyone held it.
    pub async fn delete_role<C: ConnectionTrait>(
        &self,
        txn: &C,
        incident_id: Uuid,
        role: IncidentRole,
    ) -> Result<bool, DbErr> {
        use incident_role::Column as C;
        let result = incident_role::Entity::delete_many()
            .filter(C::OrganizationId.eq(self.org_id))
            .filter(C::IncidentId.eq(incident_id))
            .filter(C::Role.eq(role))
            .exec(txn)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// The condition "`person` holds a role on the incident (a row of `incidents()`)", in the scope.
    pub fn holds_role(&self, person: Uuid) -> SimpleExpr {
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(incident_role::Entity)
                .and_where(
                    Expr::col((incident_role::Entity, incident_role::Column::OrganizationId))
                        .eq(self.org_id),
                )
                .and_where(
                    Expr::col((incident_role::Entity, incident_role::Column::IncidentId))
                        .equals((incident::Entity, incident::Column::Id)),
                )
                .and_where(
                    Expr::col((incident_role::Entity, incident_role::Column::PersonId)).eq(person),
                )
                .to_owned(),
        )
    }

    pub fn audit_events(&self) -> Select<audit_event::Entity> {
        audit_event::Entity::find().filter(audit_event::Column::OrganizationId.eq(self.org_id))
    }

    /// Incidents of several organizations at once, each named with its own organization
    /// (`(organization_id = o AND id = i) OR …`): the change feed reads what many writers
    /// announced in one round trip, and no row is ever matched by its id alone.
    pub fn incidents_of(keys: &[(OrgScope, Uuid)]) -> Select<incident::Entity> {
        incident::Entity::find().filter(each_in_its_org(
            keys,
            incident::Column::OrganizationId,
            incident::Column::Id,
        ))
    }

    /// Events of several organizations' incidents by their place in the timeline, each named
    /// with its organization.
    pub fn events_of(keys: &[(OrgScope, Uuid, i64)]) -> Select<incident_event::Entity> {
        use incident_event::Column as C;
        let any = keys.iter().fold(
            sea_orm::Condition::any(),
            |any, (scope, incident_id, seq)| {
                any.add(
                    C::OrganizationId
                        .eq(scope.org_id)
                        .and(C::IncidentId.eq(*incident_id))
                        .and(C::Sequence.eq(*seq)),
                )
            },
        );
        incident_event::Entity::find().filter(any)
    }

    /// Audit rows of several organizations, each named with its organization.
    pub fn audit_events_of(keys: &[(OrgScope, Uuid)]) -> Select<audit_event::Entity> {
        audit_event::Entity::find().filter(each_in_its_org(
            keys,
            audit_event::Column::OrganizationId,
            audit_event::Column::Id,
        ))
    }

    /// Postmortems of several organizations' incidents, each named with its organization.
    pub fn postmortems_of(keys: &[(OrgScope, Uuid)]) -> Select<postmortem::Entity> {
        postmortem::Entity::find().filter(each_in_its_org(
            keys,
            postmortem::Column::OrganizationId,
            postmortem::Column::IncidentId,
        ))
    }

    /// The condition "the incident (a row of `incidents()`) has a postmortem", in the scope.
    pub fn postmortem_exists(&self) -> SimpleExpr {
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from(postmortem::Entity)
                .and_where(
                    Expr::col((postmortem::Entity, postmortem::Column::OrganizationId))
                        .eq(self.org_id),
                )
                .and_where(
                    Expr::col((postmortem::Entity, postmortem::Column::IncidentId))
                        .equals((incident::Entity, incident::Column::Id)),
                )
                .to_owned(),
        )
    }

    /// The condition "the incident links `ticket`", on the JSON array each database stores.
    pub fn links_ticket(backend: DatabaseBackend, ticket: &str) -> SimpleExpr {
        match backend {
            DatabaseBackend::Postgres => Expr::cust_with_values(
                r#""incident_records"."linked_ticket_ids" @> CAST($1 AS jsonb)"#,
                [serde_json::json!([ticket]).to_string()],
            ),
            _ => Expr::cust_with_values(
                r#"EXISTS (SELECT 1 FROM json_each("incident_records"."linked_ticket_ids") WHERE json_each.value = ?)"#,
                [ticket.to_string()],
            ),
        }
    }

    /// Reads the incident and, on PostgreSQL, locks its row until the transaction ends, so the
    /// writers of one incident (transitions, events, postmortems) run one after another.
    pub async fn lock_incident<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: Uuid,
    ) -> Result<Option<incident::Model>, DbErr> {
        self.incidents()
            .filter(incident::Column::Id.eq(id))
            .lock_exclusive()
            .one(txn)
            .await
    }

    /// Inserts unless the id exists (in any organization); `false` when it did.
    pub async fn try_insert_incident<C: ConnectionTrait>(
        &self,
        txn: &C,
        mut row: incident::ActiveModel,
    ) -> Result<bool, DbErr> {
        row.organization_id = Set(self.org_id);
        let result = incident::Entity::insert(row)
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await;
        inserted(result)
    }

    pub async fn update_incident<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: Uuid,
        row: incident::ActiveModel,
    ) -> Result<(), DbErr> {
        let result = incident::Entity::update_many()
            .set(row)
            .filter(incident::Column::Id.eq(id))
            .filter(incident::Column::OrganizationId.eq(self.org_id))
            .exec(txn)
            .await?;
        expect_one(result.rows_affected)
    }

    /// Inserts unless the id exists (in any organization); `false` when it did.
    pub async fn try_insert_event<C: ConnectionTrait>(
        &self,
        txn: &C,
        mut row: incident_event::ActiveModel,
    ) -> Result<bool, DbErr> {
        row.organization_id = Set(self.org_id);
        let result = incident_event::Entity::insert(row)
            .on_conflict_do_nothing()
            .exec_without_returning(txn)
            .await;
        inserted(result)
    }

    /// The highest sequence in an incident's timeline (0 when empty) and the latest event time.
    /// Call under the incident's lock.
    pub async fn timeline_end<C: ConnectionTrait>(
        &self,
        txn: &C,
        incident_id: Uuid,
    ) -> Result<(i64, Option<DateTime<Utc>>), DbErr> {
        let row: Option<(Option<i64>, Option<DateTime<Utc>>)> = self
            .events()
            .select_only()
            .column_as(incident_event::Column::Sequence.max(), "max_sequence")
            .column_as(incident_event::Column::CreatedAt.max(), "max_created_at")
            .filter(incident_event::Column::IncidentId.eq(incident_id))
            .into_tuple()
            .one(txn)
            .await?;
        let (sequence, at) = row.unwrap_or((None, None));
        Ok((sequence.unwrap_or(0), at))
    }

    pub async fn insert_postmortem<C: ConnectionTrait>(
        &self,
        txn: &C,
        mut row: postmortem::ActiveModel,
    ) -> Result<(), DbErr> {
        row.organization_id = Set(self.org_id);
        postmortem::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        Ok(())
    }

    pub async fn update_postmortem<C: ConnectionTrait>(
        &self,
        txn: &C,
        id: Uuid,
        row: postmortem::ActiveModel,
    ) -> Result<(), DbErr> {
        let result = postmortem::Entity::update_many()
            .set(row)
            .filter(postmortem::Column::Id.eq(id))
            .filter(postmortem::Column::OrganizationId.eq(self.org_id))
            .exec(txn)
            .await?;
        expect_one(result.rows_affected)
    }

    pub async fn insert_audit<C: ConnectionTrait>(
        &self,
        txn: &C,
        mut row: audit_event::ActiveModel,
    ) -> Result<(), DbErr> {
        row.organization_id = Set(self.org_id);
        audit_event::Entity::insert(row)
            .exec_without_returning(txn)
            .await?;
        Ok(())
    }

    /// The first `fetch` events of each incident in `incident_ids` after/before a sequence, in
    /// one statement, ascending by sequence or descending when `backward`. On PostgreSQL a
    /// `LATERAL … LIMIT` reads only those rows of each incident from the (incident, sequence)
    /// index; elsewhere a window function numbers each incident's rows and the outer query
    /// keeps the first `fetch` of each (it reads every event of the page's incidents).
    pub fn events_window(
        &self,
        backend: DatabaseBackend,
        incident_ids: &[Uuid],
        window: &EventWindow,
    ) -> Statement {
        if backend == DatabaseBackend::Postgres {
            return self.events_lateral(incident_ids, window);
        }
        backend.build(&self.events_row_number(incident_ids, window))
    }

    fn events_lateral(&self, incident_ids: &[Uuid], window: &EventWindow) -> Statement {
        use std::fmt::Write as _;
        let direction = if window.backward { "DESC" } else { "ASC" };
        let mut values: Vec<Value> = Vec::with_capacity(incident_ids.len() + 4);
        let mut param = |v: Value| {
            values.push(v);
            values.len()
        };
        param(self.org_id.into());
        let mut ids = String::with_capacity(incident_ids.len() * 12);
        for (i, id) in incident_ids.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(ids, "{sep}(${}::uuid)", param((*id).into()));
        }
        let mut filter = String::new();
        if let Some(after) = window.after {
            let _ = write!(filter, " AND \"sequence\" > ${}", param(after.into()));
        }
        if let Some(before) = window.before {
            let _ = write!(filter, " AND \"sequence\" < ${}", param(before.into()));
        }
        if let Some(types) = &window.types {
            filter += " AND \"event_type\" IN (";
            for (i, t) in types.iter().enumerate() {
                let sep = if i == 0 { "" } else { ", " };
                let _ = write!(filter, "{sep}${}", param(t.clone().into()));
            }
            filter += ")";
        }
        let limit = param(i64::try_from(window.fetch).unwrap_or(i64::MAX).into());
        // The entity's columns in `Column::iter()` order, as the rows are decoded by index.
        let mut columns = String::new();
        for (i, column) in incident_event::Column::iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            let _ = write!(columns, "{sep}\"e\".\"{}\"", column.as_str());
        }
        let sql = format!(
            "SELECT {columns} \
             FROM (VALUES {ids}) AS \"p\"(\"incident_id\") CROSS JOIN LATERAL (\
             SELECT * FROM \"incident_events\" WHERE \"organization_id\" = $1 \
             AND \"incident_id\" = \"p\".\"incident_id\"{filter} \
             ORDER BY \"sequence\" {direction} LIMIT ${limit}) AS \"e\" \
             ORDER BY \"e\".\"incident_id\" ASC, \"e\".\"sequence\" {direction}"
        );
        Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
    }

    fn events_row_number(&self, incident_ids: &[Uuid], window: &EventWindow) -> SelectStatement {
        let direction = if window.backward { "DESC" } else { "ASC" };
        let mut inner = Query::select();
        inner
            .columns(incident_event::Column::iter())
            .expr_as(
                Expr::cust(format!(
                    "ROW_NUMBER() OVER (PARTITION BY \"incident_id\" ORDER BY \"sequence\" {direction})"
                )),
                Alias::new("rn"),
            )
            .from(incident_event::Entity)
            .and_where(incident_event::Column::OrganizationId.eq(self.org_id))
            .and_where(incident_event::Column::IncidentId.is_in(incident_ids.iter().copied()));
        if let Some(after) = window.after {
            inner.and_where(incident_event::Column::Sequence.gt(after));
        }
        if let Some(before) = window.before {
            inner.and_where(incident_event::Column::Sequence.lt(before));
        }
        if let Some(types) = &window.types {
            inner.and_where(incident_event::Column::EventType.is_in(types.iter().cloned()));
        }
        let order = if window.backward {
            Order::Desc
        } else {
            Order::Asc
        };
        Query::select()
            .column(Asterisk)
            .from_subquery(inner, Alias::new("w"))
            .and_where(Expr::col(Alias::new("rn")).lte(window.fetch))
            .order_by(Alias::new("incident_id"), Order::Asc)
            .order_by(Alias::new("sequence"), order)
            .to_owned()
    }

    /// An incident's detail in one statement: the incident (joined with its postmortem when
    /// `with_postmortem`) as one row, and, when a `window` is given, that window of its events
    /// as the rows after it (`UNION ALL`), each part naming the organization. Columns are
    /// `i_`, `p_` and `e_` followed by the entity's column names, in each entity's column
    /// order, then `part` (0 for the incident, 1 for an event); a part fills the others'
    /// columns with NULL. The rows come in no particular order. On PostgreSQL each part is an
    /// index lookup: the incident by (organization, id), the postmortem by its incident, the
    /// events by (organization, incident), as many as the window takes.
    pub fn incident_detail(
        &self,
        backend: DatabaseBackend,
        id: Uuid,
        window: Option<&EventWindow>,
        with_postmortem: bool,
    ) -> Statement {
        let mut head = Query::select();
        for c in incident::Column::iter() {
            head.expr_as(
                c.select_as(Expr::col((incident::Entity, c))),
                prefixed(DETAIL_INCIDENT, c),
            );
        }
        for c in postmortem::Column::iter() {
            let value = if with_postmortem {
                c.select_as(Expr::col((postmortem::Entity, c)))
            } else {
                Expr::cust("NULL")
            };
            head.expr_as(value, prefixed(DETAIL_POSTMORTEM, c));
        }
        if window.is_some() {
            for c in incident_event::Column::iter() {
                head.expr_as(Expr::cust("NULL"), prefixed(DETAIL_EVENT, c));
            }
        }
        head.expr_as(Expr::cust("0"), Alias::new(DETAIL_PART))
            .from(incident::Entity)
            .and_where(incident::Column::OrganizationId.eq(self.org_id))
            .and_where(incident::Column::Id.eq(id));
        if with_postmortem {
            head.left_join(
                postmortem::Entity,
                Expr::col((postmortem::Entity, postmortem::Column::OrganizationId))
                    .eq(self.org_id)
                    .and(
                        Expr::col((postmortem::Entity, postmortem::Column::IncidentId))
                            .equals((incident::Entity, incident::Column::Id)),
                    ),
            );
        }
        if let Some(window) = window {
            head.union(UnionType::All, self.detail_events(id, window));
        }
        backend.build(&head)
    }

    /// The events part of `incident_detail`: the window, read in sequence order up to its end.
    fn detail_events(&self, id: Uuid, window: &EventWindow) -> SelectStatement {
        use incident_event::Column as C;
        let mut events = Query::select();
        events
            .columns(C::iter())
            .from(incident_event::Entity)
            .and_where(C::OrganizationId.eq(self.org_id))
            .and_where(C::IncidentId.eq(id));
        if let Some(after) = window.after {
            events.and_where(C::Sequence.gt(after));
        }
        if let Some(before) = window.before {
            events.and_where(C::Sequence.lt(before));
        }
        if let Some(types) = &window.types {
            events.and_where(C::EventType.is_in(types.iter().cloned()));
        }
        let order = if window.backward {
            Order::Desc
        } else {
            Order::Asc
        };
        events.order_by(C::Sequence, order).limit(window.fetch);
        let e = Alias::new("e");
        let mut tail = Query::select();
        for c in incident::Column::iter() {
            tail.expr_as(Expr::cust("NULL"), prefixed(DETAIL_INCIDENT, c));
        }
        for c in postmortem::Column::iter() {
            tail.expr_as(Expr::cust("NULL"), prefixed(DETAIL_POSTMORTEM, c));
        }
        for c in C::iter() {
            tail.expr_as(
                c.select_as(Expr::col((e.clone(), c))),
                prefixed(DETAIL_EVENT, c),
            );
        }
        tail.expr_as(Expr::cust("1"), Alias::new(DETAIL_PART))
            .from_subquery(events, e)
            .to_owned()
    }
}

/// The prefixes and the discriminating column of `OrgScope::incident_detail`'s rows.
pub const DETAIL_INCIDENT: &str = "i_";
pub const DETAIL_POSTMORTEM: &str = "p_";
pub const DETAIL_EVENT: &str = "e_";
pub const DETAIL_PART: &str = "part";

fn prefixed(prefix: &str, column: impl ColumnTrait) -> Alias {
    Alias::new(format!("{prefix}{}", column.as_str()))
}

/// A page of rows and the number of rows its list holds, in one statement: `page` (a keyset
/// page, its columns named as `columns` says) beside `count` (a `COUNT(*)` over the same
/// conditions, without the cursor, as `total`). The count is the outer side of a left join,
/// so an empty page still answers its total: one row whose page columns are all NULL. `order`
/// repeats the page's order, on its column names.
pub fn with_total(
    page: SelectStatement,
    count: SelectStatement,
    columns: impl IntoIterator<Item = String>,
    order: &[(&str, Order)],
) -> SelectStatement {
    let (p, t) = (Alias::new("p"), Alias::new("t"));
    let mut q = Query::select();
    for column in columns {
        q.column((p.clone(), Alias::new(column)));
    }
    q.column((t.clone(), Alias::new(TOTAL)))
        .from_subquery(count, t)
        .join_subquery(JoinType::LeftJoin, page, p.clone(), Expr::cust("1 = 1"));
    for (column, direction) in order {
        q.order_by((p.clone(), Alias::new(*column)), direction.clone());
    }
    q
}

/// The column `with_total` names the count.
pub const TOTAL: &str = "total";

/// `(org = o AND id = i) OR …` for keys of several organizations: no row is matched by its id alone.
fn each_in_its_org(
    keys: &[(OrgScope, Uuid)],
    org: impl ColumnTrait,
    id: impl ColumnTrait,
) -> sea_orm::Condition {
    keys.iter()
        .fold(sea_orm::Condition::any(), |any, (scope, key)| {
            any.add(org.eq(scope.org_id).and(id.eq(*key)))
        })
}

/// One page request applied to every incident of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventWindow {
    pub after: Option<i64>,
    pub before: Option<i64>,
    pub types: Option<Vec<String>>,
    pub backward: bool,
    pub fetch: u64,
}

fn inserted(result: Result<TryInsertResult<u64>, DbErr>) -> Result<bool, DbErr> {
    match result {
        Ok(TryInsertResult::Inserted(n)) => Ok(n > 0),
        Ok(TryInsertResult::Conflicted) | Err(DbErr::RecordNotInserted) => Ok(false),
        Ok(TryInsertResult::Empty) => Ok(false),
        Err(e) => Err(e),
    }
}

fn expect_one(rows: u64) -> Result<(), DbErr> {
    if rows == 1 {
        Ok(())
    } else {
        Err(DbErr::RecordNotUpdated)
    }
}
