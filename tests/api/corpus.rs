//! A corpus of malformed requests: broken and mistyped
//! JSON, huge and NUL-laden strings, invalid UUIDs and enums, deep nesting, giant lists, unknown
//! fields, wrong variables, invalid UTF-8, empty bodies, garbage query strings, over GraphQL,
//! REST and WebSocket. Every one is answered with a 4xx, or a 200 whose errors all carry a code,
//! never a 5xx, and the server keeps answering afterwards.

use serde_json::{Value, json};

use crate::helpers::{TestApp, Ws, WsEvent, code, spawn_app};

/// What an entry must be answered with, beyond "4xx or coded 200, never 5xx".
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A 4xx, or a 200 with coded errors.
    Refused,
    /// Exactly this HTTP status.
    Status(u16),
    /// A refusal whose (first) error has this code.
    Code(&'static str),
}

struct Case {
    name: String,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
    expect: Expect,
}

fn gql(name: &str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.to_string(),
        method: "POST",
        path: "/graphql".into(),
        content_type: Some("application/json"),
        body: Some(body.into()),
        expect,
    }
}

/// A well-formed request body around a (possibly malformed) query and variables.
/// `{ ...F0 }` where each fragment `Fi` spreads `Fi+1` twice, `n` times over.
fn doubling_fragments(n: usize) -> String {
    let mut text = String::from("{ ...F0 }");
    for i in 0..n {
        let next = i + 1;
        text.push_str(&format!(
            " fragment F{i} on Query {{ viewer {{ role }} ...F{next} ...F{next} }}"
        ));
    }
    text.push_str(&format!(" fragment F{n} on Query {{ viewer {{ role }} }}"));
    text
}

fn op(name: &str, query: &str, variables: Value, expect: Expect) -> Case {
    gql(
        name,
        json!({ "query": query, "variables": variables }).to_string(),
        expect,
    )
}

fn get(name: &str, path: &str, expect: Expect) -> Case {
    Case {
        name: name.to_string(),
        method: "GET",
        path: path.to_string(),
        content_type: None,
        body: None,
        expect,
    }
}

fn rest(name: &str, path: &str, body: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.to_string(),
        method: "POST",
        path: path.to_string(),
        content_type: Some("application/json"),
        body: Some(body.into()),
        expect,
    }
}

fn nested_json(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

const CREATE: &str =
    "mutation($input: CreateIncidentInput!) { createIncident(input: $input) { id } }";
const READ: &str = "query($id: UUID!) { incident(id: $id) { id } }";

fn corpus(own: &str) -> Vec<Case> {
    use Expect::*;
    let unknown = uuid::Uuid::new_v4().to_string();
    let viewer = "{ viewer { role } }";
    let mut cases = vec![
        // Broken JSON and wrong JSON types at the top.
        gql("broken JSON", "{", Status(400)),
        gql(
            "truncated JSON",
            r#"{"query": "{ viewer { role } }""#,
            Status(400),
        ),
        gql("not JSON", "query { viewer { role } }", Status(400)),
        gql(
            "trailing garbage",
            r#"{"query": "{ viewer { role } }"} xyz"#,
            Status(400),
        ),
        gql("empty array", "[]", Status(400)),
        gql("null body", "null", Status(400)),
        gql("number body", "42", Status(400)),
        gql("string body", r#""{ viewer { role } }""#, Status(400)),
        gql("empty object", "{}", Status(400)),
        gql("query is a number", r#"{"query": 42}"#, Status(400)),
        gql("query is null", r#"{"query": null}"#, Status(400)),
        gql(
            "query is a list",
            r#"{"query": ["{ viewer { role } }"]}"#,
            Status(400),
        ),
        gql("query is an object", r#"{"query": {"a": 1}}"#, Status(400)),
        gql("query is a boolean", r#"{"query": true}"#, Status(400)),
        gql(
            "variables is a string",
            json!({ "query": viewer, "variables": "{}x" }).to_string(),
            Refused,
        ),
        gql(
            "variables is a number",
            json!({ "query": viewer, "variables": 42 }).to_string(),
            Status(400),
        ),
        gql(
            "variables is a list",
            json!({ "query": viewer, "variables": [1, 2] }).to_string(),
            Status(400),
        ),
        gql(
            "operationName is a number",
            json!({ "query": viewer, "operationName": 42 }).to_string(),
            Status(400),
        ),
        gql(
            "operationName is an object",
            json!({ "query": viewer, "operationName": { "x": 1 } }).to_string(),
            Status(400),
        ),
        gql(
            "operationName names no operation",
            json!({ "query": "query A { viewer { role } }", "operationName": "B" }).to_string(),
            Code("BAD_USER_INPUT"),
        ),
        gql(
            "extensions is a string",
            json!({ "query": viewer, "extensions": "x" }).to_string(),
            Status(400),
        ),
        gql(
            "a lone surrogate escape",
            r#"{"query": "{ viewer { role } }", "variables": {"x": "\ud800"}}"#,
            Refused,
        ),
        // Huge strings.
        op(
            "a 1 MB title in a body over 1 MiB",
            CREATE,
            json!({ "input": { "title": "x".repeat(1024 * 1024 + 16) } }),
            Status(413),
        ),
        op(
            "a 600 KB title",
            CREATE,
            json!({ "input": { "title": "x".repeat(600 * 1024) } }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a 600 KB event content",
            "mutation($id: UUID!, $c: String!) { addIncidentEvent(incidentId: $id, input: { content: $c }) { id } }",
            json!({ "id": own, "c": "y".repeat(600 * 1024) }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a query text over 32 KiB",
            &format!("{viewer} #{}", "x".repeat(40 * 1024)),
            json!({}),
            Code("QUERY_TOO_COMPLEX"),
        ),
        // Invalid UUIDs and enums.
        op(
            "an invalid UUID variable",
            READ,
            json!({ "id": "not-a-uuid" }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a UUID variable that is a number",
            READ,
            json!({ "id": 42 }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a UUID one character short",
            READ,
            json!({ "id": &own[..35] }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an invalid inline UUID",
            "{ incident(id: \"xyz\") { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an inline UUID that is an int",
            "{ incident(id: 12) { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an invalid enum variable",
            CREATE,
            json!({ "input": { "title": "t", "severity": "SEV9" } }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a lower-case enum variable",
            CREATE,
            json!({ "input": { "title": "t", "severity": "sev1" } }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an invalid inline enum",
            &format!("mutation {{ transitionIncident(id: \"{own}\", to: DONE) {{ id }} }}"),
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an enum given as an int literal",
            "mutation { createIncident(input: { title: \"t\", severity: 1 }) { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an invalid enum in a filter list",
            "query($s: [IncidentStatus!]) { incidents(filter: { status: $s }) { totalCount } }",
            json!({ "s": ["OPEN", "DONE"] }),
            Code("BAD_USER_INPUT"),
        ),
        // NUL bytes.
        op(
            "a NUL in a title variable",
            CREATE,
            json!({ "input": { "title": "a\u{0}b" } }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a NUL escape in an inline string",
            "mutation { createIncident(input: { title: \"a\\u0000b\" }) { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a NUL after the query",
            "{ viewer { role } }\u{0}",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a NUL inside a name",
            "{ vie\u{0}wer { role } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a raw NUL inside a string literal",
            "mutation { createIncident(input: { title: \"a\u{0}b\" }) { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a NUL in a search filter",
            "query($s: String) { incidents(filter: { search: $s }) { totalCount } }",
            json!({ "s": "\u{0}" }),
            Refused,
        ),
        // Deep nesting.
        op(
            "a query nested 200 levels",
            &format!("{}{}", "{ a ".repeat(200), "}".repeat(200)),
            json!({}),
            Refused,
        ),
        op(
            "a real field nested 200 levels",
            &format!(
                "{{ incidents {{ nodes {{ {} id {} }} }} }}",
                "events { nodes { incident { ".repeat(50),
                "} } } ".repeat(50)
            ),
            json!({}),
            Code("QUERY_TOO_COMPLEX"),
        ),
        op(
            "a list value nested 200 levels inline",
            &format!(
                "{{ incidents(filter: {{ status: {}OPEN{} }}) {{ totalCount }} }}",
                "[".repeat(200),
                "]".repeat(200)
            ),
            json!({}),
            Refused,
        ),
        gql(
            "variables nested 10,000 levels",
            format!(
                r#"{{"query": "{{ viewer {{ role }} }}", "variables": {{"x": {}}}}}"#,
                nested_json(10_000)
            ),
            Status(400),
        ),
        gql(
            "a body nested 10,000 levels",
            nested_json(10_000),
            Status(400),
        ),
        // Giant lists.
        op(
            "a 100k-element ticket list",
            CREATE,
            json!({ "input": { "title": "t", "linkedTicketIds": vec!["t"; 100_000] } }),
            Code("BAD_USER_INPUT"),
        ),
        // (A 100k-element status filter is no refusal: enum lists collapse to their distinct
        // values; see edges.rs.)
        op(
            "a 100k-element event type list",
            &format!(
                "query($t: [String!]) {{ incident(id: \"{own}\") {{ events(types: $t) {{ totalCount }} }} }}"
            ),
            json!({ "t": vec!["note"; 100_000] }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a 100k-element list for a scalar",
            READ,
            json!({ "id": vec![0; 100_000] }),
            Code("BAD_USER_INPUT"),
        ),
        // Unknown fields.
        op(
            "an unknown field",
            "{ viewer { nope } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an unknown root field",
            "{ nope }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an unknown argument",
            &format!("{{ incident(id: \"{own}\", nope: 1) {{ id }} }}"),
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an unknown inline input field",
            "mutation { createIncident(input: { title: \"t\", nope: 1 }) { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an unknown input field in variables",
            CREATE,
            json!({ "input": { "title": "t", "nope": 1 } }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an unknown type",
            "query($x: Nope) { viewer { role } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an unknown directive",
            "{ viewer @nope { role } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        // Wrong variables.
        op(
            "a missing required variable",
            READ,
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a null required variable",
            CREATE,
            json!({ "input": null }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an extra variable (ignored; the unknown id answers)",
            READ,
            json!({ "id": unknown, "extra": { "deep": [1, 2, 3] } }),
            Code("NOT_FOUND"),
        ),
        op(
            "an undeclared variable",
            "{ incident(id: $id) { id } }",
            json!({ "id": own }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a variable declared with the wrong type",
            "query($id: Int!) { incident(id: $id) { id } }",
            json!({ "id": 1 }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a string where an input object goes",
            CREATE,
            json!({ "input": "title" }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a number where a string goes",
            CREATE,
            json!({ "input": { "title": 42 } }),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an int out of range",
            "{ incidents(first: 99999999999999999999) { totalCount } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a negative page size",
            "{ incidents(first: -1) { totalCount } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a garbage cursor",
            "{ incidents(after: \"\u{0}garbage\") { totalCount } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an invalid DateTime",
            "{ incidents(filter: { startedAfter: \"yesterday\" }) { totalCount } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an invalid Date",
            "mutation($id: UUID!) { createPostmortem(incidentId: $id, input: { actionItems: [{ title: \"t\", dueDate: \"2024-13-45\" }] }) { id } }",
            json!({ "id": own }),
            Code("BAD_USER_INPUT"),
        ),
        // Broken documents.
        op(
            "an unclosed document",
            "mutation {",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "an argument without a value",
            "{ incident(id: ) { id } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "two anonymous operations",
            "{ viewer { role } } { viewer { userId } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a fragment cycle",
            "fragment A on Query { ...B } fragment B on Query { ...A } { ...A }",
            json!({}),
            Refused,
        ),
        // 31 fragments, each spreading the next twice: 500 bytes that stand for 2^30
        // selections. A walk that follows spreads without remembering them takes hours.
        op(
            "fragments that double at every spread",
            &doubling_fragments(30),
            json!({}),
            Code("QUERY_TOO_COMPLEX"),
        ),
        op(
            "a fragment cycle that doubles at every turn",
            "fragment A on Query { ...B ...B } fragment B on Query { ...A ...A viewer { role } } { ...A }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "@include without if",
            "{ viewer @include { role } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "@skip with a string",
            "{ viewer @skip(if: \"yes\") { role } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        op(
            "a subscription over HTTP",
            "subscription { incidentChanged { kind } }",
            json!({}),
            Refused,
        ),
        op(
            "a selection on a scalar",
            "{ viewer { role { x } } }",
            json!({}),
            Code("BAD_USER_INPUT"),
        ),
        // Invalid UTF-8, empty and odd bodies, content types.
        gql(
            "invalid UTF-8 inside a string",
            [
                &br#"{"query": "{ viewer { role } }", "variables": {"x": ""#[..],
                b"\xff\xfe",
                br#""}}"#,
            ]
            .concat(),
            Status(400),
        ),
        gql("invalid UTF-8 only", b"\xff\xff\xc3".to_vec(), Status(400)),
        gql(
            "invalid UTF-8 in the query",
            [
                &br#"{"query": "{ vie"#[..],
                b"\xc3\x28",
                br#"wer { role } }"}"#,
            ]
            .concat(),
            Status(400),
        ),
        gql("an empty body", "", Status(400)),
        gql("a whitespace body", " \n\t ", Status(400)),
        gql(
            "a byte-order mark",
            [&b"\xef\xbb\xbf"[..], br#"{"query": "{ viewer { role } }"}"#].concat(),
            Refused,
        ),
        Case {
            content_type: Some("text/plain"),
            ..gql(
                "text/plain",
                r#"{"query": "{ viewer { role } }"}"#,
                Status(415),
            )
        },
        Case {
            content_type: None,
            ..gql(
                "no content type",
                r#"{"query": "{ viewer { role } }"}"#,
                Status(415),
            )
        },
        // GET with garbage query strings.
        get(
            "GET with a bad percent escape",
            "/graphql?query=%ZZ",
            Refused,
        ),
        get("GET with an empty query", "/graphql?query=", Refused),
        get("GET with no parameters", "/graphql", Refused),
        get(
            "GET with variables that are not JSON",
            "/graphql?query=%7Bviewer%7Brole%7D%7D&variables=notjson",
            Status(400),
        ),
        get(
            "GET with a mutation",
            "/graphql?query=mutation%7BcreateIncident(input:%7Btitle:%22x%22%7D)%7Bid%7D%7D",
            Status(405),
        ),
        get(
            "GET with a query list",
            "/graphql?query[]=x&query[]=y",
            Refused,
        ),
        get("GET with NUL bytes", "/graphql?%00=%00&query=%00", Refused),
        get(
            "GET with invalid UTF-8",
            "/graphql?query=%FF%FE&operationName=%C3%28",
            Refused,
        ),
        get(
            "GET with a wall of separators",
            &format!("/graphql?{}", "&=&=;".repeat(2000)),
            Refused,
        ),
        get(
            "GET with a broken document",
            "/graphql?query=%7B%7B%7B%7B",
            Code("BAD_USER_INPUT"),
        ),
    ];

    // REST bodies with the same classes of garbage.
    let incidents = "/api/v1/incidents";
    let events = format!("/api/v1/incidents/{own}/events");
    let postmortem = format!("/api/v1/incidents/{own}/postmortem");
    let transition = format!("/api/v1/incidents/{own}/transition");
    cases.extend([
        rest("REST broken JSON", incidents, "{", Status(400)),
        rest("REST empty body", incidents, "", Status(400)),
        rest("REST null body", incidents, "null", Status(400)),
        rest("REST list body", incidents, "[]", Status(400)),
        rest(
            "REST title is a number",
            incidents,
            r#"{"title": 42}"#,
            Status(400),
        ),
        rest(
            "REST unknown field",
            incidents,
            r#"{"title": "t", "nope": 1}"#,
            Status(400),
        ),
        rest(
            "REST invalid enum",
            incidents,
            r#"{"title": "t", "severity": "SEV9"}"#,
            Status(400),
        ),
        rest(
            "REST invalid UUID",
            incidents,
            r#"{"title": "t", "id": "not-a-uuid"}"#,
            Status(400),
        ),
        rest(
            "REST NUL in the title",
            incidents,
            json!({ "title": "a\u{0}b" }).to_string(),
            Code("BAD_USER_INPUT"),
        ),
        rest(
            "REST 600 KB title",
            incidents,
            json!({ "title": "x".repeat(600 * 1024) }).to_string(),
            Code("BAD_USER_INPUT"),
        ),
        rest(
            "REST body over 1 MiB",
            incidents,
            json!({ "title": "x".repeat(1024 * 1024 + 16) }).to_string(),
            Status(413),
        ),
        rest(
            "REST invalid UTF-8",
            incidents,
            [&br#"{"title": ""#[..], b"\xff\xfe", br#""}"#].concat(),
            Status(400),
        ),
        rest(
            "REST nested 10,000 levels",
            incidents,
            format!(
                r#"{{"title": "t", "linked_ticket_ids": {}}}"#,
                nested_json(10_000)
            ),
            Status(400),
        ),
        rest(
            "REST 100k tickets",
            incidents,
            json!({ "title": "t", "linked_ticket_ids": vec!["t"; 100_000] }).to_string(),
            Code("BAD_USER_INPUT"),
        ),
        Case {
            content_type: Some("text/plain"),
            ..rest("REST text/plain", incidents, r#"{"title": "t"}"#, Refused)
        },
        rest(
            "REST event content a number",
            &events,
            r#"{"content": 42}"#,
            Status(400),
        ),
        rest(
            "REST invalid event type",
            &events,
            r#"{"content": "c", "event_type": "NOT OK"}"#,
            Code("BAD_USER_INPUT"),
        ),
        rest(
            "REST invalid event id",
            &events,
            r#"{"content": "c", "id": "zzz"}"#,
            Status(400),
        ),
        rest(
            "REST transition to no status",
            &transition,
            r#"{"to": "DONE"}"#,
            Status(400),
        ),
        rest("REST transition without to", &transition, "{}", Status(400)),
        rest(
            "REST action items not a list",
            &postmortem,
            r#"{"action_items": "x"}"#,
            Status(400),
        ),
        rest(
            "REST invalid due date",
            &postmortem,
            r#"{"action_items": [{"title": "t", "due_date": "2024-13-45"}]}"#,
            Status(400),
        ),
        rest(
            "REST events on an invalid id",
            "/api/v1/incidents/not-a-uuid/events",
            r#"{"content": "c"}"#,
            Status(400),
        ),
        get(
            "REST detail of an invalid id",
            "/api/v1/incidents/not-a-uuid",
            Status(400),
        ),
        get(
            "REST detail of a NUL id",
            "/api/v1/incidents/%00",
            Status(400),
        ),
        get(
            "REST limit not a number",
            "/api/v1/incidents?limit=abc",
            Status(400),
        ),
        get(
            "REST limit out of range",
            "/api/v1/incidents?limit=99999999999999999999",
            Status(400),
        ),
        get(
            "REST negative limit",
            "/api/v1/incidents?limit=-5",
            Status(400),
        ),
        get(
            "REST invalid status",
            "/api/v1/incidents?status=DONE",
            Status(400),
        ),
        get(
            "REST garbage cursor",
            "/api/v1/incidents?cursor=%00%FF",
            Status(400),
        ),
        get(
            "REST invalid UTF-8 status",
            "/api/v1/incidents?status=%FF",
            Status(400),
        ),
    ]);
    cases
}

/// Sends one entry; returns the status and the body as text.
async fn send(app: &TestApp, token: &str, case: &Case) -> (u16, Vec<u8>) {
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
    let mut req = app
        .client
        .request(method, app.url(&case.path))
        .bearer_auth(token);
    if let Some(ct) = case.content_type {
        req = req.header(reqwest::header::CONTENT_TYPE, ct);
    }
    if let Some(body) = &case.body {
        req = req.body(body.clone());
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap_or_default().to_vec())
}

/// The codes of an answer: every GraphQL error's `extensions.code`, or the REST error's `code`.
/// `None` when the body is not JSON; panics when an error has no code.
fn codes(name: &str, body: &[u8]) -> Option<Vec<String>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if let Some(errors) = value.get("errors") {
        let errors = errors.as_array().expect("errors is a list");
        assert!(!errors.is_empty(), "{name}: empty errors: {value}");
        return Some(
            errors
                .iter()
                .map(|e| {
                    assert_ne!(
                        code(e),
                        "<no code>",
                        "{name}: an error without a code: {value}"
                    );
                    code(e).to_string()
                })
                .collect(),
        );
    }
    if let Some(error) = value.get("error") {
        let c = error["code"].as_str();
        assert!(c.is_some(), "{name}: a REST error without a code: {value}");
        return Some(vec![c.unwrap().to_string()]);
    }
    Some(vec![])
}

#[tokio::test]
async fn malformed_requests_are_refused_never_a_5xx() {
    let app = spawn_app().await;
    let alice = app.responder();
    let own = app.new_incident(&alice, "target").await.to_string();
    let cases = corpus(&own);
    assert!(cases.len() >= 60, "{} cases", cases.len());

    let mut failures = vec![];
    for case in &cases {
        let (status, body) = send(&app, &alice.token, case).await;
        let text = String::from_utf8_lossy(&body);
        let short: String = text.chars().take(300).collect();
        if status >= 500 {
            failures.push(format!("{}: {status} {short}", case.name));
            continue;
        }
        let codes = codes(&case.name, &body);
        let refused = match status {
            200 => codes.as_ref().is_some_and(|c| !c.is_empty()),
            400..=499 => true,
            _ => false,
        };
        if !refused {
            failures.push(format!("{}: not refused: {status} {short}", case.name));
            continue;
        }
        // A JSON answer always names its code; a 4xx may be plain text only where HTTP speaks
        // before GraphQL does (405, 406, 413 from the body limit).
        if codes.as_ref().is_none_or(|c| c.is_empty()) && ![405, 406, 413].contains(&status) {
            failures.push(format!("{}: no error code: {status} {short}", case.name));
            continue;
        }
        match case.expect {
            Expect::Refused => {}
            Expect::Status(s) if s == status => {}
            Expect::Code(c)
                if codes
                    .as_ref()
                    .is_some_and(|cs| cs.first().map(String::as_str) == Some(c)) => {}
            expect => failures.push(format!(
                "{}: expected {expect:?}, got {status} {short}",
                case.name
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} entries failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Nothing was written by any of them, and the server still answers a normal query.
    let data = app
        .ok(
            &alice,
            "query($id: UUID!) { incidents { totalCount } incident(id: $id) { events { totalCount } postmortem { id } } }",
            json!({ "id": own }),
        )
        .await;
    assert_eq!(
        data,
        json!({ "incidents": { "totalCount": 1 }, "incident": { "events": { "totalCount": 0 }, "postmortem": null } })
    );
    crate::helpers::assert_no_panic(&app).await;
}

#[tokio::test]
async fn malformed_websocket_payloads_get_an_error_or_a_close() {
    let app = spawn_app().await;
    let alice = app.responder();
    let own = app.new_incident(&alice, "target").await.to_string();

    // Messages after a good connection_init: each must be answered with an error (or a close),
    // after which a fresh socket still works.
    let payloads: Vec<Value> = vec![
        json!({ "type": "subscribe", "id": "1", "payload": { "query": "subscription {" } }),
        json!({ "type": "subscribe", "id": "2", "payload": { "query": 42 } }),
        json!({ "type": "subscribe", "id": "3", "payload": "not an object" }),
        json!({ "type": "subscribe", "id": "4" }),
        json!({ "type": "subscribe", "payload": { "query": "subscription { incidentChanged { kind } }" } }),
        json!({ "type": "subscribe", "id": { "x": 1 }, "payload": { "query": "subscription { incidentChanged { kind } }" } }),
        json!({ "type": "subscribe", "id": "7", "payload": { "query": "subscription($id: UUID!) { incidentEvents(incidentId: $id) { sequence } }", "variables": { "id": "not-a-uuid" } } }),
        json!({ "type": "subscribe", "id": "8", "payload": { "query": "subscription($id: UUID!) { incidentEvents(incidentId: $id) { sequence } }", "variables": [1] } }),
        json!({ "type": "subscribe", "id": "9", "payload": { "query": format!("subscription {{ incidentEvents(incidentId: \"{own}\", afterSequence: \"x\") {{ sequence }} }}") } }),
        json!({ "type": "subscribe", "id": "10", "payload": { "query": "subscription { incidentChanged(filter: { status: [DONE] }) { kind } }" } }),
        json!({ "type": "subscribe", "id": "11", "payload": { "query": "subscription { nope }" } }),
        json!({ "type": "subscribe", "id": "12", "payload": { "query": format!("subscription {{ incidentChanged {{ {}id{} }} }}", "incident { events { nodes { ".repeat(5), " } } }".repeat(5)) } }),
        json!({ "type": "subscribe", "id": "13", "payload": { "query": "subscription { incidentChanged { kind } }\u{0}" } }),
        json!({ "type": "subscribe", "id": "14", "payload": { "query": "subscription($id: UUID!) { incidentEvents(incidentId: $id) { sequence } }", "variables": { "id": serde_json::from_str::<Value>(&nested_json(100)).unwrap() } } }),
        json!({ "type": "nope", "id": "15" }),
        json!([1, 2, 3]),
    ];
    let mut answered = 0;
    for payload in payloads.iter().map(Value::to_string).chain([
        "{not json".to_string(),
        String::from_utf8_lossy(b"\xff\xfe").into_owned(),
        nested_json(10_000),
        String::new(),
    ]) {
        let mut ws = Ws::ready(app.addr, &alice.token).await;
        ws.send_text(payload.clone()).await;
        match ws.next().await {
            WsEvent::Message(m) => {
                let errors = match m["type"].as_str() {
                    Some("error") => m["payload"].clone(),
                    Some("next") => m["payload"]["errors"].clone(),
                    _ => panic!("{payload}: unexpected answer {m}"),
                };
                let errors = errors
                    .as_array()
                    .unwrap_or_else(|| panic!("{payload}: {m}"));
                assert!(!errors.is_empty(), "{payload}: {m}");
                for e in errors {
                    assert_ne!(code(e), "<no code>", "{payload}: {m}");
                }
            }
            WsEvent::Closed(code, reason) => {
                let code = code.unwrap_or_else(|| panic!("{payload}: closed without a code"));
                assert!(
                    (4000..5000).contains(&code)
                        || code == 1002
                        || code == 1003
                        || code == 1007
                        || code == 1008
                        || code == 1009,
                    "{payload}: closed with {code} {reason}"
                );
            }
        }
        answered += 1;
    }
    assert_eq!(answered, payloads.len() + 4);

    // A normal subscription still works afterwards.
    let mut ws = Ws::ready(app.addr, &alice.token).await;
    ws.subscribe(
        "ok",
        "subscription { incidentChanged { kind incident { title } } }",
        json!({}),
    )
    .await;
    // The subscription is registered once a change made after it arrives; retry the write
    // until one does, within a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut found = false;
    while !found && std::time::Instant::now() < deadline {
        app.add_event(&alice, &own, "after the corpus").await;
        if let Ok(event) =
            tokio::time::timeout(std::time::Duration::from_millis(500), ws.next()).await
            && let WsEvent::Message(m) = event
        {
            assert_eq!(
                m["payload"]["data"]["incidentChanged"]["kind"], "EVENT_ADDED",
                "{m}"
            );
            found = true;
        }
    }
    assert!(found, "the change feed answered after the corpus");
}
