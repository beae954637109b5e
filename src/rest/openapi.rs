//! The OpenAPI 3.1 document of the REST API: its paths come from the routes themselves
//! (`rest::routes`), everything else (info, security, the shared enum schemas) from here.

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use super::{RestState, error, model};
use crate::entity::openapi::enum_schemas;
use crate::incident::input;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "incidentd REST API",
        version = "1",
        description = "The REST endpoints of incidentd, over the same service layer as its GraphQL API. \
                       Every request carries `Authorization: Bearer <JWT>`; a viewer may read, a responder or admin may also write.",
        license(name = "Apache-2.0")
    ),
    components(schemas(
        model::Incident,
        model::IncidentList,
        model::IncidentDetail,
        model::IncidentEvent,
        model::Postmortem,
        model::Person,
        model::RoleAssignment,
        crate::entity::IncidentRole,
        input::AssignRole,
        input::ActionItem,
        input::CreateIncident,
        input::AddEvent,
        input::PostmortemInput,
        input::Transition,
        error::ErrorBody,
        error::ErrorDetail,
    )),
    modifiers(&SharedComponents),
    security(("bearer" = [])),
    tags((name = "incidents", description = "Incidents, their timelines and postmortems"))
)]
struct ApiDoc;

/// What the derive cannot say: the bearer scheme, and the entity enums' schemas.
struct SharedComponents;

impl Modify for SharedComponents {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (name, schema) in enum_schemas() {
            components.schemas.insert(name.to_string(), schema.into());
        }
    }
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let paths = OpenApiRouter::<RestState>::new()
        .nest("/api/v1", super::routes())
        .into_openapi();
    doc.merge(paths);
    doc
}

static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
});

pub(super) async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}
