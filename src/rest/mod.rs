//! The REST API of CONTRACT §7 under `/api/v1`: thin handlers over `incident/`, the same bearer
//! auth and organization scoping as GraphQL, and an OpenAPI document generated from the code.

mod error;
mod extract;
mod incidents;
mod model;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::app::AppState;
use crate::error::AppError;
use crate::telemetry::with_request_id;

/// Every `/api/v1` route; merged into the app router in `app.rs`.
pub fn router() -> Router<AppState> {
    let api = Router::new()
        .route(
            "/incidents",
            get(incidents::list_incidents).post(incidents::create_incident),
        )
        .route("/incidents/{id}", get(incidents::get_incident))
        .route("/incidents/{id}/events", post(incidents::add_event))
        .route(
            "/incidents/{id}/postmortem",
            post(incidents::create_postmortem),
        )
        .route(
            "/incidents/{id}/transition",
            post(incidents::transition_incident),
        )
        .route("/openapi.json", get(openapi_json))
        .fallback(|| async { error::ApiError::from(AppError::NotFound("endpoint")) })
        .method_not_allowed_fallback(|| async { error::ApiError::method_not_allowed() })
        .layer(middleware::from_fn(request_id_scope));
    Router::new().nest("/api/v1", api)
}

/// Runs the request inside its `x-request-id` (set by the router's outer layers), so an error
/// rendered anywhere below names the id its log line carries.
async fn request_id_scope(request: Request, next: Next) -> Response {
    let id = crate::graphql::http::request_id(request.headers());
    with_request_id(id, next.run(request)).await
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "incidentd REST API",
        version = "1",
        description = "The REST endpoints of incidentd (CONTRACT §7), over the same service layer as its GraphQL API. \
                       Every request carries `Authorization: Bearer <JWT>`; a viewer may read, a responder or admin may also write.",
        license(name = "Apache-2.0")
    ),
    paths(
        incidents::list_incidents,
        incidents::get_incident,
        incidents::create_incident,
        incidents::add_event,
        incidents::create_postmortem,
        incidents::transition_incident,
    ),
    components(schemas(
        model::Incident,
        model::IncidentList,
        model::IncidentDetail,
        model::IncidentEvent,
        model::Postmortem,
        model::ActionItem,
        model::CreateIncident,
        model::AddEvent,
        model::PostmortemInput,
        model::Transition,
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
        for (name, schema) in model::enum_schemas() {
            components.schemas.insert(name.to_string(), schema.into());
        }
    }
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

static OPENAPI_JSON: LazyLock<String> = LazyLock::new(|| {
    openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
});

async fn openapi_json() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI_JSON.as_str(),
    )
        .into_response()
}
