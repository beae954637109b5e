//! GraphQL over WebSocket on `GET /graphql`: `graphql-transport-ws` exactly as graphql-ws's
//! PROTOCOL.md says (close codes 4400/4401/4403/4408/4409/4429, ping/pong), and the legacy
//! `graphql-ws` protocol of subscriptions-transport-ws. Written here rather than taken from
//! async-graphql-axum, whose close codes differ from graphql-ws's PROTOCOL.md.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use tokio::sync::OwnedSemaphorePermit;
use tokio_stream::StreamMap;

use super::connections::{Holder, PendingSlot, Share};
use super::operation::{self, Method, Out};
use super::state::GraphqlState;
use crate::auth::bearer_token;
use crate::auth::sessions::Use;
use crate::error::AppError;
use crate::graphql::error::request_error;
use crate::incident::identity::Principal;

pub const TRANSPORT_WS: &str = "graphql-transport-ws";
pub const LEGACY_WS: &str = "graphql-ws";

pub const GOING_AWAY: u16 = 1001;
pub const BAD_MESSAGE: u16 = 4400;
pub const UNAUTHORIZED: u16 = 4401;
pub const FORBIDDEN: u16 = 4403;
pub const INIT_TIMEOUT: u16 = 4408;
pub const DUPLICATE_ID: u16 = 4409;
pub const TOO_MANY_INITS: u16 = 4429;
/// No pong came back within a ping interval: the peer is gone (a half-open connection).
pub const NO_PONG: u16 = 4504;
/// The caller's organization, or the caller, holds as many connections as it may (RFC 6455's
/// "try again later").
pub const TRY_AGAIN_LATER: u16 = 1013;

const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Transport,
    Legacy,
}

/// Answers a WebSocket upgrade on `/graphql`.
pub async fn upgrade(
    state: GraphqlState,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
    peer: Option<IpAddr>,
) -> Response {
    // Browsers send `Origin` on every WebSocket and do not apply CORS to it: refuse cross-site
    // pages (CSWSH) unless their origin is allowed.
    if !origin_allowed(&headers, &state.ws.allowed_origins) {
        return (
            StatusCode::FORBIDDEN,
            "this origin may not open a WebSocket",
        )
            .into_response();
    }
    let Some(pending) = state.ws.pending.take(peer.map(Holder::Peer)) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket connections waiting for connection_init",
        )
            .into_response();
    };
    let Ok(permit) = state.ws.permits.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many WebSocket connections",
        )
            .into_response();
    };
    let limits = state.ws.limits.clone();
    let ws = ws
        .protocols([TRANSPORT_WS, LEGACY_WS])
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        // Small buffers: a server holds thousands of mostly idle sockets (the defaults,
        // 128 KiB each way, would cost over a gigabyte at 10,000), and they grow when needed.
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        // Messages are checked against `max_outgoing_bytes` before they are sent, so one never
        // overflows the buffer (which would fail the send and drop the socket).
        .max_write_buffer_size(limits.max_outgoing_bytes + 64 * 1024);
    let protocol = match ws.selected_protocol().and_then(|p| p.to_str().ok()) {
        Some(LEGACY_WS) => Protocol::Legacy,
        _ => Protocol::Transport,
    };
    // A browser cannot set headers on a WebSocket, but other clients may authenticate the upgrade.
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_string);
    // A browser's own session: its cookie, from our origin only (checked here, where the
    // headers are); `connection_init` may then come with an empty payload.
    let cookie = state.sessions.cookie_caller(&headers);
    let session = match cookie {
        Some(value) => Some((
            operation::authenticate(&state, &headers, Use::Stream).await,
            value,
        )),
        None => None,
    };
    let connection_id = crate::telemetry::request_id(&headers);
    ws.on_upgrade(move |socket| {
        let tasks = state.ws.tasks.clone();
        let mut connection =
            Connection::new(socket, state, protocol, header_token, permit, pending);
        connection.session = session;
        tasks.track_future(crate::telemetry::with_request_id(
            connection_id,
            connection.run(),
        ))
    })
}

/// No `Origin` (not a browser), an allowed origin, or the same origin (its host is `Host`).
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: async_graphql::Request,
    },
    Complete {
        id: String,
    },
    // subscriptions-transport-ws
    Start {
        id: String,
        payload: async_graphql::Request,
    },
    Stop {
        id: String,
    },
    ConnectionTerminate,
}

enum Flow {
    Continue,
    Close(u16, String),
}

struct Connection {
    socket: WebSocket,
    state: GraphqlState,
    protocol: Protocol,
    header_token: Option<String>,
    /// The session cookie's caller (or why not) and the cookie, when the upgrade came with one
    /// and no token.
    session: Option<(Result<Principal, AppError>, String)>,
    /// The cookie, once the connection is authenticated by it: the socket closes when the
    /// session ends.
    by_cookie: Option<String>,
    principal: Option<Principal>,
    init_received: bool,
    /// A ping went out and its pong has not come back yet.
    awaiting_pong: bool,
    operations: StreamMap<String, BoxStream<'static, Out>>,
    outbox: VecDeque<Value>,
    _permit: OwnedSemaphorePermit,
    /// Held until a valid `connection_init`.
    pending: Option<PendingSlot>,
    /// Taken at a valid `connection_init`: the organization's and the caller's share.
    share: Option<Share>,
    /// Counts this connection in `incidentd_ws_connections` until it is dropped, however it ends.
    _gauge: crate::monitoring::GaugeGuard,
}

impl Connection {
    fn new(
        socket: WebSocket,
        state: GraphqlState,
        protocol: Protocol,
        header_token: Option<String>,
        permit: OwnedSemaphorePermit,
        pending: PendingSlot,
    ) -> Connection {
        Connection {
            socket,
            state,
            protocol,
            header_token,
            session: None,
            by_cookie: None,
            principal: None,
            init_received: false,
            awaiting_pong: false,
            operations: StreamMap::new(),
            outbox: VecDeque::new(),
            _permit: permit,
            pending: Some(pending),
            share: None,
            _gauge: crate::monitoring::GaugeGuard::ws_connection(),
        }
    }

    async fn run(mut self) {
        let limits = self.state.ws.limits.clone();
        let shutdown = self.state.ws.shutdown.clone();
        let init_deadline = tokio::time::sleep(limits.init_timeout);
        tokio::pin!(init_deadline);
        let pinging = !limits.ping_interval.is_zero();
        let mut pings = tokio::time::interval(limits.ping_interval.max(Duration::from_millis(1)));
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        pings.reset();
        let mut ended: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
            Box::pin(std::future::pending());
        let mut watching = false;
        loop {
            if !watching && self.principal.is_some() {
                watching = true;
                ended = Box::pin(self.state.sessions.ended(self.by_cookie.clone()));
            }
            while let Some(message) = self.outbox.pop_front() {
                if !self.send(message).await {
                    return;
                }
            }
            let expiry = operation::expiry(self.principal.as_ref());
            let flow = tokio::select! {
                _ = shutdown.cancelled() => Flow::Close(GOING_AWAY, "server shutting down".into()),
                _ = &mut init_deadline, if !self.init_received => {
                    Flow::Close(INIT_TIMEOUT, "Connection initialisation timeout".into())
                }
                _ = expiry => Flow::Close(FORBIDDEN, "Forbidden: token expired".into()),
                _ = &mut ended => Flow::Close(FORBIDDEN, "Forbidden: the session has ended".into()),
                _ = pings.tick(), if pinging && self.principal.is_some() => {
                    if self.awaiting_pong {
                        Flow::Close(NO_PONG, "no pong within the ping interval".into())
                    } else {
                        self.awaiting_pong = true;
                        let sent = match self.protocol {
                            Protocol::Transport => self.send(json!({ "type": "ping" })).await,
                            Protocol::Legacy => self.send_frame(Message::Ping(Default::default())).await,
                        };
                        if sent { Flow::Continue } else { return }
                    }
                }
                message = self.socket.recv() => match message {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(Message::Text(text))) => self.on_message(text.as_str()),
                    Some(Ok(Message::Binary(_))) => Flow::Close(BAD_MESSAGE, "Invalid message: binary frames are not accepted".into()),
                    Some(Ok(Message::Pong(_))) => {
                        self.awaiting_pong = false;
                        Flow::Continue
                    }
                    Some(Ok(Message::Ping(_))) => Flow::Continue,
                },
                Some((id, out)) = self.operations.next(), if !self.operations.is_empty() => {
                    let message = self.render(&id, out);
                    let mut text = message.to_string();
                    if text.len() > limits.max_outgoing_bytes {
                        // Too large to send: that operation ends with an error, the socket stays.
                        self.operations.remove(&id);
                        let error = AppError::ResponseTooLarge(limits.max_outgoing_bytes);
                        let payload = json!([request_error(&error, &crate::telemetry::current_request_id())]);
                        text = self.error_message(&id, payload).to_string();
                    }
                    if self.send_frame(Message::Text(text.into())).await { Flow::Continue } else { return }
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => {
                    let frame = CloseFrame {
                        code,
                        reason: reason.into(),
                    };
                    let _ = tokio::time::timeout(
                        limits.write_timeout,
                        self.socket.send(Message::Close(Some(frame))),
                    )
                    .await;
                    return;
                }
            }
        }
    }

    /// Sends within the write timeout; a client that cannot take a message in time is dropped.
    async fn send(&mut self, message: Value) -> bool {
        self.send_frame(Message::Text(message.to_string().into()))
            .await
    }

    async fn send_frame(&mut self, frame: Message) -> bool {
        let write_timeout = self.state.ws.limits.write_timeout;
        matches!(
            tokio::time::timeout(write_timeout, self.socket.send(frame)).await,
            Ok(Ok(()))
        )
    }

    /// Queues a reply; `run` sends it before reading anything else.
    fn reply(&mut self, message: Value) -> Flow {
        self.outbox.push_back(message);
        Flow::Continue
    }

    fn on_message(&mut self, text: &str) -> Flow {
        let message: ClientMessage = match serde_json::from_str(text) {
            Ok(m) => m,
            Err(e) => return Flow::Close(BAD_MESSAGE, truncate(format!("Invalid message: {e}"))),
        };
        match (self.protocol, message) {
            (_, ClientMessage::ConnectionInit { payload }) => self.on_init(payload),
            (Protocol::Transport, ClientMessage::Ping { payload }) => {
                let mut pong = json!({ "type": "pong" });
                if let Some(p) = payload {
                    pong["payload"] = p;
                }
                self.reply(pong)
            }
            (Protocol::Transport, ClientMessage::Pong { .. }) => {
                self.awaiting_pong = false;
                Flow::Continue
            }
            (Protocol::Transport, ClientMessage::Subscribe { id, payload })
            | (Protocol::Legacy, ClientMessage::Start { id, payload }) => {
                self.on_subscribe(id, payload)
            }
            (Protocol::Transport, ClientMessage::Complete { id })
            | (Protocol::Legacy, ClientMessage::Stop { id }) => {
                self.operations.remove(&id);
                Flow::Continue
            }
            (Protocol::Legacy, ClientMessage::ConnectionTerminate) => {
                Flow::Close(1000, "terminated".into())
            }
            _ => Flow::Close(
                BAD_MESSAGE,
                "Invalid message: unexpected type for this protocol".into(),
            ),
        }
    }

    fn on_init(&mut self, payload: Option<Value>) -> Flow {
        if self.init_received {
            return Flow::Close(TOO_MANY_INITS, "Too many initialisation requests".into());
        }
        self.init_received = true;
        let token = payload
            .as_ref()
            .and_then(token_from_payload)
            .or_else(|| self.header_token.clone());
        let caller = match (token, self.session.take()) {
            (None, Some((caller, cookie))) => {
                self.by_cookie = Some(cookie);
                caller
            }
            (token, _) => operation::authenticate_token(&self.state, token.as_deref()),
        };
        match caller {
            Ok(p) => {
                let Some(share) = self.state.ws.shares.take(&p) else {
                    return Flow::Close(
                        TRY_AGAIN_LATER,
                        "Too many connections for this organization or caller".into(),
                    );
                };
                self.share = Some(share);
                self.principal = Some(p);
                self.pending = None;
                self.reply(json!({ "type": "connection_ack" }))
            }
            Err(e) => {
                tracing::info!(error = %e, "WebSocket connection_init rejected");
                Flow::Close(FORBIDDEN, "Forbidden".into())
            }
        }
    }

    fn on_subscribe(&mut self, id: String, request: async_graphql::Request) -> Flow {
        let Some(principal) = self.principal.clone() else {
            return Flow::Close(UNAUTHORIZED, "Unauthorized".into());
        };
        if self.operations.contains_key(&id) {
            return Flow::Close(
                DUPLICATE_ID,
                truncate(format!("Subscriber for {id} already exists")),
            );
        }
        if self.operations.len() >= self.state.ws.limits.max_subscriptions {
            let error = AppError::Forbidden(format!(
                "at most {} subscriptions per connection",
                self.state.ws.limits.max_subscriptions
            ));
            let payload = json!([request_error(
                &error,
                &crate::telemetry::current_request_id()
            )]);
            let message = self.error_message(&id, payload);
            return self.reply(message);
        }
        let stream =
            operation::execute_stream(self.state.clone(), principal, request, Method::Post);
        // The guard lives in the stream: completed, stopped or dropped with the connection,
        // the operation leaves `incidentd_ws_subscriptions`.
        let gauge = crate::monitoring::GaugeGuard::ws_subscription();
        let stream = stream.map(move |out| {
            let _held = &gauge;
            out
        });
        // Polled once now: the resolver runs up to its first wait and so registers with the
        // change feed before the next client message is read. A client that sends `ping` after
        // `subscribe` knows, at `pong`, that every later commit reaches the subscription.
        let mut stream = stream.boxed();
        match stream.next().now_or_never() {
            None => {
                self.operations.insert(id, stream);
            }
            Some(Some(out)) => {
                let ended = !matches!(out, Out::Next(_));
                let message = self.render(&id, out);
                self.outbox.push_back(message);
                if !ended {
                    self.operations.insert(id, stream);
                }
            }
            Some(None) => {}
        }
        Flow::Continue
    }

    fn error_message(&self, id: &str, errors: Value) -> Value {
        match self.protocol {
            Protocol::Transport => json!({ "type": "error", "id": id, "payload": errors }),
            Protocol::Legacy => {
                json!({ "type": "error", "id": id, "payload": { "errors": errors } })
            }
        }
    }

    fn render(&self, id: &str, out: Out) -> Value {
        match out {
            Out::Next(response) => {
                let kind = match self.protocol {
                    Protocol::Transport => "next",
                    Protocol::Legacy => "data",
                };
                json!({ "type": kind, "id": id, "payload": response })
            }
            Out::Error(errors) => self.error_message(id, json!(errors)),
            Out::Complete => json!({ "type": "complete", "id": id }),
        }
    }
}

/// `{"Authorization": "Bearer …"}` (any case) or `{"token": "…"}`.
fn token_from_payload(payload: &Value) -> Option<String> {
    let object = payload.as_object()?;
    for (key, value) in object {
        let value = value.as_str()?;
        if key.eq_ignore_ascii_case("authorization") {
            return bearer_token(value).map(str::to_string);
        }
        if key == "token" {
            return Some(value.trim_start_matches("Bearer ").to_string());
        }
    }
    None
}

/// Close reasons are limited to 123 bytes by RFC 6455.
fn truncate(mut reason: String) -> String {
    if reason.len() > 120 {
        let mut end = 120;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
    }
    reason
}
