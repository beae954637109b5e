//! The OpenAPI schemas of the two workflow enums, built from the entities' own values, so the
//! REST document lists exactly what the database and GraphQL accept. Fields of these types
//! refer to them by name (`schema_with`).

use sea_orm::Iterable;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

use super::{Severity, Status};

pub const STATUS_SCHEMA: &str = "IncidentStatus";
pub const SEVERITY_SCHEMA: &str = "IncidentSeverity";

pub fn status_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(STATUS_SCHEMA))
}
pub fn status_list_ref() -> Schema {
    Schema::Array(ArrayBuilder::new().items(status_ref()).build())
}
pub fn severity_ref() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(SEVERITY_SCHEMA))
}

/// The `IncidentStatus` and `IncidentSeverity` components, listing what the entities define.
pub fn enum_schemas() -> [(&'static str, Schema); 2] {
    let strings = |values: Vec<&'static str>, description: &str| {
        Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(values))
                .description(Some(description))
                .build(),
        )
    };
    [
        (
            STATUS_SCHEMA,
            strings(
                Status::iter().map(Status::as_str).collect(),
                "Where the incident is in the workflow.",
            ),
        ),
        (
            SEVERITY_SCHEMA,
            strings(
                Severity::iter().map(Severity::as_str).collect(),
                "SEV1 is the most severe.",
            ),
        ),
    ]
}
