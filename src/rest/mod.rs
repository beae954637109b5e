//! The REST API under `/api/v1`: thin handlers over `incident/`, the same bearer
//! auth and organization scoping as GraphQL, and an OpenAPI document generated from the code.

mod error;
mod extract;
mod incidents;
mod model;
mod openapi;

use std::sync::Arc;

use axum::Router;
use axum::extract::{FromRef, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authenticator;
use crate::auth::sessions::Sessions;
use crate::error::AppError;
use crate::incident::service::Domain;
use crate::telemetry::{request_id, with_request_id};

pub use openapi::openapi;

/// What the REST transport needs, taken from the application's state with `FromRef`.
#[derive(Clone)]
pub struct RestState {
    pub domain: Domain,
    pub auth: Arc<Authenticator>,
    pub sessions: Sessions,
}

/// Every documented route, each listed once: the router and the OpenAPI paths both come from here.
fn routes<S>() -> OpenApiRouter<S>
where
    S: Clone + Send + Sync + 'static,
    RestState: FromRef<S>,
{
    OpenApiRouter::new()
        .routes(routes!(
            incidents::list_incidents,
            incidents::create_incident
        ))
        .routes(routes!(incidents::get_incident))
        .routes(routes!(incidents::add_event))
        .routes(routes!(incidents::create_postmortem))
        .routes(routes!(incidents::transition_incident))
        .routes(routes!(incidents::assign_role))
}

/// `/api/v1`: the routes, the OpenAPI document, and JSON errors for unknown paths and methods.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    RestState: FromRef<S>,
{
    let (api, _) = routes().split_for_parts();
    let api = api
        .route("/openapi.json", get(openapi::openapi_json))
        .fallback(|| async { error::ApiError::from(AppError::NotFound("endpoint")) })
        .method_not_allowed_fallback(|| async { error::ApiError::method_not_allowed() })
        .layer(middleware::from_fn(request_id_scope));
    Router::new().nest("/api/v1", api)
}

/// Runs the request inside its `x-request-id` (set by the router's outer layers), so an error
/// rendered anywhere below names the id its log line carries.
async fn request_id_scope(request: Request, next: Next) -> Response {
    let id = request_id(request.headers());
    with_request_id(id, next.run(request)).await
}
