//! What every operation carries (the caller, the domain, the live feed, a fresh set of loaders,
//! the response budget), attached by the transports and read back by the resolvers.

use std::sync::Arc;

use async_graphql::Context;
use async_graphql::dataloader::DataLoader;

use super::loaders::{AppLoader, PageBatches};
use crate::error::{AppError, AppResult};
use crate::incident::budget::ResponseBudget;
use crate::incident::identity::Principal;
use crate::incident::service::Domain;
use crate::live::Hub;

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
