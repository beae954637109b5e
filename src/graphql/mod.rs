//! The GraphQL schema: one `build_schema()` serves the server, `incidentd schema` and the
//! schema-drift test. Per-request data (the caller, the loaders) is attached by `http.rs`.

pub mod http;
mod loaders;
mod mutation;
mod query;
mod scalars;
mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, EmptySubscription, MergedObject, Schema};

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::incident::service::Domain;

pub use loaders::AppLoader;

#[derive(MergedObject, Default)]
pub struct Query(query::IncidentQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(mutation::IncidentMutation);

pub type AppSchema = Schema<Query, Mutation, EmptySubscription>;

/// Limits on what one operation may ask for; the defaults are far above what a frontend sends.
#[derive(Debug, Clone)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub recursive_depth: usize,
    pub directives: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 12,
            complexity: 50_000,
            recursive_depth: 32,
            directives: 8,
            introspection: true,
        }
    }
}

pub fn build_schema(limits: &Limits) -> AppSchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(limits.depth)
        .limit_complexity(limits.complexity)
        .limit_recursive_depth(limits.recursive_depth)
        .limit_directives(limits.directives);
    if !limits.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The SDL as `incidentd schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(&Limits::default()).sdl()
}

/// Attaches the caller and a fresh set of loaders (no data shared between requests).
pub fn request_data(
    request: async_graphql::Request,
    principal: Principal,
    domain: &Domain,
) -> async_graphql::Request {
    let loader = DataLoader::new(
        AppLoader {
            db: domain.db.clone(),
            scope: principal.scope(),
        },
        tokio::spawn,
    );
    request.data(principal).data(domain.clone()).data(loader)
}

pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> AppResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| AppError::Unauthenticated("a bearer token is required".into()))
}

pub(crate) fn domain<'a>(ctx: &'a Context<'_>) -> &'a Domain {
    ctx.data_unchecked::<Domain>()
}
