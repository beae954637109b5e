//! Resolution of the read paths without a future per value. async-graphql answers every field
//! of every object as a boxed future polled through a `FuturesUnordered`: on a listed page of
//! 50 incidents with their latest 20 events and postmortems that is ≈20,000 futures, and it was
//! most of the page's CPU (BENCHMARKS.md). Here an object's plain fields, the ones its row
//! answers alone, are resolved in one synchronous pass; only the fields that wait for something
//! (a relation, a count) become futures, answered by the type's own `#[Object]` resolvers, which
//! stay the schema's definition. The same selection rules apply as in async-graphql (aliases,
//! fragments by type condition, `__typename`, merged response keys, a failed field reported and
//! left out); `tests` checks that both paths answer every field alike.

use std::borrow::Cow;
use std::pin::Pin;

use async_graphql::connection::{self, Edge, EmptyFields};
use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::{
    Context, ContextSelectionSet, InputType, Name, ObjectType, OutputType, Positioned, ServerError,
    ServerResult, TypeName, Value,
};
use futures_util::future::{self, Future};

use crate::error::AppError;
use crate::graphql::error::GqlError;

/// What one field resolves to: a value at once, or a future for the fields that wait.
pub(crate) enum Slot<'b> {
    Ready(ServerResult<Value>),
    Later(LaterFuture<'b>),
}

type LaterFuture<'b> = Pin<Box<dyn Future<Output = ServerResult<Value>> + Send + 'b>>;

/// An object the fast path resolves: its GraphQL name and how it answers one field.
pub(crate) trait Fields: Send + Sync {
    fn type_name(&self) -> Cow<'static, str>;

    /// Resolves the field `ctx` names (never `__typename`).
    fn field<'b>(&'b self, ctx: Context<'b>) -> Slot<'b>;
}

/// A field answered by a type's `#[Object]` resolvers, as async-graphql would.
pub(crate) fn later<'b, T: async_graphql::ContainerType + 'b>(
    ctx: Context<'b>,
    resolvers: T,
) -> Slot<'b> {
    Slot::Later(Box::pin(async move {
        Ok(resolvers.resolve_field(&ctx).await?.unwrap_or_default())
    }))
}

/// A plain field's value, in the form async-graphql's output of the same Rust type takes.
pub(crate) fn value<T: InputType>(v: &T) -> Slot<'static> {
    Slot::Ready(Ok(v.to_value()))
}

pub(crate) fn text(v: &str) -> Slot<'static> {
    Slot::Ready(Ok(Value::String(v.to_owned())))
}

/// A domain error in a plain field, placed at that field as async-graphql places a resolver's.
pub(crate) fn failed(ctx: &Context<'_>, err: AppError) -> Slot<'static> {
    let err = async_graphql::Error::from(GqlError::from(err)).into_server_error(ctx.item.pos);
    Slot::Ready(Err(ctx.set_error_path(err)))
}

/// The fields a selection set selects on an object named `type_name`, fragments spread.
fn selected<'a>(
    ctx: &ContextSelectionSet<'a>,
    set: &'a SelectionSet,
    type_name: &str,
    out: &mut Vec<&'a Positioned<Field>>,
) -> ServerResult<()> {
    for selection in &set.items {
        let (condition, set) = match &selection.node {
            Selection::Field(field) => {
                out.push(field);
                continue;
            }
            Selection::FragmentSpread(spread) => {
                let name = &spread.node.fragment_name.node;
                let Some(fragment) = ctx.query_env.fragments.get(name) else {
                    return Err(ServerError::new(
                        format!(r#"Unknown fragment "{name}"."#),
                        Some(spread.pos),
                    ));
                };
                (
                    Some(fragment.node.type_condition.node.on.node.as_str()),
                    &fragment.node.selection_set.node,
                )
            }
            Selection::InlineFragment(fragment) => (
                fragment
                    .node
                    .type_condition
                    .as_ref()
                    .map(|c| c.node.on.node.as_str()),
                &fragment.node.selection_set.node,
            ),
        };
        let applies = condition.is_none_or(|condition| {
            condition == type_name
                || ctx
                    .schema_env
                    .registry
                    .implements
                    .get(type_name)
                    .is_some_and(|interfaces| interfaces.contains(condition))
        });
        if applies {
            selected(ctx, set, type_name, out)?;
        }
    }
    Ok(())
}

/// Puts a field's value under its response key; a key selected twice merges its objects.
fn insert(target: &mut IndexMap<Name, Value>, name: Name, value: Value) {
    match target.get_mut(&name) {
        None => {
            target.insert(name, value);
        }
        Some(Value::Object(prev)) => {
            if let Value::Object(next) = value {
                for (k, v) in next {
                    insert(prev, k, v);
                }
            }
        }
        Some(Value::List(prev)) => {
            if let Value::List(next) = value {
                for (prev, next) in prev.iter_mut().zip(next) {
                    if let (Value::Object(prev), Value::Object(next)) = (prev, next) {
                        for (k, v) in next {
                            insert(prev, k, v);
                        }
                    }
                }
            }
        }
        Some(_) => {}
    }
}

/// A selection set's fields in order, each with its value when it was ready at once (`None`
/// for the ones waiting in the second list, in the same order).
type Collected<'b> = (
    Vec<(&'b Positioned<Field>, Option<ServerResult<Value>>)>,
    Vec<LaterFuture<'b>>,
);

fn collect<'b>(
    ctx: &'b ContextSelectionSet<'_>,
    type_name: &str,
    mut field: impl FnMut(Context<'b>) -> Slot<'b>,
) -> ServerResult<Collected<'b>> {
    let mut fields = Vec::with_capacity(ctx.item.node.items.len());
    selected(ctx, &ctx.item.node, type_name, &mut fields)?;
    let mut slots = Vec::with_capacity(fields.len());
    let mut waiting = Vec::new();
    for f in fields {
        let slot = if f.node.name.node == "__typename" {
            Slot::Ready(Ok(Value::String(type_name.to_owned())))
        } else {
            field(ctx.with_field(f))
        };
        match slot {
            Slot::Ready(result) => slots.push((f, Some(result))),
            Slot::Later(fut) => {
                slots.push((f, None));
                waiting.push(fut);
            }
        }
    }
    Ok((slots, waiting))
}

/// The object's value from its fields' results, in the selection's order; a failed field is
/// reported and left out, as async-graphql does.
fn assemble(
    ctx: &ContextSelectionSet<'_>,
    slots: Vec<(&Positioned<Field>, Option<ServerResult<Value>>)>,
    waited: Vec<ServerResult<Value>>,
) -> Value {
    let mut waited = waited.into_iter();
    let mut map = IndexMap::with_capacity(slots.len());
    for (field, result) in slots {
        match result.or_else(|| waited.next()) {
            Some(Ok(value)) => insert(&mut map, field.node.response_key().node.clone(), value),
            Some(Err(err)) => ctx.add_error(err),
            None => {}
        }
    }
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

/// Resolves `ctx`'s selection set on `root`: every ready field at once, the others together.
pub(crate) async fn object<F: Fields + ?Sized>(
    ctx: &ContextSelectionSet<'_>,
    root: &F,
) -> ServerResult<Value> {
    let type_name = root.type_name();
    let (slots, waiting) = collect(ctx, &type_name, |c| root.field(c))?;
    let waited = if waiting.is_empty() {
        Vec::new()
    } else {
        future::join_all(waiting).await
    };
    Ok(assemble(ctx, slots, waited))
}

/// A nested object every field of which its value answers at once (a page's `pageInfo`, a
/// postmortem's action item).
pub(crate) trait PlainFields {
    const TYPE_NAME: &'static str;

    fn field(&self, ctx: &Context<'_>) -> ServerResult<Value>;
}

/// The value of the object field `ctx` on `root`, resolved at once.
pub(crate) fn plain_object<P: PlainFields>(ctx: &Context<'_>, root: &P) -> ServerResult<Value> {
    let set = ctx.with_selection_set(&ctx.item.node.selection_set);
    let (slots, _) = collect(&set, P::TYPE_NAME, |c| Slot::Ready(root.field(&c)))?;
    Ok(assemble(&set, slots, Vec::new()))
}

/// The value of the list field `ctx`, each item resolved at once at its index in the path.
pub(crate) fn plain_list<P: PlainFields>(ctx: &Context<'_>, items: &[P]) -> ServerResult<Value> {
    let values = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = ctx.with_index(i);
            plain_object(&at, item).map_err(|err| at.set_error_path(err))
        })
        .collect::<ServerResult<Vec<_>>>()?;
    Ok(Value::List(values))
}

/// An object type whose plain fields the fast path answers; the GraphQL type and every other
/// field come from `$resolvers`, its `#[Object]` impl over the same row.
macro_rules! fast_object {
    ($ty:ty, $resolvers:ident) => {
        impl async_graphql::OutputType for $ty {
            fn type_name() -> std::borrow::Cow<'static, str> {
                <$resolvers<'static> as async_graphql::OutputType>::type_name()
            }

            fn create_type_info(registry: &mut async_graphql::registry::Registry) -> String {
                <$resolvers<'static> as async_graphql::OutputType>::create_type_info(registry)
            }

            async fn resolve(
                &self,
                ctx: &async_graphql::ContextSelectionSet<'_>,
                _field: &async_graphql::Positioned<async_graphql::parser::types::Field>,
            ) -> async_graphql::ServerResult<async_graphql::Value> {
                $crate::graphql::schema::fast::object(ctx, self).await
            }
        }
    };
}
pub(crate) use fast_object;

type Inner<N, T> = connection::Connection<String, N, T>;

/// A Relay connection resolved by the fast path: async-graphql's own `Connection` (its schema,
/// and its resolvers for the additional fields such as `totalCount`), with `edges`, `nodes`
/// and `pageInfo` answered here.
pub struct FastConnection<N: OutputType, T: ObjectType>(pub(crate) Inner<N, T>);

impl<N: OutputType, T: ObjectType> FastConnection<N, T> {
    pub fn new(
        has_previous: bool,
        has_next: bool,
        fields: T,
        edges: impl IntoIterator<Item = (String, N)>,
    ) -> Self {
        let mut inner = Inner::with_additional_fields(has_previous, has_next, fields);
        inner.edges.extend(
            edges
                .into_iter()
                .map(|(cursor, node)| Edge::new(cursor, node)),
        );
        FastConnection(inner)
    }
}

impl<N: OutputType, T: ObjectType> OutputType for FastConnection<N, T> {
    fn type_name() -> Cow<'static, str> {
        <Inner<N, T> as OutputType>::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Inner<N, T> as OutputType>::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        object(ctx, self).await
    }
}

impl<N: OutputType, T: ObjectType> Fields for FastConnection<N, T> {
    fn type_name(&self) -> Cow<'static, str> {
        <Inner<N, T> as TypeName>::type_name()
    }

    fn field<'b>(&'b self, ctx: Context<'b>) -> Slot<'b> {
        let edges = &self.0.edges;
        match ctx.item.node.name.node.as_str() {
            "pageInfo" => Slot::Ready(plain_object(
                &ctx,
                &PageInfo {
                    has_previous_page: self.0.has_previous_page,
                    has_next_page: self.0.has_next_page,
                    start_cursor: edges.first().map(|e| e.cursor.as_str()),
                    end_cursor: edges.last().map(|e| e.cursor.as_str()),
                },
            )),
            "edges" => Slot::Later(Box::pin(async move {
                let name = <Edge<String, N, EmptyFields> as TypeName>::type_name();
                let items = edges.iter().enumerate().map(|(i, edge)| {
                    let (ctx, name) = (&ctx, &name);
                    async move {
                        let at = ctx.with_index(i);
                        let set = at.with_selection_set(&at.item.node.selection_set);
                        object(&set, &EdgeFields { edge, name })
                            .await
                            .map_err(|err| at.set_error_path(err))
                    }
                });
                Ok(Value::List(future::try_join_all(items).await?))
            })),
            "nodes" => Slot::Later(Box::pin(async move {
                let items = edges.iter().enumerate().map(|(i, edge)| {
                    let ctx = &ctx;
                    async move {
                        let at = ctx.with_index(i);
                        let set = at.with_selection_set(&at.item.node.selection_set);
                        edge.node
                            .resolve(&set, at.item)
                            .await
                            .map_err(|err| at.set_error_path(err))
                    }
                });
                Ok(Value::List(future::try_join_all(items).await?))
            })),
            _ => later(ctx, &self.0),
        }
    }
}

struct EdgeFields<'e, N: OutputType> {
    edge: &'e Edge<String, N, EmptyFields>,
    name: &'e Cow<'static, str>,
}

impl<N: OutputType> Fields for EdgeFields<'_, N> {
    fn type_name(&self) -> Cow<'static, str> {
        self.name.clone()
    }

    fn field<'b>(&'b self, ctx: Context<'b>) -> Slot<'b> {
        match ctx.item.node.name.node.as_str() {
            "cursor" => text(&self.edge.cursor),
            "node" => Slot::Later(Box::pin(async move {
                let set = ctx.with_selection_set(&ctx.item.node.selection_set);
                self.edge.node.resolve(&set, ctx.item).await
            })),
            other => Slot::Ready(Err(unknown(&ctx, other))),
        }
    }
}

struct PageInfo<'e> {
    has_previous_page: bool,
    has_next_page: bool,
    start_cursor: Option<&'e str>,
    end_cursor: Option<&'e str>,
}

impl PlainFields for PageInfo<'_> {
    const TYPE_NAME: &'static str = "PageInfo";

    fn field(&self, ctx: &Context<'_>) -> ServerResult<Value> {
        Ok(match ctx.item.node.name.node.as_str() {
            "hasPreviousPage" => Value::Boolean(self.has_previous_page),
            "hasNextPage" => Value::Boolean(self.has_next_page),
            "startCursor" => self.start_cursor.map_or(Value::Null, Value::from),
            "endCursor" => self.end_cursor.map_or(Value::Null, Value::from),
            other => return Err(unknown(ctx, other)),
        })
    }
}

/// A field validation let through that the type does not have: cannot happen, answered as
/// async-graphql answers it.
pub(crate) fn unknown(ctx: &Context<'_>, field: &str) -> ServerError {
    ServerError::new(
        format!(r#"Cannot query field "{field}"."#),
        Some(ctx.item.pos),
    )
}
