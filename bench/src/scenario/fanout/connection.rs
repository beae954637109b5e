//! One subscriber connection of `fanout`: a WebSocket (graphql-transport-ws) carrying several
//! subscriptions, which behaves as a careful client does. A lost socket is reopened; a
//! subscription the server ends (`complete` after `SUBSCRIBER_LAGGED` or a database error, an
//! `error` when it could not start) is started again: `incidentEvents` from the last sequence it
//! received, so nothing is lost, `incidentChanged` afresh (it cannot replay; see `Seen::resynced`).
//! One connection may be told to stop reading its socket for a while: the stalled client.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

use super::{CHANGES_SUBSCRIPTION, EVENTS_SUBSCRIPTION};

#[derive(Debug, Clone)]
pub(super) enum Target {
    Events { incident: Uuid, cursor: i32 },
    Changed,
}

#[derive(Debug, Clone)]
pub(super) struct Sub {
    pub org: usize,
    pub target: Target,
    /// `incidentChanged`: an incident of the organization nobody else writes to. Its change
    /// proves the subscription is registered with the server's feed (see `Shared::armed`).
    pub canary: Option<Uuid>,
}

/// One `incidentEvents` delivery.
#[derive(Debug, Clone, Copy)]
pub(super) struct Delivery {
    pub sequence: i32,
    /// Receipt − the event's `createdAt`, in µs.
    pub latency_us: Option<u64>,
    pub received: DateTime<Utc>,
}

/// What one subscription saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub sequences: Vec<Delivery>,
    /// `incidentChanged`: receipt times of `EVENT_ADDED` changes, per incident.
    pub changes: HashMap<Uuid, Vec<DateTime<Utc>>>,
    pub errors: BTreeMap<String, u64>,
    /// `incidentChanged`: its canary change arrived (the subscription is live).
    pub armed: bool,
    /// `incidentEvents`: an event written after it started arrived (the one each hot
    /// incident gets before the writers start).
    pub reached: bool,
    /// When its first `subscribe` was sent.
    pub subscribed_at: Option<Instant>,
    /// When it was first live: `incidentEvents`, its replay arrived (see `subscribe`);
    /// `incidentChanged`, its first canary change.
    pub live_at: Option<Instant>,
    /// `incidentChanged`: its stream ended after the writers started (lag, a database error,
    /// a lost socket) and was started again. The feed cannot replay, so what it missed in
    /// between is not knowable from the changes alone: such a subscriber is held only to "never
    /// more changes than events written" (duplicates), not to missed ones.
    pub resynced: bool,
    /// Times the subscription was started again (not counting reconnects).
    pub resubscribes: u32,
}

/// Shared with every connection task.
#[derive(Clone)]
pub(super) struct Shared {
    /// Connections open and acknowledged (counted once, at the first success).
    pub opened: Arc<AtomicUsize>,
    /// Connections subscribed (counted once, at the first success).
    pub ready: Arc<AtomicUsize>,
    /// Set once every connection is open: the first subscriptions are sent together, so the
    /// server starts them at once.
    pub go: watch::Receiver<bool>,
    /// `incidentChanged` subscriptions whose canary arrived.
    pub armed: Arc<AtomicUsize>,
    /// `incidentEvents` subscriptions whose replay arrived (live).
    pub replayed: Arc<AtomicUsize>,
    /// `incidentEvents` subscriptions that received an event written after they started.
    pub reached: Arc<AtomicUsize>,
    /// Deliveries received so far, over all connections.
    pub delivered: Arc<AtomicU64>,
    /// Bounds the connections being opened at once.
    pub gate: Arc<tokio::sync::Semaphore>,
    /// When the writers started (None before).
    pub started: watch::Receiver<Option<Instant>>,
}

#[derive(Debug, Clone)]
pub struct Stall {
    /// When the connection stops reading, after the writers start.
    pub at: Duration,
    /// How long it reads nothing.
    pub length: Duration,
    /// Its socket's receive buffer (SO_RCVBUF) until the stall is over; 0: the system's
    /// default (autotuned, up to megabytes on Linux, which the server must fill before its
    /// writes block).
    pub recv_buffer: usize,
}

/// What happened to the stalled connection.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StallOutcome {
    /// Seconds after the writers started.
    pub started_at_seconds: Option<f64>,
    pub ended_at_seconds: Option<f64>,
    /// Why its socket ended after the stall began (e.g. `closed by server (4504)`, `socket
    /// ended`), or None when the server never cut it off.
    pub cut_off: Option<String>,
    /// Seconds after the writers started when it noticed the cut (it noticed only once it read
    /// again, after the stall).
    pub cut_off_noticed_at_seconds: Option<f64>,
    /// Messages it read after the stall before the end of its socket: what the server and the
    /// kernel's buffers held for it.
    pub drained_messages: u64,
    /// Seconds after the writers started when its new socket was subscribed again.
    pub resumed_at_seconds: Option<f64>,
}

pub(super) struct ConnResult {
    pub subs: Vec<(Sub, Seen)>,
    pub reconnects: u64,
    pub stall: Option<StallOutcome>,
}

pub(super) struct ConnOptions {
    pub url: String,
    pub token: String,
    pub max_reconnects: u32,
    pub max_resubscribes: u32,
    pub stall: Option<Stall>,
}

/// Per-subscription state of the connection.
struct State {
    subs: Vec<Sub>,
    seen: Vec<Seen>,
    /// `incidentEvents`: the last sequence received (the resume point).
    cursors: Vec<Option<i32>>,
    /// The id suffix of the subscription's current operation: `"{index}.{generation}"`, so a
    /// late message of an ended operation is never taken for its successor's.
    generation: Vec<u32>,
    /// When an ended subscription is to be started again.
    due: Vec<Option<Instant>>,
    /// Consecutive failed starts (back-off).
    failures: Vec<u32>,
    stall: Option<Stall>,
    stalled: bool,
    outcome: Option<StallOutcome>,
}

enum Ended {
    Stopped,
    Lost(String),
}

pub(super) async fn connection(
    opts: ConnOptions,
    subs: Vec<Sub>,
    mut stop: watch::Receiver<bool>,
    shared: Shared,
) -> ConnResult {
    let n = subs.len();
    let mut state = State {
        seen: subs.iter().map(|_| Seen::default()).collect(),
        cursors: subs
            .iter()
            .map(|s| match s.target {
                Target::Events { cursor, .. } => Some(cursor),
                Target::Changed => None,
            })
            .collect(),
        generation: vec![0; n],
        due: vec![None; n],
        failures: vec![0; n],
        outcome: opts.stall.as_ref().map(|_| StallOutcome::default()),
        stall: opts.stall.clone(),
        stalled: false,
        subs,
    };
    let mut reconnects = 0u64;
    let mut counted_opened = false;
    let mut counted_ready = false;
    let mut attempt = 0u32;
    loop {
        let recv_buffer = match &state.stall {
            Some(s) if !state.stalled => s.recv_buffer,
            _ => 0,
        };
        let opened = {
            let _permit = shared.gate.acquire().await;
            open(&opts.url, &opts.token, recv_buffer).await
        };
        let mut ws = match opened {
            Ok(ws) => ws,
            Err(e) => {
                *state.seen[0]
                    .errors
                    .entry(format!("connect: {e:#}"))
                    .or_default() += 1;
                attempt += 1;
                if attempt > opts.max_reconnects || *stop.borrow() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                continue;
            }
        };
        if !counted_opened {
            counted_opened = true;
            shared.opened.fetch_add(1, Ordering::Relaxed);
            let mut go = shared.go.clone();
            tokio::select! {
                _ = stop.changed() => break,
                _ = go.wait_for(|go| *go) => {}
            }
        }
        // Every subscription starts again on a new socket (from its cursor).
        let mut subscribed = true;
        for i in 0..n {
            state.due[i] = None;
            if subscribe(&mut ws, &mut state, i).await.is_err() {
                subscribed = false;
                break;
            }
        }
        if subscribed {
            if !counted_ready {
                counted_ready = true;
                shared.ready.fetch_add(1, Ordering::Relaxed);
            }
            if state.stalled
                && let Some(o) = state.outcome.as_mut()
                && o.resumed_at_seconds.is_none()
            {
                o.resumed_at_seconds = since_start(&shared);
            }
            match read(
                &mut ws,
                &mut state,
                &mut stop,
                &shared,
                opts.max_resubscribes,
            )
            .await
            {
                Ended::Stopped => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(None)).await;
                    break;
                }
                Ended::Lost(why) => {
                    *state.seen[0].errors.entry(why.clone()).or_default() += 1;
                    if state.stalled
                        && let Some(o) = state.outcome.as_mut()
                        && o.cut_off.is_none()
                    {
                        o.cut_off = Some(why);
                        o.cut_off_noticed_at_seconds = since_start(&shared);
                    }
                }
            }
        } else {
            *state.seen[0]
                .errors
                .entry("socket lost while subscribing".into())
                .or_default() += 1;
        }
        // Whatever `incidentChanged` was running ended with the socket.
        for i in 0..n {
            ended(&mut state, i, &shared);
        }
        attempt += 1;
        reconnects += 1;
        if attempt > opts.max_reconnects || *stop.borrow() {
            break;
        }
    }
    ConnResult {
        subs: state.subs.into_iter().zip(state.seen).collect(),
        reconnects,
        stall: state.outcome,
    }
}

fn since_start(shared: &Shared) -> Option<f64> {
    shared.started.borrow().map(|s| s.elapsed().as_secs_f64())
}

/// A subscription's stream ended: an `incidentChanged` one is marked as resynced once the
/// writers run (before, it only has to be armed again).
fn ended(state: &mut State, i: usize, shared: &Shared) {
    if !matches!(state.subs[i].target, Target::Changed) {
        return;
    }
    if shared.started.borrow().is_some() {
        state.seen[i].resynced = true;
    } else if state.seen[i].armed {
        state.seen[i].armed = false;
        shared.armed.fetch_sub(1, Ordering::Relaxed);
    }
}

type Ws = tokio_tungstenite::WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(url: &str, token: &str, recv_buffer: usize) -> anyhow::Result<Ws> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws"
            .parse()
            .expect("a valid header value"),
    );
    let uri = request.uri().clone();
    let host = uri.host().context("the WebSocket URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .context("the WebSocket host resolves to nothing")?;
    // Small buffers: ten thousand of these share the machine with the server.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0);
    let ws = tokio::time::timeout(Duration::from_secs(30), async {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if recv_buffer > 0 {
            socket.set_recv_buffer_size(recv_buffer as u32)?;
        }
        let stream = socket.connect(addr).await?;
        stream.set_nodelay(true)?;
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            request,
            MaybeTlsStream::Plain(stream),
            Some(config),
        )
        .await?;
        anyhow::Ok(ws)
    })
    .await
    .context("connect timed out")??;
    let mut ws = ws;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await?;
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(msg) = ws.next().await {
            if let Message::Text(t) = msg? {
                let v: Value = serde_json::from_str(&t)?;
                match v["type"].as_str() {
                    Some("connection_ack") => return Ok(()),
                    Some("ping") => {}
                    other => anyhow::bail!("expected connection_ack, got {other:?}"),
                }
            }
        }
        anyhow::bail!("closed before connection_ack")
    })
    .await
    .context("no connection_ack in time")??;
    Ok(ws)
}

/// Starts subscription `i` (again): `incidentEvents` after its cursor. Until it is live, an
/// `incidentEvents` subscription starts one event before its planned cursor, so the server
/// replays exactly that event: the server sends it only once the subscription passed its
/// tenancy check and its catch-up read, and it registers for new events before that read, so
/// the replay's arrival is the moment it is live (see `replay_marker`).
async fn subscribe(ws: &mut Ws, state: &mut State, i: usize) -> anyhow::Result<()> {
    state.generation[i] += 1;
    let payload = match state.subs[i].target {
        Target::Events { incident, cursor } => {
            let after = match state.cursors[i] {
                Some(c) if c == cursor && c > 0 && state.seen[i].live_at.is_none() => c - 1,
                other => other.unwrap_or(cursor),
            };
            json!({
                "query": EVENTS_SUBSCRIPTION,
                "variables": { "id": incident, "after": after },
            })
        }
        Target::Changed => json!({ "query": CHANGES_SUBSCRIPTION }),
    };
    let id = format!("{i}.{}", state.generation[i]);
    let msg = json!({ "id": id, "type": "subscribe", "payload": payload });
    ws.send(Message::text(msg.to_string())).await?;
    state.seen[i].subscribed_at.get_or_insert_with(Instant::now);
    Ok(())
}

/// Whether a delivery of `sequence` to a subscription planned from `cursor` is the replay that
/// marks it live: the planned cursor itself, while the subscription is not yet live. Any other
/// delivery at or before the cursor is counted as a duplicate.
fn replay_marker(cursor: i32, sequence: i32, live: bool) -> bool {
    !live && cursor > 0 && sequence == cursor
}

/// Reads deliveries until `stop` or the socket's end; starts ended subscriptions again when
/// they are due; stalls once when told to.
async fn read(
    ws: &mut Ws,
    state: &mut State,
    stop: &mut watch::Receiver<bool>,
    shared: &Shared,
    max_resubscribes: u32,
) -> Ended {
    let mut started = shared.started.clone();
    let mut start_known = true;
    loop {
        if *stop.borrow() {
            return Ended::Stopped;
        }
        let stall_at = match (&state.stall, state.stalled) {
            (Some(s), false) => started.borrow().map(|t| (t + s.at, s.length)),
            _ => None,
        };
        let waiting_for_start =
            state.stall.is_some() && !state.stalled && stall_at.is_none() && start_known;
        let next_due = state.due.iter().flatten().min().copied();
        let msg = tokio::select! {
            _ = stop.changed() => return Ended::Stopped,
            changed = started.changed(), if waiting_for_start => {
                start_known = changed.is_ok();
                continue;
            }
            _ = tokio::time::sleep_until(stall_at.map_or_else(tokio::time::Instant::now, |(at, _)| at.into())), if stall_at.is_some() => {
                // The stalled client: reads nothing (no pongs either) for the stall's length.
                let length = stall_at.map(|(_, l)| l).unwrap_or_default();
                state.stalled = true;
                if let Some(o) = state.outcome.as_mut() {
                    o.started_at_seconds = since_start(shared);
                }
                tokio::select! {
                    _ = stop.changed() => return Ended::Stopped,
                    _ = tokio::time::sleep(length) => {}
                }
                if let Some(o) = state.outcome.as_mut() {
                    o.ended_at_seconds = since_start(shared);
                }
                continue;
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now).into()), if next_due.is_some() => {
                let now = Instant::now();
                for i in 0..state.subs.len() {
                    if state.due[i].is_some_and(|d| d <= now) {
                        state.due[i] = None;
                        state.seen[i].resubscribes += 1;
                        if let Err(e) = subscribe(ws, state, i).await {
                            return Ended::Lost(format!("socket: {e}"));
                        }
                    }
                }
                continue;
            }
            msg = ws.next() => msg,
        };
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Ping(p))) => {
                let _ = ws.send(Message::Pong(p)).await;
                continue;
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code)).unwrap_or(0);
                return Ended::Lost(format!("closed by server ({code})"));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Ended::Lost(format!("socket: {e}")),
            None => return Ended::Lost("socket ended".into()),
        };
        if state.stalled
            && let Some(o) = state.outcome.as_mut()
            && o.cut_off.is_none()
        {
            o.drained_messages += 1;
        }
        let received = Utc::now();
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            *state.seen[0]
                .errors
                .entry("unparsable message".into())
                .or_default() += 1;
            continue;
        };
        let kind = v["type"].as_str().unwrap_or("");
        if kind == "ping" {
            let _ = ws.send(Message::text(r#"{"type":"pong"}"#)).await;
            continue;
        }
        if kind == "pong" {
            continue;
        }
        // `"{index}.{generation}"`: messages of an operation that has since ended are stale.
        let Some(i) = v["id"].as_str().and_then(|s| {
            let (i, g) = s.split_once('.')?;
            let (i, g) = (i.parse::<usize>().ok()?, g.parse::<u32>().ok()?);
            (i < state.subs.len() && state.generation[i] == g).then_some(i)
        }) else {
            continue;
        };
        match kind {
            "next" => {
                if let Some(errors) = v["payload"]["errors"].as_array()
                    && !errors.is_empty()
                {
                    // The stream ends after an error (`complete` follows): it is started
                    // again then, after a back-off, so a database outage does not become a
                    // storm of subscriptions failing and starting again.
                    let code = errors[0]["extensions"]["code"]
                        .as_str()
                        .unwrap_or("no code");
                    if code != "SUBSCRIBER_LAGGED" {
                        state.failures[i] += 1;
                    }
                    *state.seen[i]
                        .errors
                        .entry(format!("GraphQL {code}"))
                        .or_default() += 1;
                    continue;
                }
                state.failures[i] = 0;
                on_data(state, i, &v["payload"]["data"], received, shared);
            }
            "error" => {
                // The operation could not start (e.g. DATABASE_UNAVAILABLE): try again later.
                let code = v["payload"][0]["extensions"]["code"]
                    .as_str()
                    .unwrap_or("no code");
                *state.seen[i]
                    .errors
                    .entry(format!("subscription error {code}"))
                    .or_default() += 1;
                ended(state, i, shared);
                state.failures[i] += 1;
                if state.seen[i].resubscribes < max_resubscribes {
                    state.due[i] = Some(Instant::now() + backoff(state.failures[i]));
                }
            }
            "complete" => {
                *state.seen[i]
                    .errors
                    .entry("completed by server".into())
                    .or_default() += 1;
                ended(state, i, shared);
                if state.seen[i].resubscribes < max_resubscribes {
                    state.due[i] = Some(Instant::now() + backoff(state.failures[i]));
                }
            }
            _ => {}
        }
    }
}

/// None after a clean end (`SUBSCRIBER_LAGGED` is not a failure), then 100 ms doubling to 3.2 s
/// after consecutive failures, with jitter so thousands of subscribers do not retry in step.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let base = 100u64 << failures.min(6).saturating_sub(1);
    Duration::from_millis(base + rand::random_range(0..=base))
}

fn on_data(state: &mut State, i: usize, data: &Value, received: DateTime<Utc>, shared: &Shared) {
    let seen = &mut state.seen[i];
    match state.subs[i].target {
        Target::Events { cursor, .. } => {
            let e = &data["incidentEvents"];
            let Some(seq) = e["sequence"].as_i64() else {
                *seen
                    .errors
                    .entry("event without sequence".into())
                    .or_default() += 1;
                return;
            };
            if replay_marker(cursor, seq as i32, seen.live_at.is_some()) {
                seen.live_at = Some(Instant::now());
                shared.replayed.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let latency_us = e["createdAt"]
                .as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .and_then(|at| (received - at.with_timezone(&Utc)).to_std().ok())
                .map(|d| d.as_micros() as u64);
            seen.sequences.push(Delivery {
                sequence: seq as i32,
                latency_us,
                received,
            });
            shared.delivered.fetch_add(1, Ordering::Relaxed);
            if !seen.reached {
                seen.reached = true;
                shared.reached.fetch_add(1, Ordering::Relaxed);
            }
            state.cursors[i] = Some(state.cursors[i].unwrap_or(0).max(seq as i32));
        }
        Target::Changed => {
            let c = &data["incidentChanged"];
            if c["kind"] != "EVENT_ADDED" {
                return;
            }
            let Some(id) = c["incident"]["id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                return;
            };
            if Some(id) == state.subs[i].canary {
                if !seen.armed {
                    seen.armed = true;
                    seen.live_at.get_or_insert_with(Instant::now);
                    shared.armed.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
            seen.changes.entry(id).or_default().push(received);
            shared.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }
}
