//! The GraphQL schema: one `build_schema()` serves the server, `incidentd schema` and the
//! schema-drift test. Per-request data (the caller, the loaders) is attached by `http.rs`.

pub mod http;
mod loaders;
mod mutation;
mod query;
mod scalars;
mod subscription;
mod types;

use async_graphql::dataloader::DataLoader;
use async_graphql::{Context, MergedObject, MergedSubscription, Schema};

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::incident::service::Domain;

pub use loaders::AppLoader;

#[derive(MergedObject, Default)]
pub struct Query(query::IncidentQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(mutation::IncidentMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(subscription::IncidentSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

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
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
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

/// Messages of async-graphql's own limit checks (it gives them no code).
const LIMIT_MESSAGES: [&str; 4] = [
    "Query is too complex",
    "Query is nested too deep",
    "The recursion depth of the query",
    "The number of directives on the field",
];

/// Gives every error a code (async-graphql's parse, validation and argument errors have none)
/// and says whether the request failed as a whole: no data, and only such errors.
pub fn classify(response: &mut async_graphql::Response) -> bool {
    let mut ours = false;
    for error in &mut response.errors {
        if error
            .extensions
            .as_ref()
            .is_some_and(|e| e.get("code").is_some())
        {
            ours = true;
            continue;
        }
        let code = if LIMIT_MESSAGES.iter().any(|m| error.message.starts_with(m)) {
            "QUERY_TOO_COMPLEX"
        } else {
            "BAD_USER_INPUT"
        };
        error
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
    response.data == async_graphql::Value::Null && !response.errors.is_empty() && !ours
}
