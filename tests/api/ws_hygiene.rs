//! WebSocket hygiene: the server pings and drops a half-open client that never answers, and a
//! message too large to send ends only its own operation.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestDb, Ws, WsEvent, code, spawn_app_with, test_config};

#[tokio::test]
async fn a_client_that_never_pongs_is_dropped_and_one_that_does_stays() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.ws_ping_interval = Duration::from_millis(300);
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let mut lively = Ws::ready(app.addr, &alice.token).await;
    let mut silent = Ws::ready(app.addr, &alice.token).await;

    // The lively client answers three pings in a row and is still there.
    for _ in 0..3 {
        let ping = lively.next_message().await;
        assert_eq!(ping["type"], "ping", "{ping}");
        lively.send(json!({ "type": "pong" })).await;
    }
    // The silent one gets a ping, answers nothing, and is closed at the next ping.
    assert_eq!(silent.next_message().await["type"], "ping");
    match silent.next().await {
        WsEvent::Closed(code, _) => assert_eq!(code, Some(4504)),
        WsEvent::Message(m) => panic!("expected the close, got {m}"),
    }
    lively.send(json!({ "type": "ping" })).await;
    loop {
        let message = lively.next_message().await;
        match message["type"].as_str() {
            Some("pong") => break,
            Some("ping") => lively.send(json!({ "type": "pong" })).await,
            _ => panic!("unexpected {message}"),
        }
    }
}

#[tokio::test]
async fn a_message_too_large_to_send_ends_its_operation_not_the_socket() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.ws_max_outgoing_bytes = 256 * 1024;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "wide").await.to_string();
    for i in 0..6 {
        app.add_event(&alice, &id, &format!("{i}{}", "x".repeat(64 * 1024 - 1)))
            .await;
    }
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "big",
        "subscription { incidentChanged { incident { events(first: 10) { nodes { content } } } } }",
        json!({}),
    )
    .await;
    ws.subscribe(
        "small",
        "subscription { incidentChanged { kind } }",
        json!({}),
    )
    .await;
    // Pings sent after the subscriptions come back once the server has read them.
    for _ in 0..2 {
        ws.send(json!({ "type": "ping" })).await;
        assert_eq!(ws.next_message().await["type"], "pong");
    }
    app.add_event(&alice, &id, "one more").await;
    let (mut big_error, mut small_next) = (None, 0);
    for _ in 0..2 {
        let message = ws.next_message().await;
        match (message["id"].as_str(), message["type"].as_str()) {
            (Some("big"), Some("error")) => big_error = Some(message),
            (Some("small"), Some("next")) => small_next += 1,
            _ => panic!(
                "unexpected {}",
                &message.to_string()[..300.min(message.to_string().len())]
            ),
        }
    }
    let big_error = big_error.expect("the large message became an error");
    assert_eq!(
        code(&big_error["payload"][0]),
        "RESPONSE_TOO_LARGE",
        "{big_error}"
    );
    assert_eq!(small_next, 1);
    // The socket is up and the other operation goes on; the large one has ended.
    app.add_event(&alice, &id, "and another").await;
    let message = ws.next_message().await;
    assert_eq!(
        (message["id"].as_str(), message["type"].as_str()),
        (Some("small"), Some("next")),
        "{message}"
    );
}

/// Opens a WebSocket from the loopback address `from` (127.0.0.x): `Ok` once upgraded, the
/// HTTP status when refused.
async fn connect_from(
    addr: std::net::SocketAddr,
    from: [u8; 4],
) -> Result<crate::helpers::WsStream, u16> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let request = Ws::request(addr, "graphql-transport-ws");
    match tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
    {
        Ok((stream, _)) => Ok(stream),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected WebSocket failure: {e}"),
    }
}

/// Sockets that have not sent a valid `connection_init` have a small budget of their own, per
/// peer address and server-wide: one client cannot hold the server's slots with sockets that
/// never authenticate, and a socket leaves the budget as soon as it initialises.
#[tokio::test]
async fn unauthenticated_sockets_have_a_small_budget_per_peer_and_server_wide() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.ws_max_pending_per_peer = 2;
    config.ws_max_pending = 3;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();

    let a1 = connect_from(app.addr, [127, 0, 0, 1])
        .await
        .expect("first from A");
    let _a2 = connect_from(app.addr, [127, 0, 0, 1])
        .await
        .expect("second from A");
    assert_eq!(
        connect_from(app.addr, [127, 0, 0, 1]).await.err(),
        Some(503),
        "a third pending socket from one address is refused"
    );
    let _b1 = connect_from(app.addr, [127, 0, 0, 2])
        .await
        .expect("another address still gets in");
    assert_eq!(
        connect_from(app.addr, [127, 0, 0, 3]).await.err(),
        Some(503),
        "the server-wide pending budget is spent"
    );

    // A socket that initialises leaves the budget: A may open another.
    let mut a1 = Ws { stream: a1 };
    a1.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", alice.token) } }))
        .await;
    assert_eq!(a1.next_message().await["type"], "connection_ack");
    let _a3 = connect_from(app.addr, [127, 0, 0, 1])
        .await
        .expect("the initialised socket gave its pending place back");
    // And the authenticated one works as any other.
    a1.send(json!({ "type": "ping" })).await;
    assert_eq!(a1.next_message().await["type"], "pong");
}
