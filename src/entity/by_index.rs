//! Rows read by position. A derived model reads each column by its name, a lookup in the
//! statement's column names per column of every row; the list's statements select a table's
//! columns in its `Column::iter()` order (what an entity's `find()` selects), so these read them by
//! index instead. Each starts where its table's columns start, so one statement may select
//! several tables' columns side by side and decode each.

use sea_orm::{DbErr, EntityTrait, Iterable, QueryResult, TryGetable};

use super::{incident, incident_event, postmortem};

/// A model read from consecutive columns, in its entity's `Column::iter()` order.
pub trait ByIndex: Sized {
    type Entity: EntityTrait;

    /// Reads the model from the columns `start`, `start + 1`, … of `row`.
    fn by_index(row: &QueryResult, start: usize) -> Result<Self, DbErr>;

    /// How many columns the model takes: the next table's start, one past its last.
    fn width() -> usize {
        <Self::Entity as EntityTrait>::Column::iter().count()
    }
}

/// The next column of a row, each read advancing one: a model's fields are written in the
/// order of its columns, and a struct expression evaluates its fields in the order written.
struct Columns<'r> {
    row: &'r QueryResult,
    at: usize,
}

impl Columns<'_> {
    fn next<T: TryGetable>(&mut self) -> Result<T, DbErr> {
        let value = self.row.try_get_by_index(self.at);
        self.at += 1;
        value
    }

    /// A nullable column. sea-orm answers a NULL by formatting an error that names the column
    /// and then dropping it (an allocation per NULL of every row); the driver's row says NULL
    /// without one.
    fn optional<T: TryGetable>(&mut self) -> Result<Option<T>, DbErr> {
        if self.is_null() {
            self.at += 1;
            return Ok(None);
        }
        self.next()
    }

    fn is_null(&self) -> bool {
        use sea_orm::sqlx::{Row, ValueRef};
        if let Some(row) = self.row.try_as_pg_row() {
            return row.try_get_raw(self.at).is_ok_and(|v| v.is_null());
        }
        if let Some(row) = self.row.try_as_sqlite_row() {
            return row.try_get_raw(self.at).is_ok_and(|v| v.is_null());
        }
        false
    }
}

impl ByIndex for incident::Model {
    type Entity = incident::Entity;

    fn by_index(row: &QueryResult, start: usize) -> Result<Self, DbErr> {
        let mut c = Columns { row, at: start };
        Ok(incident::Model {
            id: c.next()?,
            organization_id: c.next()?,
            title: c.next()?,
            status: c.next()?,
            severity: c.next()?,
            highest_severity: c.optional()?,
            linked_ticket_ids: c.next()?,
            linked_problem_id: c.optional()?,
            started_at: c.next()?,
            resolved_at: c.optional()?,
            created_by: c.optional()?,
            created_at: c.next()?,
            updated_at: c.next()?,
        })
    }
}

impl ByIndex for incident_event::Model {
    type Entity = incident_event::Entity;

    fn by_index(row: &QueryResult, start: usize) -> Result<Self, DbErr> {
        let mut c = Columns { row, at: start };
        Ok(incident_event::Model {
            id: c.next()?,
            organization_id: c.next()?,
            incident_id: c.next()?,
            sequence: c.next()?,
            event_type: c.next()?,
            content: c.optional()?,
            created_by: c.optional()?,
            created_at: c.next()?,
            from_status: c.optional()?,
            to_status: c.optional()?,
        })
    }
}

impl ByIndex for postmortem::Model {
    type Entity = postmortem::Entity;

    fn by_index(row: &QueryResult, start: usize) -> Result<Self, DbErr> {
        let mut c = Columns { row, at: start };
        Ok(postmortem::Model {
            id: c.next()?,
            incident_id: c.next()?,
            organization_id: c.next()?,
            impact_summary: c.optional()?,
            root_cause: c.optional()?,
            timeline: c.optional()?,
            what_went_well: c.optional()?,
            what_went_wrong: c.optional()?,
            action_items: c.next()?,
            public_summary: c.optional()?,
            internal_notes: c.optional()?,
            created_by: c.optional()?,
            created_at: c.next()?,
            updated_at: c.next()?,
        })
    }
}
