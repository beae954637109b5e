//! The GraphQL schema, one half of `graphql/`: the root types (merged per domain), the
//! resolvers, loaders and limits; and `build_schema()`, which serves the server, `incidentd
//! schema` and the schema-drift test. It knows nothing of how operations arrive.

pub mod context;
mod extensions;
pub(crate) mod fast;
pub mod limits;
mod loaders;
mod mutation;
mod query;
mod statistics;
mod subscription;
mod types;
mod webhooks;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;
use lru::LruCache;

use async_graphql::futures_util::FutureExt;
use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use async_graphql::{MergedObject, MergedSubscription, Schema, ValidationMode};

use extensions::{Checked, Gate, Limiter};
pub use limits::Limits;

#[derive(MergedObject, Default)]
pub struct Query(
    query::IncidentQuery,
    statistics::StatisticsQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(mutation::IncidentMutation, webhooks::WebhookMutation);

#[derive(MergedSubscription, Default)]
pub struct Subscription(subscription::IncidentSubscription);

type GqlSchema = Schema<Query, Mutation, Subscription>;

/// The schema, as two: one that checks a request and one that runs it.
///
/// Once any extension is registered, async-graphql sends every field of every response through
/// the extension chain (a boxed future per field), which cost the list page a
/// measurable share of its time (BENCHMARKS.md). Our limits and metrics need extension hooks
/// (parse and validation, with typed errors), so they live on `checker`, which parses,
/// validates and names the operation but runs nothing; `runner`, with no extension, then runs
/// the document the checker parsed, validating it again only in async-graphql's fast mode.
#[derive(Clone)]
pub struct AppSchema {
    checker: GqlSchema,
    runner: GqlSchema,
    parsed: Arc<ParsedDocuments>,
    limits: Arc<Limits>,
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
        // Boxed: `Flatten` keeps its first stream for as long as the operation runs, and the
        // checks' future, inline, would stay allocated with it (several KiB per subscription,
        // thousands of which start at once after a restart). Boxed, it is freed once checked.
        let checked = async move {
            match this.check(request).await {
                Ok((request, _)) => this.runner.execute_stream(request),
                Err(response) => stream::once(async move { response }).boxed(),
            }
        }
        .boxed();
        stream::once(checked).flatten().boxed()
    }

    /// Parses and validates `request` and applies every limit, on the checking schema; the
    /// request comes back with its parsed document, or the response that refuses it.
    async fn check(
        &self,
        mut request: async_graphql::Request,
    ) -> Result<(async_graphql::Request, (String, &'static str)), async_graphql::Response> {
        match self.probe(&request).await? {
            Some((document, chosen)) => {
                request.set_parsed_query(document);
                Ok((request, chosen))
            }
            // The checker always keeps the document of a request it passed; should it not,
            // the runner parses the text itself.
            None => Ok((request, ("-".to_owned(), "invalid"))),
        }
    }

    /// Whether `request` would pass every check that runs before an operation (parse,
    /// validation, limits), without running it.
    pub async fn passes_checks(&self, request: &async_graphql::Request) -> bool {
        self.probe(request).await.is_ok()
    }

    /// Runs the checking schema on a copy of `request`: its parsed document and the operation
    /// chosen, or the response that refuses it.
    async fn probe(
        &self,
        request: &async_graphql::Request,
    ) -> Result<Option<(ExecutableDocument, (String, &'static str))>, async_graphql::Response> {
        let checked = Arc::new(Checked::default());
        let mut probe = async_graphql::Request::new(request.query.clone())
            .variables(request.variables.clone())
            .data(checked.clone());
        probe.operation_name = request.operation_name.clone();
        let cached = self.parsed.get(&request.query);
        let was_cached = cached.is_some();
        if let Some(document) = cached {
            probe.set_parsed_query(document);
        } else if request.query.len() <= self.limits.query_bytes
            && let Ok(document) = async_graphql::parser::parse_query(&request.query)
        {
            // Parsed here rather than by async-graphql, so that the document's size with its
            // fragments spread is known before anything walks it that way (async-graphql's
            // recursion check does, once per spread). A text that does not parse, or is too
            // long, is left to the checker, which answers it as it always has.
            extensions::spread_size(&document, &self.limits)
                .map_err(|error| async_graphql::Response::from_errors(vec![error]))?;
            probe.set_parsed_query(document);
        }
        let response = self.checker.execute(probe).await;
        if !response.errors.is_empty() {
            return Err(response);
        }
        let checked = checked.take();
        if let Some((document, _)) = &checked
            && !was_cached
        {
            self.parsed.put(&request.query, document);
        }
        Ok(checked)
    }

    pub fn sdl(&self) -> String {
        self.runner.sdl()
    }
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
        limits: Arc::new(limits.clone()),
    }
}

/// The SDL as `incidentd schema` prints it and `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(&Limits::default()).sdl()
}
