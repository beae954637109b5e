//! A raw GraphQL-over-WebSocket client (graphql-transport-ws), so tests can speak (and break)
//! the protocol and benchmarks can follow a timeline without a client library in between.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A raw GraphQL-over-WebSocket client, so tests can speak (and break) the protocol.
pub struct Ws {
    pub stream: WsStream,
}

pub enum WsEvent {
    Message(Value),
    Closed(Option<u16>, String),
}

/// How long the next message may take before a test fails.
pub const WAIT: Duration = Duration::from_secs(20);

impl Ws {
    /// The upgrade request for `/graphql` with a subprotocol, for tests that send it themselves.
    pub fn request(
        addr: SocketAddr,
        protocol: &str,
    ) -> tokio_tungstenite::tungstenite::handshake::client::Request {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = format!("ws://{addr}/graphql")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", protocol.parse().unwrap());
        request
    }

    pub async fn connect(addr: SocketAddr, protocol: &str) -> Ws {
        let request = Ws::request(addr, protocol);
        let (stream, response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("ws connects");
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some(protocol)
        );
        Ws { stream }
    }

    /// Connects with graphql-transport-ws and completes `connection_init` with `token`.
    pub async fn ready(addr: SocketAddr, token: &str) -> Ws {
        let mut ws = Ws::connect(addr, "graphql-transport-ws").await;
        ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
            .await;
        assert_eq!(ws.next_message().await["type"], "connection_ack");
        ws
    }

    pub async fn send(&mut self, message: Value) {
        self.send_text(message.to_string()).await
    }

    pub async fn send_text(&mut self, text: String) {
        use futures_util::SinkExt;
        self.stream
            .send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .expect("ws send");
    }

    /// The next message or close, within `WAIT`.
    pub async fn next(&mut self) -> WsEvent {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        loop {
            let item = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a WebSocket message within the timeout");
            match item {
                Some(Ok(Message::Text(t))) => {
                    return WsEvent::Message(serde_json::from_str(&t).unwrap());
                }
                Some(Ok(Message::Close(frame))) => {
                    return WsEvent::Closed(
                        frame.as_ref().map(|f| u16::from(f.code)),
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    );
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return WsEvent::Closed(None, String::new()),
            }
        }
    }

    pub async fn next_message(&mut self) -> Value {
        match self.next().await {
            WsEvent::Message(m) => m,
            WsEvent::Closed(code, reason) => {
                panic!("closed ({code:?} {reason}) while expecting a message")
            }
        }
    }

    /// Waits for the server to close; returns the close code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                WsEvent::Closed(code, _) => return code,
                WsEvent::Message(_) => continue,
            }
        }
    }

    /// Reads `next` messages of the `incidentEvents` operation `id` until `count` events
    /// arrived; their sequences.
    pub async fn sequences(&mut self, id: &str, count: usize) -> Vec<i64> {
        let mut seen = Vec::with_capacity(count);
        while seen.len() < count {
            let message = self.next_message().await;
            assert_eq!(message["type"], "next", "{message}");
            assert_eq!(message["id"], id);
            assert!(message["payload"].get("errors").is_none(), "{message}");
            seen.push(
                message["payload"]["data"]["incidentEvents"]["sequence"]
                    .as_i64()
                    .unwrap(),
            );
        }
        seen
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }
}

/// An incident's timeline, after `$after` when given.
pub const EVENTS_SUBSCRIPTION: &str = "subscription($id: UUID!, $after: Int) { incidentEvents(incidentId: $id, afterSequence: $after) { sequence eventType content incidentId } }";
