//! The GraphQL schema: one `build_schema()` serves the server, `incidentd schema` and the
//! schema-drift test. Per-request data (the caller, the loaders) is attached by `http.rs`.

pub mod http;
mod loaders;
mod metrics;
mod mutation;
mod query;
mod scalars;
mod subscription;
mod types;

use async_graphql::dataloader::DataLoader;
use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{
    Context, MergedObject, MergedSubscription, Schema, ServerError, ServerResult, Variables,
};

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::incident::service::Domain;

pub use loaders::AppLoader;

#[derive(MergedObject, Default)]
pub struct Query(query::IncidentQuery, metrics::MetricsQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(mutation::IncidentMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(subscription::IncidentSubscription);

pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Limits on what one operation may ask for; the defaults are far above what a frontend sends.
///
/// - `depth` 12: the deepest frontend shape, `incidents { edges { node { events { edges { node {
///   incident { … } } } } } } }`, is 8 levels.
/// - `complexity` 50 000: every field costs 1 and a connection multiplies its children by
///   `first`/`last` (default 20, capped at 100; see [`page_complexity`]), so the cost is about the
///   number of values a response holds. A list page of 100 incidents with 15 fields and the latest
///   20 events of each costs ≈ 16 000, the README's timeline at `first: 100` ≈ 700, and the widest
///   read in our tests (100 incidents × 100 event ids plus postmortems and audit) ≈ 32 000; 100
///   incidents × 100 events with five event fields (≈ 60 000 values) is refused.
/// - `aliases` 30: a dashboard counting incidents per status and severity uses 16; aliases are how
///   one request repeats an expensive field, which complexity bounds anyway.
/// - `query_bytes` 32 KiB: the largest frontend operations are about 2 KiB of text.
/// - `recursive_depth` 32 and `directives` 8: async-graphql's parser and CVE-2024-47614 guards.
#[derive(Debug, Clone)]
pub struct Limits {
    pub depth: usize,
    pub complexity: usize,
    pub aliases: usize,
    pub query_bytes: usize,
    pub recursive_depth: usize,
    pub directives: usize,
    pub introspection: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 12,
            complexity: 50_000,
            aliases: 30,
            query_bytes: 32 * 1024,
            recursive_depth: 32,
            directives: 8,
            introspection: true,
        }
    }
}

/// The cost of a connection field: its children once per requested item (`first` or `last`,
/// default 20, at most 100 as the resolvers allow), capped so that deep nesting cannot overflow.
pub(crate) fn page_complexity(first: Option<i32>, last: Option<i32>, child: usize) -> usize {
    let items = first
        .or(last)
        .map_or(crate::incident::page::DEFAULT_PAGE, |n| {
            (n.max(0) as u64).min(crate::incident::page::MAX_PAGE)
        }) as usize;
    items.max(1).saturating_mul(child).min(u32::MAX as usize)
}

/// Enforces, inside async-graphql's own parse step (so the document is parsed once, and HTTP
/// and WebSocket alike are covered), the limits it has no setting for: query text size and
/// aliases. With introspection off it also refuses `__schema`/`__type`, which async-graphql
/// would answer with `null` and no error. Its errors carry no code; `classify` gives them one,
/// as it does async-graphql's own limit errors.
struct Limiter {
    limits: Limits,
}

impl ExtensionFactory for Limiter {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Limiter {
            limits: self.limits.clone(),
        })
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Limiter {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if query.len() > self.limits.query_bytes {
            return Err(ServerError::new(
                format!(
                    "Query is too long: {} bytes; at most {} are allowed",
                    query.len(),
                    self.limits.query_bytes
                ),
                None,
            ));
        }
        let document = next.run(ctx, query, variables).await?;
        let (aliases, introspects) = inspect(&document);
        if introspects && !self.limits.introspection {
            return Err(ServerError::new(
                "introspection is disabled on this server",
                None,
            ));
        }
        if aliases > self.limits.aliases {
            return Err(ServerError::new(
                format!(
                    "Query uses too many aliases: {aliases}; at most {} are allowed",
                    self.limits.aliases
                ),
                None,
            ));
        }
        Ok(document)
    }
}

/// The number of aliases in a document, and whether it selects `__schema` or `__type`.
fn inspect(document: &async_graphql::parser::types::ExecutableDocument) -> (usize, bool) {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn walk(set: &SelectionSet, aliases: &mut usize, introspects: &mut bool) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    *aliases += usize::from(field.node.alias.is_some());
                    let name = field.node.name.node.as_str();
                    *introspects |= name == "__schema" || name == "__type";
                    walk(&field.node.selection_set.node, aliases, introspects);
                }
                Selection::InlineFragment(fragment) => {
                    walk(&fragment.node.selection_set.node, aliases, introspects)
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    let (mut aliases, mut introspects) = (0, false);
    for (_, op) in document.operations.iter() {
        walk(&op.node.selection_set.node, &mut aliases, &mut introspects);
    }
    for fragment in document.fragments.values() {
        walk(
            &fragment.node.selection_set.node,
            &mut aliases,
            &mut introspects,
        );
    }
    (aliases, introspects)
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
    .limit_directives(limits.directives)
    .extension(crate::monitoring::GraphqlMetrics)
    .extension(Limiter {
        limits: limits.clone(),
    });
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
    )
    // Wait a little longer than the default 1 ms for a batch to fill: on a loaded machine the
    // resolvers of one page can take longer than that to register their keys, splitting a
    // batch and costing a statement per part.
    .delay(std::time::Duration::from_millis(5));
    request.data(principal).data(domain.clone()).data(loader)
}

pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> AppResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| AppError::Unauthenticated("a bearer token is required".into()))
}

pub(crate) fn domain<'a>(ctx: &'a Context<'_>) -> &'a Domain {
    ctx.data_unchecked::<Domain>()
}

/// Messages of the limit checks (async-graphql's and `Limiter`'s), which carry no code. The
/// parser's own nesting guard (`recursion limit exceeded.`) refuses the same kind of document as
/// the depth limit, only deeper: it is the same answer.
const LIMIT_MESSAGES: [&str; 7] = [
    "Query is too long",
    "recursion limit exceeded",
    "Query uses too many aliases",
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
