//! The two async-graphql extensions of the checking schema (see `AppSchema`): `Limiter`, which
//! enforces every limit of an operation inside async-graphql's own parse and validation steps
//! (HTTP and WebSocket alike are covered), and `Gate`, which keeps the parsed document and names
//! the operation for the metrics, and runs nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextValidation,
};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, ValidationResult, Variables};

use super::limits::Limits;
use crate::error::AppError;
use crate::graphql::error::request_error;
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
        Arc::new(LimiterRun {
            depth: AtomicUsize::new(self.limits.depth),
            limits: self.limits.clone(),
        })
    }
}

/// The depth of graphql-js's standard introspection query (`getIntrospectionQuery()`, 16.x),
/// which GraphiQL and most tools send to learn the schema: `__schema { types { fields { args {
/// type { ofType ×9 { kind } } } } } }` is 15 fields deep, past the default `--max-depth` 12.
pub const INTROSPECTION_DEPTH: usize = 15;

/// `Limiter` for one request: what it learned when parsing, for the validation step.
struct LimiterRun {
    limits: Limits,
    /// The depth this document may reach: `limits.depth`, or more for schema-only reads.
    depth: AtomicUsize,
}

impl LimiterRun {
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
        // A document that reads only the schema (no data field at all) may be as deep as the
        // standard introspection query, so GraphiQL's docs and completion work under the
        // default limits. Its cost then grows with the schema, not with the data, as long as
        // no path lists a type's members twice (`fields { type { fields … } }` multiplies at
        // every turn): such a document keeps the ordinary depth limit. Complexity, aliases and
        // the rest apply as to any document.
        if shape.schema_only && shape.type_lists <= 1 {
            self.depth
                .store(limits.depth.max(INTROSPECTION_DEPTH), Ordering::Relaxed);
        }
        Ok(())
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for LimiterRun {
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
        let depth = self.depth.load(Ordering::Relaxed);
        if result.depth > depth {
            return Err(vec![too_complex(format!(
                "Query is nested too deep: {} levels; at most {} are allowed",
                result.depth, depth
            ))]);
        }
        Ok(result)
    }
}

/// Most selections a document may hold once every fragment is spread where it is used, and
/// the floor of that bound: far above any document within the complexity limit (every field
/// costs at least 1 there), far below what makes a walk of the spread document slow.
fn max_spread_selections(limits: &Limits) -> usize {
    limits.complexity.saturating_mul(2).max(100_000)
}

/// Checks the size of `document` with its fragments spread, computing each fragment's size
/// once. A few hundred bytes of fragments that each spread the next one twice stand for
/// billions of selections, and every walk that follows spreads (async-graphql's recursion
/// check, its validation, the limits here) would take that long: such a document, or one whose
/// fragments spread themselves, is refused before any of them runs.
pub(super) fn spread_size(document: &ExecutableDocument, limits: &Limits) -> ServerResult<()> {
    let max = max_spread_selections(limits);
    let mut sizes = Sizes {
        document,
        known: HashMap::new(),
        open: Vec::new(),
        max_nesting: limits.recursive_depth,
    };
    let mut total = 0usize;
    for (_, op) in document.operations.iter() {
        total = total.saturating_add(sizes.of_set(&op.node.selection_set.node, 0)?);
    }
    if total > max {
        return Err(too_complex(format!(
            "Query holds more than {max} selections once its fragments are spread"
        )));
    }
    Ok(())
}

/// `spread_size`'s walk: each fragment's size, computed once.
struct Sizes<'a> {
    document: &'a ExecutableDocument,
    known: HashMap<&'a str, usize>,
    /// The fragments being sized, outermost first.
    open: Vec<&'a str>,
    max_nesting: usize,
}

impl<'a> Sizes<'a> {
    fn of_set(&mut self, set: &'a SelectionSet, nesting: usize) -> ServerResult<usize> {
        // As async-graphql's recursion check counts nesting; past its limit the document is
        // refused (here or there) whatever its size, and this walk stops.
        if nesting > self.max_nesting {
            return Err(too_complex(format!(
                "The recursion depth of the query is greater than {}",
                self.max_nesting
            )));
        }
        let mut size = 0usize;
        for item in &set.items {
            let here = match &item.node {
                Selection::Field(field) => {
                    let inner = &field.node.selection_set.node;
                    1 + if inner.items.is_empty() {
                        0
                    } else {
                        self.of_set(inner, nesting + 1)?
                    }
                }
                Selection::InlineFragment(fragment) => {
                    1 + self.of_set(&fragment.node.selection_set.node, nesting + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    1 + self.of_fragment(spread.node.fragment_name.node.as_str(), nesting + 1)?
                }
            };
            size = size.saturating_add(here);
        }
        Ok(size)
    }

    fn of_fragment(&mut self, name: &'a str, nesting: usize) -> ServerResult<usize> {
        if let Some(size) = self.known.get(name) {
            return Ok(*size);
        }
        if self.open.contains(&name) {
            let error = AppError::BadInput {
                field: None,
                message: format!("Cannot spread fragment \"{name}\" within itself"),
            };
            return Err(request_error(&error, &current_request_id()));
        }
        // An unknown fragment is validation's to refuse.
        let Some((key, fragment)) = self.document.fragments.get_key_value(name) else {
            return Ok(0);
        };
        self.open.push(key.as_str());
        let size = self.of_set(&fragment.node.selection_set.node, nesting)?;
        self.open.pop();
        self.known.insert(key.as_str(), size);
        Ok(size)
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
    /// Every operation selects only `__schema`, `__type` and `__typename` at its root.
    schema_only: bool,
    /// Most of a type's member lists (`fields`, `inputFields`, `interfaces`, `possibleTypes`,
    /// `enumValues`) on one path; counted only when `schema_only`.
    type_lists: usize,
}

/// The introspection fields that list a type's members (or related types).
const TYPE_LISTS: &[&str] = &[
    "fields",
    "inputFields",
    "interfaces",
    "possibleTypes",
    "enumValues",
];

impl Shape {
    fn of(document: &ExecutableDocument, max_depth: usize) -> Shape {
        let mut shape = Shape::default();
        let mut roots = document.operations.iter().map(|(_, op)| op).peekable();
        shape.schema_only = roots.peek().is_some()
            && roots.all(|op| {
                op.node.selection_set.node.items.iter().all(|item| {
                    matches!(&item.node, Selection::Field(field)
                        if matches!(field.node.name.node.as_str(), "__schema" | "__type" | "__typename"))
                })
            });
        for (_, op) in document.operations.iter() {
            shape.walk(&op.node.selection_set.node);
            shape.nest(document, &op.node.selection_set.node, 0, max_depth + 1);
            if shape.schema_only {
                let lists = type_lists(document, &op.node.selection_set.node, 0, max_depth + 1);
                shape.type_lists = shape.type_lists.max(lists);
            }
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

/// Most type member lists on one path below `set` (fragments followed, up to `cap` levels).
fn type_lists(
    document: &ExecutableDocument,
    set: &SelectionSet,
    depth: usize,
    cap: usize,
) -> usize {
    if depth >= cap {
        return 0;
    }
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                let here = usize::from(TYPE_LISTS.contains(&field.node.name.node.as_str()));
                here + type_lists(document, &field.node.selection_set.node, depth + 1, cap)
            }
            Selection::InlineFragment(fragment) => {
                type_lists(document, &fragment.node.selection_set.node, depth + 1, cap)
            }
            Selection::FragmentSpread(spread) => document
                .fragments
                .get(&spread.node.fragment_name.node)
                .map_or(0, |fragment| {
                    type_lists(document, &fragment.node.selection_set.node, depth + 1, cap)
                }),
        })
        .max()
        .unwrap_or(0)
}

/// What the checking schema learned of a request that passed: the parsed document (so the
/// running schema does not parse it again) and the operation that will run, named for the
/// metrics. Handed to the checking run as request data and read back after it.
#[derive(Default)]
pub struct Checked {
    document: Mutex<Option<ExecutableDocument>>,
    chosen: Mutex<Option<(String, &'static str)>>,
}

impl Checked {
    /// The document and the chosen operation's (label, type), once the check passed.
    pub fn take(&self) -> Option<(ExecutableDocument, (String, &'static str))> {
        let document = self
            .document
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        let chosen = self
            .chosen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()?;
        Some((document, chosen))
    }
}

/// The last step of the checking schema: keeps the parsed document, names the operation that
/// would run (names become labels only as `OperationNames` admits them), and runs nothing.
/// The operation itself then runs on a schema with no extension at all (see `AppSchema`).
pub struct Gate {
    pub names: Arc<OperationNames>,
}

impl ExtensionFactory for Gate {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GateProbe {
            names: self.names.clone(),
        })
    }
}

struct GateProbe {
    names: Arc<OperationNames>,
}

#[async_graphql::async_trait::async_trait]
impl Extension for GateProbe {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if let Some(checked) = ctx.data_opt::<Arc<Checked>>() {
            *checked.document.lock().unwrap_or_else(|e| e.into_inner()) = Some(document.clone());
        }
        Ok(document)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        _next: NextExecute<'_>,
    ) -> async_graphql::Response {
        // Only documents that passed validation get here: their names are admitted as labels
        // up to the cap (or by the allow-list).
        if let Some(checked) = ctx.data_opt::<Arc<Checked>>() {
            let document = checked.document.lock().unwrap_or_else(|e| e.into_inner());
            let chosen = document.as_ref().and_then(|document| {
                let mut operations = document.operations.iter();
                let found = match operation_name {
                    Some(wanted) => {
                        operations.find(|(name, _)| name.map(|n| n.as_str()) == Some(wanted))
                    }
                    None => operations.next(),
                };
                found.map(|(name, op)| {
                    let name = name.map_or_else(|| "anonymous".to_owned(), |n| n.to_string());
                    (self.names.label(name), op_type(op.node.ty))
                })
            });
            drop(document);
            *checked.chosen.lock().unwrap_or_else(|e| e.into_inner()) = chosen;
        }
        async_graphql::Response::new(async_graphql::Value::Null)
    }
}

fn op_type(ty: OperationType) -> &'static str {
    match ty {
        OperationType::Query => "query",
        OperationType::Mutation => "mutation",
        OperationType::Subscription => "subscription",
    }
}
