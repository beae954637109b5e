//! GraphQL over Server-Sent Events on `/graphql`, as graphql-sse's PROTOCOL.md describes: the
//! "distinct connections" mode (a POST or GET with `Accept: text/event-stream` streams its own
//! operation) and the "single connection" mode (PUT reserves a stream, GET opens it, POSTs with
//! the token add operations, DELETE stops one). Same authentication, limits, write timeout and
//! shutdown as the WebSocket transport, whose state it shares.

use std::collections::HashMap;
use std::convert::Infallible;

use async_graphql_axum::GraphQLRequest;
use async_graphql_axum::rejection::GraphQLRejection;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::connections::Holder;
use super::operation::{self, Method, Out};
use super::reservations::Reservation;
use super::state::GraphqlState;
use super::wire::{MediaType, error_response, parse_query_string, rejected, rejected_body};
use crate::auth::sessions::Use;
use crate::error::AppError;
use crate::graphql::error::request_error;
use crate::incident::identity::Principal;
use crate::telemetry::{request_id, with_request_id};

/// The header (or `token` query parameter) that names a reservation.
pub const TOKEN_HEADER: &str = "x-graphql-event-stream-token";

/// Messages waiting for a slow client, per stream; past this, a send waits up to the write
/// timeout and then the stream is dropped.
const BUFFERED_MESSAGES: usize = 32;

/// Whether the client asks for an event stream and for no JSON type: graphql-sse's client and
/// `EventSource` send `Accept: text/event-stream`; GraphQL-over-HTTP clients accept JSON.
pub fn wants_event_stream(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let event_stream = accept.split(',').any(|part| {
        part.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
    });
    event_stream
        && !accept.contains("json")
        && !accept.contains("*/*")
        && !accept.contains("application/*")
}

fn token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()) {
        return Some(value.to_string());
    }
    query_param(query?, "token")
}

/// A query-string parameter, percent-decoded (once).
fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The caller; by cookie, a GET (a stream) must come from our origin and the other methods
/// (which start or stop operations) must show the CSRF token.
async fn authenticate(
    state: &GraphqlState,
    headers: &HeaderMap,
    usage: Use,
) -> Result<Principal, AppError> {
    operation::authenticate(state, headers, usage).await
}

/// A protocol-level refusal: `{"errors": [...]}` as JSON with the protocol's status.
fn refuse(status: StatusCode, err: &AppError, headers: &HeaderMap) -> Response {
    rejected(status, err, MediaType::Json, &request_id(headers))
}

fn too_many_connections() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "too many streaming connections",
    )
        .into_response()
}

fn event_stream(body: impl Stream<Item = String> + Send + 'static) -> Response {
    let mut response = Body::from_stream(body.map(Ok::<_, Infallible>)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // nginx buffers proxied responses unless told not to, which would hold events back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// An SSE message; `data` is one line of JSON (serde_json never writes a newline).
fn message(event: &str, data: Option<serde_json::Value>) -> String {
    match data {
        Some(data) => format!("event: {event}\ndata: {data}\n\n"),
        // An empty `data:` field, or `EventSource` never fires the listener.
        None => format!("event: {event}\ndata: \n\n"),
    }
}

/// The event-stream body: a first comment (browsers wait for bytes before they report the
/// stream open), then what `receiver` carries, with keep-alive comments in between; it ends
/// when the feeder is done, at shutdown, when the token expires or the session ends, or when
/// `closed` is cancelled.
/// Dropping it (the client went away) cancels `closed`.
fn body(
    state: &GraphqlState,
    principal: Principal,
    mut receiver: mpsc::Receiver<String>,
    closed: CancellationToken,
    headers: &HeaderMap,
    on_close: impl FnOnce() + Send + 'static,
) -> impl Stream<Item = String> + Send + 'static {
    let shutdown = state.ws.shutdown.clone();
    // A stream opened by the session cookie ends with the session.
    let ended = state.sessions.ended(state.sessions.cookie_caller(headers));
    let keep_alive = state.sse.keep_alive;
    struct OnDrop<F: FnOnce()>(Option<F>, CancellationToken);
    impl<F: FnOnce()> Drop for OnDrop<F> {
        fn drop(&mut self) {
            self.1.cancel();
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    async_stream::stream! {
        let _guard = OnDrop(Some(on_close), closed.clone());
        let _gauge = crate::monitoring::GaugeGuard::sse_connection();
        let expiry = operation::expiry(Some(&principal));
        tokio::pin!(expiry);
        tokio::pin!(ended);
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
        yield ":\n\n".to_string();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = closed.cancelled() => break,
                _ = &mut expiry => break,
                _ = &mut ended => break,
                _ = ticks.tick() => yield ":\n\n".to_string(),
                next = receiver.recv() => match next {
                    Some(text) => yield text,
                    None => break,
                },
            }
        }
    }
}

/// Where an operation's messages go.
struct Feed {
    /// The operation id of the single-connection mode; `None` on a stream of its own.
    id: Option<String>,
    sender: mpsc::Sender<String>,
    /// Stops this operation.
    cancel: CancellationToken,
    /// Ends the whole stream (the client is too slow).
    closed: CancellationToken,
}

/// Runs one operation into its feed: `next` messages, then `complete`. Stops when `cancel` is
/// cancelled; a client that takes nothing for the write timeout cancels `closed`.
fn spawn_operation(
    state: &GraphqlState,
    outs: impl Stream<Item = Out> + Send + 'static,
    feed: Feed,
    request_id: String,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let Feed {
        id,
        sender,
        cancel,
        closed,
    } = feed;
    let write_timeout = state.ws.limits.write_timeout;
    let task = async move {
        let _gauge = crate::monitoring::GaugeGuard::sse_operation();
        tokio::pin!(outs);
        loop {
            let out = tokio::select! {
                _ = cancel.cancelled() => return,
                out = outs.next() => out,
            };
            let Some(out) = out else { return };
            let (text, last) = match out {
                // A request error is reported as a `next` holding the errors, then `complete`:
                // the protocol asks for errors of validation inside the accepted stream.
                Out::Error(errors) => {
                    let errors = next(&id, json!({ "errors": errors }));
                    (errors + &complete(&id), true)
                }
                Out::Next(response) => match serde_json::to_value(&response) {
                    Ok(value) => (next(&id, value), false),
                    Err(_) => return,
                },
                Out::Complete => (complete(&id), true),
            };
            match tokio::time::timeout(write_timeout, sender.send(text)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!("SSE client took nothing for the write timeout; dropping it");
                    closed.cancel();
                    return;
                }
            }
            if last {
                return;
            }
        }
    };
    with_request_id(request_id, task)
}

fn next(id: &Option<String>, payload: serde_json::Value) -> String {
    match id {
        Some(id) => message("next", Some(json!({ "id": id, "payload": payload }))),
        None => message("next", Some(payload)),
    }
}

fn complete(id: &Option<String>) -> String {
    match id {
        Some(id) => message("complete", Some(json!({ "id": id }))),
        None => message("complete", None),
    }
}

/// Distinct connections mode: this request's operation on a stream of its own.
pub async fn distinct(
    state: GraphqlState,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => return rejected_body(rejection, MediaType::Json, &request_id(&headers)),
    };
    stream_one(state, headers, request, Method::Post).await
}

async fn stream_one(
    state: GraphqlState,
    headers: HeaderMap,
    request: async_graphql::Request,
    method: Method,
) -> Response {
    let request_id = request_id(&headers);
    let usage = match method {
        Method::Get => Use::Stream,
        Method::Post => Use::Write,
    };
    let principal = match authenticate(&state, &headers, usage).await {
        Ok(p) => p,
        Err(e) => return error_response(&e, MediaType::Json, &request_id),
    };
    let Some(place) = state.ws.place(&principal) else {
        return too_many_connections();
    };
    // Prepared before the stream opens, so a GET that may not run its operation is refused
    // with 405 like any GET; other request errors go inside the accepted stream, as the
    // protocol asks.
    let prepared = operation::prepare(&state, principal.clone(), request, method, None);
    let outs = match with_request_id(request_id.clone(), prepared).await {
        Ok(prepared) => operation::stream_prepared(state.clone(), prepared).boxed(),
        Err(e @ AppError::MethodNotAllowed(_)) => {
            return error_response(&e, MediaType::Json, &request_id);
        }
        Err(e) => {
            let errors = vec![request_error(&e, &request_id)];
            futures_util::stream::once(async move { Out::Error(errors) }).boxed()
        }
    };
    let (sender, receiver) = mpsc::channel(BUFFERED_MESSAGES);
    let closed = state.ws.shutdown.child_token();
    let feed = Feed {
        id: None,
        sender,
        cancel: closed.clone(),
        closed: closed.clone(),
    };
    let task = spawn_operation(&state, outs, feed, request_id);
    state.ws.tasks.spawn(task);
    event_stream(body(
        &state,
        principal,
        receiver,
        closed,
        &headers,
        move || drop(place),
    ))
}

/// `GET` with `Accept: text/event-stream`: opens a reserved stream (with its token), or runs a
/// query string's operation on a stream of its own (what `EventSource` can send).
pub async fn get(state: GraphqlState, headers: HeaderMap, query: Option<String>) -> Response {
    let Some(token) = token(&headers, query.as_deref()) else {
        let request = match parse_query_string(query.as_deref().unwrap_or("")) {
            Ok(r) => r,
            Err(err) => return refuse(StatusCode::BAD_REQUEST, &err, &headers),
        };
        return stream_one(state, headers, request, Method::Get).await;
    };
    let caller = match headers.contains_key(header::AUTHORIZATION) {
        true => match authenticate(&state, &headers, Use::Stream).await {
            Ok(p) => Some(p),
            Err(e) => return error_response(&e, MediaType::Json, &request_id(&headers)),
        },
        // `EventSource` cannot send headers: the token, bound to who reserved it, is the ticket.
        false => None,
    };
    let (principal, receiver, closed) = {
        let mut reservations = state.sse.lock();
        let Some(reservation) = reservations.get_mut(&token) else {
            return refuse(StatusCode::NOT_FOUND, &not_reserved(), &headers);
        };
        if caller.is_some_and(|c| !same_caller(&c, &reservation.principal)) {
            return refuse(StatusCode::FORBIDDEN, &not_yours(), &headers);
        }
        if reservation.receiver.is_none() {
            let err = AppError::Conflict("the stream of this reservation is already open".into());
            return refuse(StatusCode::CONFLICT, &err, &headers);
        }
        let Some(place) = state.ws.place(&reservation.principal) else {
            return too_many_connections();
        };
        reservation.place = Some(place);
        reservation.pending = None;
        let receiver = reservation.receiver.take().expect("checked above");
        (
            reservation.principal.clone(),
            receiver,
            reservation.closed.clone(),
        )
    };
    let sse = state.sse.clone();
    event_stream(body(
        &state,
        principal,
        receiver,
        closed,
        &headers,
        move || {
            sse.lock().remove(&token);
        },
    ))
}

/// `PUT`: reserves a single-connection stream; answers 201 with its token.
pub async fn reserve(State(state): State<GraphqlState>, headers: HeaderMap) -> Response {
    let principal = match authenticate(&state, &headers, Use::Write).await {
        Ok(p) => p,
        Err(e) => return error_response(&e, MediaType::Json, &request_id(&headers)),
    };
    // Until its stream opens, a reservation holds a pending place of its caller's, not a
    // connection's: a flood of reservations takes nobody else's places.
    let Some(pending) = state.ws.pending.take(Some(Holder::caller(&principal))) else {
        return too_many_connections();
    };
    // 256 random bits: the token is a bearer ticket for the stream.
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let (sender, receiver) = mpsc::channel(BUFFERED_MESSAGES);
    let closed = state.ws.shutdown.child_token();
    state.sse.lock().insert(
        token.clone(),
        Reservation {
            principal,
            sender,
            receiver: Some(receiver),
            operations: HashMap::new(),
            closed: closed.clone(),
            pending: Some(pending),
            place: None,
        },
    );
    // A reservation whose stream is not opened within the init timeout lapses, as a WebSocket
    // without `connection_init` does.
    let sse = state.sse.clone();
    let lapse = state.ws.limits.init_timeout;
    let expiring = token.clone();
    state.ws.tasks.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(lapse) => {}
            _ = closed.cancelled() => {}
        }
        let mut reservations = sse.lock();
        let unopened = reservations
            .get(&expiring)
            .is_some_and(|r| r.receiver.is_some());
        if (unopened || closed.is_cancelled())
            && let Some(r) = reservations.remove(&expiring)
        {
            r.closed.cancel();
        }
    });
    let mut response = (StatusCode::CREATED, token).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `POST` with a reservation token: adds an operation to that stream; 202 when accepted.
pub async fn add_operation(
    state: GraphqlState,
    headers: HeaderMap,
    request: Result<GraphQLRequest, GraphQLRejection>,
) -> Response {
    let request_id = request_id(&headers);
    let Some(token) = token(&headers, None) else {
        return refuse(StatusCode::NOT_FOUND, &not_reserved(), &headers);
    };
    // Operations run as the caller, who must be who reserved the stream: a leaked reservation
    // token alone cannot run anything.
    let principal = match authenticate(&state, &headers, Use::Write).await {
        Ok(p) => p,
        Err(e) => return error_response(&e, MediaType::Json, &request_id),
    };
    let request = match request {
        Ok(request) => request.into_inner(),
        Err(rejection) => return rejected_body(rejection, MediaType::Json, &request_id),
    };
    let Some(id) = request
        .extensions
        .0
        .get("operationId")
        .and_then(|v| match v {
            async_graphql::Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        })
    else {
        let err = AppError::bad_input(
            "extensions.operationId",
            "an operation on a reserved stream needs extensions.operationId",
        );
        return refuse(StatusCode::BAD_REQUEST, &err, &headers);
    };
    let (sender, cancel, closed) = {
        let mut reservations = state.sse.lock();
        let Some(reservation) = reservations.get_mut(&token) else {
            return refuse(StatusCode::NOT_FOUND, &not_reserved(), &headers);
        };
        if !same_caller(&principal, &reservation.principal) {
            return refuse(StatusCode::FORBIDDEN, &not_yours(), &headers);
        }
        if reservation.operations.contains_key(&id) {
            let err = AppError::Conflict(format!("an operation with id {id} is running"));
            return refuse(StatusCode::CONFLICT, &err, &headers);
        }
        let max = state.ws.limits.max_subscriptions;
        reservation
            .operations
            .retain(|_, cancel| !cancel.is_cancelled());
        if reservation.operations.len() >= max {
            let err = AppError::Forbidden(format!("at most {max} operations per stream"));
            return refuse(StatusCode::FORBIDDEN, &err, &headers);
        }
        let cancel = reservation.closed.child_token();
        reservation.operations.insert(id.clone(), cancel.clone());
        (
            reservation.sender.clone(),
            cancel,
            reservation.closed.clone(),
        )
    };
    let feed = Feed {
        id: Some(id),
        sender,
        cancel: cancel.clone(),
        closed,
    };
    let outs = operation::execute_stream(state.clone(), principal, request, Method::Post);
    let task = spawn_operation(&state, outs, feed, request_id);
    let sse = state.sse.clone();
    state.ws.tasks.spawn(async move {
        task.await;
        // Done, stopped or dropped: the id may be used again.
        cancel.cancel();
        if let Some(r) = sse.lock().get_mut(&token) {
            r.operations.retain(|_, c| !c.is_cancelled());
        }
    });
    StatusCode::ACCEPTED.into_response()
}

/// `DELETE ?operationId=…` with a reservation token: stops that operation. Only the caller who
/// reserved the stream may; to anyone else a reservation or an operation that is not theirs
/// answers as one that does not exist.
pub async fn stop(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let principal = match authenticate(&state, &headers, Use::Write).await {
        Ok(p) => p,
        Err(e) => return error_response(&e, MediaType::Json, &request_id(&headers)),
    };
    let Some(token) = token(&headers, query.as_deref()) else {
        return refuse(StatusCode::NOT_FOUND, &not_reserved(), &headers);
    };
    let Some(id) = query.as_deref().and_then(|q| query_param(q, "operationId")) else {
        let err = AppError::bad_input("operationId", "DELETE needs ?operationId=…");
        return refuse(StatusCode::BAD_REQUEST, &err, &headers);
    };
    let mut reservations = state.sse.lock();
    let Some(reservation) = reservations
        .get_mut(&token)
        .filter(|r| same_caller(&principal, &r.principal))
    else {
        return refuse(StatusCode::NOT_FOUND, &not_reserved(), &headers);
    };
    match reservation.operations.remove(&id) {
        Some(cancel) if !cancel.is_cancelled() => {
            cancel.cancel();
            StatusCode::OK.into_response()
        }
        _ => refuse(
            StatusCode::NOT_FOUND,
            &AppError::NotFound("running operation"),
            &headers,
        ),
    }
}

fn same_caller(a: &Principal, b: &Principal) -> bool {
    a.org_id == b.org_id && a.user_id == b.user_id
}

fn not_reserved() -> AppError {
    AppError::NotFound("event stream reservation")
}

fn not_yours() -> AppError {
    AppError::Forbidden("this stream was reserved by another caller".into())
}
