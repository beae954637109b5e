//! Bounded responses: a byte budget per GraphQL response enforced while it is built, REST's
//! timeline in pages, and subscription replays read in batches bounded by bytes.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{
    self, EVENTS_SUBSCRIPTION, TestDb, Ws, code, replica_caller, spawn_app, spawn_app_with,
    test_config,
};
use crate::replicas::Replica;
use incidentd::incident::identity::Role;

const BIG: usize = 64 * 1024;

fn big_note(i: usize) -> String {
    let mut note = format!("{i:04} ");
    note.push_str(&"x".repeat(BIG - note.len()));
    note
}

#[tokio::test]
async fn a_response_over_its_byte_budget_is_refused_whole() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.max_response_bytes = 256 * 1024;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "large").await;
    for i in 0..10 {
        app.add_event(&alice, &id.to_string(), &big_note(i)).await;
    }
    let page = |first: u32| {
        format!(
            "query($id: UUID!) {{ incident(id: $id) {{ events(first: {first}) {{ nodes {{ sequence content }} }} }} }}"
        )
    };
    // Two 64 KiB events fit in 256 KiB.
    let data = app.ok(&alice, &page(2), json!({ "id": id })).await;
    assert_eq!(
        data["incident"]["events"]["nodes"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Ten do not: one error, no partial data.
    let (status, body) = app
        .post(Some(&alice.token), &page(10), json!({ "id": id }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(code(&body["errors"][0]), "RESPONSE_TOO_LARGE", "{body}");
    assert_eq!(body["errors"].as_array().unwrap().len(), 1);
    assert!(body["data"].is_null(), "nothing partial is sent");

    // Nor does one small page repeated under many aliases.
    let aliased: String = (0..30)
        .map(|i| {
            format!("a{i}: incident(id: $id) {{ events(first: 2) {{ nodes {{ content }} }} }} ")
        })
        .collect();
    let (_, body) = app
        .post(
            Some(&alice.token),
            &format!("query($id: UUID!) {{ {aliased} }}"),
            json!({ "id": id }),
        )
        .await;
    assert_eq!(code(&body["errors"][0]), "RESPONSE_TOO_LARGE", "{body}");
}

#[tokio::test]
async fn rest_pages_the_timeline() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "paged").await;
    for i in 0..5 {
        app.add_event(&alice, &id.to_string(), &format!("note {i}"))
            .await;
    }
    let get = |query: String| {
        let url = app.url(&format!("/api/v1/incidents/{id}{query}"));
        let request = app.client.get(url).bearer_auth(&alice.token);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let mut seen = vec![];
    let mut after: Option<i64> = None;
    for _ in 0..10 {
        let query = match after {
            Some(a) => format!("?events_limit=2&events_after={a}"),
            None => "?events_limit=2".into(),
        };
        let (status, body) = get(query).await;
        assert_eq!(status, 200, "{body}");
        for event in body["events"].as_array().unwrap() {
            seen.push(event["sequence"].as_i64().unwrap());
        }
        match body["events_next_after"].as_i64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    let (status, body) = get(String::new()).await;
    assert_eq!((status, body["events"].as_array().unwrap().len()), (200, 5));
    assert!(body["events_next_after"].is_null());
    let (status, body) = get("?events_limit=0".into()).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["field"], "events_limit", "{body}");
}

/// A subscriber resuming far behind gets every large event, in order, though the replay reads
/// them in batches cut by bytes.
#[tokio::test]
async fn a_replay_of_large_events_is_complete_and_in_order() {
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "replayed").await;
    for i in 0..40 {
        app.add_event(&alice, &id.to_string(), &big_note(i)).await;
    }
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe("r", EVENTS_SUBSCRIPTION, json!({ "id": id, "after": 3 }))
        .await;
    for expected in 4..=40 {
        let message = ws.next_message().await;
        let event = &message["payload"]["data"]["incidentEvents"];
        assert_eq!(event["sequence"], expected, "{}", message.to_string().len());
        assert_eq!(event["content"].as_str().unwrap().len(), BIG);
    }
}

/// 20 clients at once ask for the largest pages (every incident's events, with their contents;
/// and one page under 30 aliases). The server, a process of its own with the default budget,
/// answers each with data or RESPONSE_TOO_LARGE, never drops a connection, and its peak
/// resident memory stays under 512 MB.
#[tokio::test]
async fn twenty_copies_of_the_largest_queries_stay_within_memory() {
    let (db, url) = TestDb::create().await;
    let server = Replica::start(&url, &[]).await;
    let alice = replica_caller(&url, Role::Responder);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let gql = |query: String, variables: Value| {
        let (client, token, addr) = (client.clone(), alice.token.clone(), server.addr);
        async move {
            let reply = helpers::gql(&client, addr, &token, &query, variables).await;
            reply.expect("the connection holds and the reply is JSON")
        }
    };
    // 10 incidents × 30 events × 64 KiB ≈ 19 MiB of text, more than one response may carry.
    let mut incidents = vec![];
    for _ in 0..10 {
        let (_, body) = gql(
            "mutation { createIncident(input: { title: \"large\" }) { id } }".into(),
            json!({}),
        )
        .await;
        incidents.push(
            body["data"]["createIncident"]["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for batch in 0..30 {
        join_all(incidents.iter().map(|id| {
            gql(
                "mutation($id: UUID!, $c: String!) { addIncidentEvent(incidentId: $id, input: { content: $c }) { sequence } }".into(),
                json!({ "id": id, "c": big_note(batch) }),
            )
        }))
        .await;
    }
    let everything =
        "{ incidents(first: 100) { nodes { events(first: 100) { nodes { content } } } } }"
            .to_string();
    let aliased: String = (0..30)
        .map(|i| {
            format!("a{i}: incident(id: $id) {{ events(first: 100) {{ nodes {{ content }} }} }} ")
        })
        .collect();
    let aliased = format!("query($id: UUID!) {{ {aliased} }}");
    let replies = join_all((0..20).map(|i| {
        if i % 2 == 0 {
            gql(everything.clone(), json!({}))
        } else {
            gql(aliased.clone(), json!({ "id": incidents[0] }))
        }
    }))
    .await;
    // 20 answers of up to 16 MiB each are more than the server's bytes in flight (256 MiB):
    // depending on how the requests overlap, some are refused with BUSY, as that budget says.
    for (status, body) in &replies {
        assert_eq!(*status, 200);
        let refused = body["errors"]
            .as_array()
            .is_some_and(|e| e.len() == 1 && matches!(code(&e[0]), "RESPONSE_TOO_LARGE" | "BUSY"));
        assert!(
            refused || body["errors"].is_null(),
            "data or a clear error: {}",
            &body.to_string()[..200.min(body.to_string().len())]
        );
    }
    let peak = server.peak_rss_kib();
    println!("peak RSS under 20 copies of the largest queries: {peak} KiB");
    assert!(peak < 512 * 1024, "{peak} KiB");
    drop(db);
}

/// Six clients at once ask for one incident's 100 events of 60 KiB under 30 aliases (about
/// 180 MiB of text each, refused at the 16 MiB budget). What a refused request costs follows
/// its budget: the server's peak resident memory grows by at most about twice the budget per
/// request in flight, and no answer is anything but RESPONSE_TOO_LARGE or BUSY.
///
/// It measures the server's memory, which the rest of the suite running beside it distorts
/// (149 to 190 MiB alone, 229 MiB once under the whole suite on a busy 2-core machine), so it
/// is ignored in the parallel suite and `.ci/run` runs it on its own, on both databases.
#[tokio::test]
#[ignore]
async fn six_copies_of_an_oversized_query_cost_about_twice_their_budget() {
    const BUDGET: u64 = 16 * 1024 * 1024;
    let (db, url) = TestDb::create().await;
    let server = Replica::start(&url, &[]).await;
    let alice = replica_caller(&url, Role::Responder);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let gql = |query: String, variables: Value| {
        let (client, token, addr) = (client.clone(), alice.token.clone(), server.addr);
        async move {
            let reply = helpers::gql(&client, addr, &token, &query, variables).await;
            reply.expect("the connection holds and the reply is JSON")
        }
    };
    let (_, body) = gql(
        "mutation { createIncident(input: { title: \"wide\" }) { id } }".into(),
        json!({}),
    )
    .await;
    let id = body["data"]["createIncident"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let note = |i: usize| format!("{i:04} {}", "y".repeat(60 * 1024));
    for i in 0..100 {
        let (_, body) = gql(
            "mutation($id: UUID!, $c: String!) { addIncidentEvent(incidentId: $id, input: { content: $c }) { sequence } }".into(),
            json!({ "id": id, "c": note(i) }),
        )
        .await;
        assert!(body["errors"].is_null(), "{body}");
    }
    let aliased: String = (0..30)
        .map(|i| {
            format!("a{i}: incident(id: $id) {{ events(first: 100) {{ nodes {{ content }} }} }} ")
        })
        .collect();
    let aliased = format!("query($id: UUID!) {{ {aliased} }}");
    let before = server.rss_kib() * 1024;
    let replies = join_all((0..6).map(|_| gql(aliased.clone(), json!({ "id": id })))).await;
    for (status, body) in &replies {
        let codes: Vec<&str> = body["errors"]
            .as_array()
            .map(|e| e.iter().map(code).collect())
            .unwrap_or_default();
        assert!(
            codes == ["RESPONSE_TOO_LARGE"] || codes == ["BUSY"],
            "{status}: {codes:?}"
        );
    }
    let grown = (server.peak_rss_kib() * 1024).saturating_sub(before);
    println!(
        "six oversized requests: peak RSS grew by {} MiB ({} MiB before)",
        grown >> 20,
        before >> 20
    );
    assert!(
        grown <= 6 * 2 * BUDGET + 32 * 1024 * 1024,
        "grew by {} MiB",
        grown >> 20
    );
    drop(db);
}

/// The server's budget of bytes in flight is shared by every response: one that would take
/// more than what is left answers BUSY (retry), and what a response held is given back when
/// it is done.
#[tokio::test]
async fn a_response_beyond_the_servers_bytes_in_flight_answers_busy_and_gives_them_back() {
    let (db, url) = TestDb::create().await;
    let mut config = test_config(&url);
    config.max_response_bytes = 1024 * 1024;
    config.max_inflight_response_bytes = 256 * 1024;
    let app = spawn_app_with(db, config).await;
    let alice = app.responder();
    let id = app.new_incident(&alice, "heavy").await.to_string();
    for i in 0..6 {
        app.add_event(&alice, &id, &format!("{i} {}", "z".repeat(60 * 1024)))
            .await;
    }
    let heavy = "query($id: UUID!) { incident(id: $id) { events { nodes { content } } } }";
    // Two events loaded (about 120 KiB): it fits only once the heavy one gave its share back.
    let light =
        "query($id: UUID!) { incident(id: $id) { title events(first: 2) { nodes { sequence } } } }";
    for _ in 0..3 {
        // About 360 KiB of text: within the response's budget, beyond the server's.
        let (_, body) = app
            .post(Some(&alice.token), heavy, json!({ "id": id }))
            .await;
        assert_eq!(code(&body["errors"][0]), "BUSY", "{body}");
        assert!(body["data"].is_null(), "nothing partial: {body}");
        let data = app.ok(&alice, light, json!({ "id": id })).await;
        assert_eq!(data["incident"]["title"], "heavy");
    }
}
