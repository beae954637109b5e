//! What one operation may ask for: depth, complexity, aliases, size, and the operation names
//! that may become metric labels; and the cost of a connection field.

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
