//! The GraphQL schema: one `build_schema()` serves the server, `incidentd schema` and the
//! schema-drift test; and what every operation carries (the caller, the domain, the live feed,
//! a fresh set of loaders), attached by the transports.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

use async_graphql::dataloader::DataLoader;
use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::{Context, MergedObject, MergedSubscription, Schema, ValidationMode};

use super::extensions::{Checked, Gate, Limiter};
use super::loaders::{AppLoader, PageBatches};
use super::{metrics, mutation, query, subscription};
use crate::error::{AppError, AppResult};
use crate::incident::budget::ResponseBudget;
use crate::incident::identity::Principal;
use crate::incident::service::Domain;
use crate::live::Hub;

#[derive(MergedObject, Default)]
pub struct Query(query::IncidentQuery, metrics::MetricsQuery);

#[derive(MergedObject, Default)]
pub struct Mutation(mutation::IncidentMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(subscription::IncidentSubscription);

type GqlSchema = Schema<Query, Mutation, Subscription>;

/// The schema, as two: one that checks a request and one that runs it.
///
/// Once any extension is registered, async-graphql sends every field of every response through
/// the extension chain (a boxed future per field; PITFALLS.md), which cost the list page a
/// measurable share of its time (BENCHMARKS.md). Our limits and metrics need extension hooks
/// (parse and validation, with typed errors), so they live on `checker`, which parses,
/// validates and names the operation but runs nothing; `runner`, with no extension, then runs
/// the document the checker parsed, validating it again only in async-graphql's fast mode.
#[derive(Clone)]
pub struct AppSchema {
    checker: GqlSchema,
    runner: GqlSchema,
    parsed: Arc<ParsedDocuments>,
}

/// The parsed documents of recent operations, by their text. A frontend sends the same few
/// operations over and over, and parsing them (pest) was about a tenth of a detail page's CPU
/// (BENCHMARKS.md). Only the parse is kept: validation and every limit still run on each
/// request, with its variables. Bounded by entries and by the length of a document kept: at
/// most 256 KiB of query text, whose trees take a few hundred KB for frontend operations and,
/// for a pathological one (thousands of bare fields), under 20 MB.
struct ParsedDocuments(Mutex<LruCache<String, Arc<ExecutableDocument>>>);

impl ParsedDocuments {
    const ENTRIES: NonZeroUsize = NonZeroUsize::new(64).expect("not zero");
    /// Frontend operations are one or two KiB; longer documents are parsed each time.
    const MAX_QUERY_BYTES: usize = 4 * 1024;

    fn new() -> Self {
        ParsedDocuments(Mutex::new(LruCache::new(Self::ENTRIES)))
    }

    fn get(&self, query: &str) -> Option<ExecutableDocument> {
        let found = self.locked().get(query).cloned()?;
        Some(ExecutableDocument::clone(&found))
    }

    /// Keeps the document of a query that passed the checks.
    fn put(&self, query: &str, document: &ExecutableDocument) {
        if query.len() <= Self::MAX_QUERY_BYTES {
            let document = Arc::new(document.clone());
            self.locked().put(query.to_owned(), document);
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, LruCache<String, Arc<ExecutableDocument>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AppSchema {
    /// Runs one operation, counted in `incidentd_graphql_operations_total` and timed.
    pub async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let started = std::time::Instant::now();
        let (response, (name, ty)) = match self.check(request).await {
            Ok((request, chosen)) => (self.runner.execute(request).await, chosen),
            // Parse, validation and limit errors: nothing ran, no operation was chosen.
            Err(response) => (response, ("-".to_owned(), "invalid")),
        };
        crate::monitoring::graphql_operation(
            name,
            ty,
            response.errors.is_empty(),
            started.elapsed(),
        );
        response
    }

    /// An operation over WebSocket or SSE (a subscription or not): its responses as a stream.
    pub fn execute_stream(
        &self,
        request: async_graphql::Request,
    ) -> BoxStream<'static, async_graphql::Response> {
        let this = self.clone();
        stream::once(async move {
            match this.check(request).await {
                Ok((request, _)) => this.runner.execute_stream(request),
                Err(response) => stream::once(async move { response }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    /// Parses and validates `request` and applies every limit, on the checking schema; the
    /// request comes back with its parsed document, or the response that refuses it.
    async fn check(
        &self,
        mut request: async_graphql::Request,
    ) -> Result<(async_graphql::Request, (String, &'static str)), async_graphql::Response> {
        let checked = Arc::new(Checked::default());
        let mut probe = async_graphql::Request::new(request.query.clone())
            .variables(request.variables.clone())
            .data(checked.clone());
        probe.operation_name = request.operation_name.clone();
        let cached = self.parsed.get(&request.query);
        let was_cached = cached.is_some();
        if let Some(document) = cached {
            probe.set_parsed_query(document);
        }
        let response = self.checker.execute(probe).await;
        if !response.errors.is_empty() {
            return Err(response);
        }
        match checked.take() {
            Some((document, chosen)) => {
                if !was_cached {
                    self.parsed.put(&request.query, &document);
                }
                request.set_parsed_query(document);
                Ok((request, chosen))
            }
            // The checker always keeps the document of a request it passed; should it not,
            // the runner parses the text itself.
            None => Ok((request, ("-".to_owned(), "invalid"))),
        }
    }

    pub fn sdl(&self) -> String {
        self.runner.sdl()
    }
}

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
/// - `operation_names`: the operation names that may become metric labels (100 by default).
#[derive(Debug, Clone)]
pub struct Limits {
    pub operation_names: std::sync::Arc<crate::monitoring::OperationNames>,
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
            operation_names: std::sync::Arc::new(crate::monitoring::OperationNames::new(&[], 100)),
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

pub fn build_schema(limits: &Limits) -> AppSchema {
    let builder = || {
        let builder = Schema::build(
            Query::default(),
            Mutation::default(),
            Subscription::default(),
        )
        // Depth and complexity are checked by `Limiter`, which answers with a code; the
        // parser's guards stay set here too, and `Limiter` names their refusals.
        .limit_recursive_depth(limits.recursive_depth)
        .limit_directives(limits.directives);
        if limits.introspection {
            builder
        } else {
            builder.disable_introspection().disable_suggestions()
        }
    };
    let checker = builder()
        .extension(Gate {
            names: limits.operation_names.clone(),
        })
        .extension(Limiter {
            limits: limits.clone(),
        })
        .finish();
    // The checker validated the document in full; what is left is the fast mode's checks.
    let runner = builder().validation_mode(ValidationMode::Fast).finish();
    AppSchema {
        checker,
        runner,
        parsed: Arc::new(ParsedDocuments::new()),
    }
}

/// The SDL as `incidentd schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(&Limits::default()).sdl()
}

/// Attaches the caller, the domain, the live feed and a fresh set of loaders (no data shared
/// between requests).
///
/// `budget`, when given, bounds the bytes of text the operation may load and return (HTTP
/// answers are built whole; a subscription's messages are sent one by one).
pub fn request_data(
    request: async_graphql::Request,
    principal: Principal,
    domain: &Domain,
    hub: &Hub,
    budget: Option<Arc<ResponseBudget>>,
) -> async_graphql::Request {
    let loader = DataLoader::new(
        AppLoader {
            db: domain.db.clone(),
            scope: principal.scope(),
            budget: budget.clone(),
        },
        tokio::spawn,
    )
    // Wait a little longer than the default 1 ms for a batch to fill: on a loaded machine the
    // resolvers of one page can take longer than that to register their keys, splitting a
    // batch and costing a statement per part.
    .delay(std::time::Duration::from_millis(5));
    let request = request
        .data(principal)
        .data(domain.clone())
        .data(hub.clone())
        .data(loader)
        .data(PageBatches::default());
    match budget {
        Some(budget) => request.data(budget),
        None => request,
    }
}

/// Charges `bytes` of returned text to the request's budget, if it has one.
pub(crate) fn charge(ctx: &Context<'_>, bytes: usize) -> AppResult<()> {
    match ctx.data_opt::<Arc<ResponseBudget>>() {
        Some(budget) => budget.charge(bytes),
        None => Ok(()),
    }
}

pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> AppResult<&'a Principal> {
    ctx.data_opt::<Principal>()
        .ok_or_else(|| AppError::Unauthenticated("a bearer token is required".into()))
}

pub(crate) fn domain<'a>(ctx: &'a Context<'_>) -> &'a Domain {
    ctx.data_unchecked::<Domain>()
}

pub(crate) fn hub<'a>(ctx: &'a Context<'_>) -> &'a Hub {
    ctx.data_unchecked::<Hub>()
}
