//! The two async-graphql extensions: `Limiter`, which enforces every limit of an operation
//! inside async-graphql's own parse and validation steps (the document is parsed once, and HTTP
//! and WebSocket alike are covered), and `Metrics`, which counts operations.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest,
    NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use super::error::request_error;
use super::schema::Limits;
use crate::error::AppError;
use crate::monitoring::OperationNames;
use crate::telemetry::current_request_id;

/// Every limit is answered with `QUERY_TOO_COMPLEX`, chosen here by what was checked.
fn too_complex(message: String) -> ServerError {
    request_error(&AppError::QueryTooComplex(message), &current_request_id())
}

pub struct Limiter {
    pub limits: Limits,
}

impl ExtensionFactory for Limiter {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Limiter {
            limits: self.limits.clone(),
        })
    }
}

impl Limiter {
    /// The limits a parsed document must keep before it is validated.
    fn check(&self, document: &ExecutableDocument) -> ServerResult<()> {
        let limits = &self.limits;
        let shape = Shape::of(document, limits.recursive_depth);
        if shape.introspects && !limits.introspection {
            let error = AppError::BadInput {
                field: None,
                message: "introspection is disabled on this server".into(),
            };
            return Err(request_error(&error, &current_request_id()));
        }
        if shape.aliases > limits.aliases {
            return Err(too_complex(format!(
                "Query uses too many aliases: {}; at most {} are allowed",
                shape.aliases, limits.aliases
            )));
        }
        if shape.depth > limits.recursive_depth {
            return Err(too_complex(format!(
                "The recursion depth of the query is greater than {}",
                limits.recursive_depth
            )));
        }
        if shape.directives > limits.directives {
            return Err(too_complex(format!(
                "A field has {} directives; at most {} are allowed",
                shape.directives, limits.directives
            )));
        }
        Ok(())
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
        let limits = &self.limits;
        if query.len() > limits.query_bytes {
            return Err(too_complex(format!(
                "Query is too long: {} bytes; at most {} are allowed",
                query.len(),
                limits.query_bytes
            )));
        }
        match next.run(ctx, query, variables).await {
            Ok(document) => {
                self.check(&document)?;
                Ok(document)
            }
            // async-graphql's own guards (the parser's nesting cap, its recursion and directive
            // limits) answer with text only; on this failure path alone, learn which by type.
            Err(error) => match async_graphql::parser::parse_query(query) {
                Err(async_graphql::parser::Error::RecursionLimitExceeded) => Err(too_complex(
                    "Query is nested too deep for the parser".into(),
                )),
                Ok(document) => self.check(&document).and(Err(error)),
                Err(_) => Err(error),
            },
        }
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        if result.complexity > self.limits.complexity {
            return Err(vec![too_complex(format!(
                "Query is too complex: it costs {}; at most {} is allowed",
                result.complexity, self.limits.complexity
            ))]);
        }
        if result.depth > self.limits.depth {
            return Err(vec![too_complex(format!(
                "Query is nested too deep: {} levels; at most {} are allowed",
                result.depth, self.limits.depth
            ))]);
        }
        Ok(result)
    }
}

/// What the limits look at in a parsed document.
#[derive(Debug, Default)]
struct Shape {
    aliases: usize,
    introspects: bool,
    /// Deepest nesting of selection sets, counted as async-graphql's own recursion check does
    /// (fields with a selection, spreads and inline fragments each add one), followed up to one
    /// past the limit, so a fragment cycle (refused by validation later) cannot loop here.
    depth: usize,
    /// Most directives on one field.
    directives: usize,
}

impl Shape {
    fn of(document: &ExecutableDocument, max_depth: usize) -> Shape {
        let mut shape = Shape::default();
        for (_, op) in document.operations.iter() {
            shape.walk(&op.node.selection_set.node);
            shape.nest(document, &op.node.selection_set.node, 0, max_depth + 1);
        }
        for fragment in document.fragments.values() {
            shape.walk(&fragment.node.selection_set.node);
        }
        shape
    }

    /// Counts aliases, introspection and directives, each field once (fragments are walked as
    /// definitions, not at every spread).
    fn walk(&mut self, set: &SelectionSet) {
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    self.aliases += usize::from(field.alias.is_some());
                    let name = field.name.node.as_str();
                    self.introspects |= name == "__schema" || name == "__type";
                    self.directives = self.directives.max(field.directives.len());
                    self.walk(&field.selection_set.node);
                }
                Selection::InlineFragment(fragment) => self.walk(&fragment.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }

    fn nest(
        &mut self,
        document: &ExecutableDocument,
        set: &SelectionSet,
        depth: usize,
        cap: usize,
    ) {
        self.depth = self.depth.max(depth);
        if depth >= cap {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(field) => {
                    let inner = &field.node.selection_set.node;
                    if !inner.items.is_empty() {
                        self.nest(document, inner, depth + 1, cap);
                    }
                }
                Selection::InlineFragment(fragment) => {
                    self.nest(document, &fragment.node.selection_set.node, depth + 1, cap)
                }
                Selection::FragmentSpread(spread) => {
                    if let Some(fragment) = document.fragments.get(&spread.node.fragment_name.node)
                    {
                        self.nest(document, &fragment.node.selection_set.node, depth + 1, cap);
                    }
                }
            }
        }
    }
}

/// Counts GraphQL operations by name, type and outcome, with their latency, around the whole
/// request (it hooks no field, so resolving costs nothing extra). Names become labels only as
/// `OperationNames` admits them.
pub struct Metrics {
    pub names: Arc<OperationNames>,
}

impl ExtensionFactory for Metrics {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Probe {
            names: self.names.clone(),
            operations: Mutex::default(),
            chosen: Mutex::default(),
        })
    }
}

struct Probe {
    names: Arc<OperationNames>,
    /// Every operation of the parsed document: (name, type).
    operations: Mutex<Vec<(Option<String>, &'static str)>>,
    /// The operation that ran: (name, type).
    chosen: Mutex<Option<(String, &'static str)>>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for Probe {
    async fn request(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextRequest<'_>,
    ) -> async_graphql::Response {
        let started = Instant::now();
        let response = next.run(ctx).await;
        let (name, ty) = self
            .chosen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| ("-".to_owned(), "invalid"));
        crate::monitoring::graphql_operation(
            name,
            ty,
            response.errors.is_empty(),
            started.elapsed(),
        );
        response
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let operations = document
            .operations
            .iter()
            .map(|(name, op)| (name.map(|n| n.to_string()), op_type(op.node.ty)))
            .collect();
        *self.operations.lock().unwrap_or_else(|e| e.into_inner()) = operations;
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> async_graphql::Response {
        let chosen = {
            let operations = self.operations.lock().unwrap_or_else(|e| e.into_inner());
            let found = match operation_name {
                Some(wanted) => operations
                    .iter()
                    .find(|(name, _)| name.as_deref() == Some(wanted)),
                None => operations.first(),
            };
            // Only documents that passed validation get here: their names are admitted as
            // labels up to the cap (or by the allow-list).
            found.map(|(name, ty)| {
                let name = name.clone().unwrap_or_else(|| "anonymous".to_owned());
                (self.names.label(name), *ty)
            })
        };
        *self.chosen.lock().unwrap_or_else(|e| e.into_inner()) = chosen;
        next.run(ctx, operation_name).await
    }
}

fn op_type(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}
