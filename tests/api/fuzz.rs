//! Fuzzing the GraphQL request path (cargo-fuzz needs nightly, so proptest stands in): proptest generates hostile documents
//! (schema field names nested at random, arguments with random values, aliases, directives,
//! fragments, variables, random unicode and truncations) and random JSON variables, and sends
//! them through POST /graphql on a real server. No answer may be a 5xx, every error must carry
//! `extensions.code`, and the server must keep answering.
//!
//! `INCIDENTD_FUZZ_CASES` sets the number of cases (default 200), `INCIDENTD_FUZZ_SECONDS` caps
//! the running time (cases after the deadline are skipped); see README.md, "Fuzzing".

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const FIELDS: &[&str] = &[
    "incident",
    "incidents",
    "postmortems",
    "auditEvents",
    "viewer",
    "id",
    "organizationId",
    "title",
    "status",
    "severity",
    "linkedTicketIds",
    "allowedTransitions",
    "events",
    "nodes",
    "edges",
    "node",
    "cursor",
    "pageInfo",
    "hasNextPage",
    "endCursor",
    "totalCount",
    "postmortem",
    "incidentId",
    "sequence",
    "eventType",
    "content",
    "actionItems",
    "rootCause",
    "changes",
    "role",
    "userId",
    "createIncident",
    "updateIncident",
    "transitionIncident",
    "addIncidentEvent",
    "createPostmortem",
    "updatePostmortem",
    "incidentChanged",
    "incidentEvents",
    "__typename",
    "__schema",
    "__type",
    "types",
    "name",
    "fields",
    "ofType",
    "kind",
];

const ARGS: &[&str] = &[
    "id",
    "first",
    "last",
    "after",
    "before",
    "filter",
    "input",
    "to",
    "note",
    "types",
    "entityId",
    "incidentId",
    "afterSequence",
    "title",
    "status",
    "severity",
    "search",
    "name",
    "if",
];

const TYPES: &[&str] = &[
    "UUID!",
    "UUID",
    "Int",
    "String!",
    "[String!]",
    "IncidentFilter",
    "CreateIncidentInput!",
    "IncidentStatus!",
    "[IncidentSeverity!]",
    "DateTime",
    "Boolean!",
    "Nope",
];

const TYPE_CONDITIONS: &[&str] = &[
    "Query",
    "Mutation",
    "Incident",
    "IncidentEvent",
    "Postmortem",
    "Nope",
];

fn pick(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(list).prop_map(str::to_string)
}

/// A name: mostly the schema's, sometimes anything identifier-shaped or not.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => pick(FIELDS),
        1 => "[_a-zA-Z][_a-zA-Z0-9]{0,12}",
        1 => "\\PC{1,6}",
    ]
}

/// A GraphQL string literal's body: printable, unicode, escapes (valid and not), NUL.
fn string_body() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ]{0,20}",
        "\\PC{0,20}",
        "(\\\\[\"\\\\/bfnrtu]|\\\\u[0-9a-fA-F]{0,4}|\\\\u\\{[0-9a-fA-F]{0,8}\\}|[^\"\\\\]){0,12}",
        Just("\u{0}".to_string()),
        Just("01a2193b-c818-73aa-af6e-286a2b115e97".to_string()),
    ]
}

/// A GraphQL value literal, nested at random.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        "-?[0-9]{1,30}(\\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?",
        string_body().prop_map(|s| format!("\"{s}\"")),
        pick(&[
            "OPEN", "RESOLVED", "CLOSED", "SEV1", "SEV9", "true", "false", "null", "DONE"
        ]),
        "\\$[a-z]{1,3}",
        string_body().prop_map(|s| format!("\"\"\"{s}\"\"\"")),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4)
                .prop_map(|v| format!("[{}]", v.join(", "))),
            proptest::collection::vec((pick(ARGS), inner), 0..4).prop_map(|kv| {
                let fields: Vec<String> =
                    kv.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        ]
    })
}

fn arguments() -> impl Strategy<Value = String> {
    proptest::collection::vec((pick(ARGS), value()), 0..3).prop_map(|args| {
        if args.is_empty() {
            String::new()
        } else {
            let args: Vec<String> = args.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
            format!("({})", args.join(", "))
        }
    })
}

fn directives() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        (
            pick(&["include", "skip", "nope", "deprecated", "defer", "stream"]),
            proptest::option::of(value()),
        ),
        0..2,
    )
    .prop_map(|ds| {
        ds.into_iter()
            .map(|(d, v)| match v {
                Some(v) => format!(" @{d}(if: {v})"),
                None => format!(" @{d}"),
            })
            .collect()
    })
}

/// A selection set, nested at random: fields with aliases, arguments and directives, inline
/// fragments and fragment spreads.
fn selection_set() -> impl Strategy<Value = String> {
    let leaf = (proptest::option::of("[a-z]{1,3}"), name(), directives()).prop_map(
        |(alias, name, dirs)| match alias {
            Some(a) => format!("{a}: {name}{dirs}"),
            None => format!("{name}{dirs}"),
        },
    );
    let item = leaf.prop_recursive(8, 64, 4, |inner| {
        let set = proptest::collection::vec(inner, 1..4).prop_map(|items| items.join(" "));
        prop_oneof![
            4 => (proptest::option::of("[a-z]{1,3}"), name(), arguments(), directives(), set.clone())
                .prop_map(|(alias, name, args, dirs, set)| {
                    let alias = alias.map(|a| format!("{a}: ")).unwrap_or_default();
                    format!("{alias}{name}{args}{dirs} {{ {set} }}")
                }),
            1 => (proptest::option::of(pick(TYPE_CONDITIONS)), directives(), set)
                .prop_map(|(on, dirs, set)| match on {
                    Some(t) => format!("... on {t}{dirs} {{ {set} }}"),
                    None => format!("...{dirs} {{ {set} }}"),
                }),
            1 => pick(&["F", "G", "Nope"]).prop_map(|f| format!("...{f}")),
        ]
    });
    proptest::collection::vec(item, 1..4).prop_map(|items| format!("{{ {} }}", items.join(" ")))
}

/// A document as a client would write one: an operation and maybe fragments.
fn composed() -> impl Strategy<Value = String> {
    let operation = (
        pick(&[
            "",
            "query",
            "mutation",
            "subscription",
            "query Q",
            "mutation M",
        ]),
        proptest::collection::vec(
            ("[a-z]{1,3}", pick(TYPES), proptest::option::of(value())),
            0..3,
        ),
        directives(),
        selection_set(),
    )
        .prop_map(|(kind, vars, dirs, set)| {
            let vars = if vars.is_empty() {
                String::new()
            } else {
                let defs: Vec<String> = vars
                    .into_iter()
                    .map(|(n, t, d)| match d {
                        Some(d) => format!("${n}: {t} = {d}"),
                        None => format!("${n}: {t}"),
                    })
                    .collect();
                format!("({})", defs.join(", "))
            };
            if kind.is_empty() && vars.is_empty() {
                set
            } else {
                format!("{kind}{vars}{dirs} {set}")
            }
        });
    let fragments = proptest::collection::vec(
        (pick(&["F", "G"]), pick(TYPE_CONDITIONS), selection_set()),
        0..2,
    )
    .prop_map(|fs| {
        fs.into_iter()
            .map(|(n, t, s)| format!(" fragment {n} on {t} {s}"))
            .collect::<String>()
    });
    (operation, fragments).prop_map(|(op, fs)| format!("{op}{fs}"))
}

/// The schema as the typed generator knows it: per type, its fields as (name, arguments, the
/// field's type when it is an object). Names outside the real schema are the untyped
/// generator's business.
fn fields_of(ty: &str) -> &'static [(&'static str, &'static [&'static str], Option<&'static str>)] {
    const PAGE: &[&str] = &["first", "after", "last", "before"];
    match ty {
        "Query" => &[
            ("incident", &["id"], Some("Incident")),
            (
                "incidents",
                &["filter", "first", "after", "last", "before"],
                Some("IncidentConnection"),
            ),
            ("postmortems", PAGE, Some("PostmortemConnection")),
            (
                "auditEvents",
                &["entityId", "first", "after"],
                Some("AuditEventConnection"),
            ),
            ("viewer", &[], Some("Viewer")),
            ("__typename", &[], None),
        ],
        "Mutation" => &[
            ("createIncident", &["input"], Some("Incident")),
            ("updateIncident", &["id", "input"], Some("Incident")),
            (
                "transitionIncident",
                &["id", "to", "note"],
                Some("Incident"),
            ),
            (
                "addIncidentEvent",
                &["incidentId", "input"],
                Some("IncidentEvent"),
            ),
            (
                "createPostmortem",
                &["incidentId", "input"],
                Some("Postmortem"),
            ),
            (
                "updatePostmortem",
                &["incidentId", "input"],
                Some("Postmortem"),
            ),
        ],
        "Incident" => &[
            ("id", &[], None),
            ("organizationId", &[], None),
            ("title", &[], None),
            ("status", &[], None),
            ("severity", &[], None),
            ("linkedTicketIds", &[], None),
            ("startedAt", &[], None),
            ("resolvedAt", &[], None),
            ("allowedTransitions", &[], None),
            (
                "events",
                &["first", "after", "last", "before", "types"],
                Some("IncidentEventConnection"),
            ),
            ("postmortem", &[], Some("Postmortem")),
        ],
        "IncidentConnection" => &[
            ("totalCount", &[], None),
            ("nodes", &[], Some("Incident")),
            ("edges", &[], Some("IncidentEdge")),
            ("pageInfo", &[], Some("PageInfo")),
        ],
        "IncidentEdge" => &[("cursor", &[], None), ("node", &[], Some("Incident"))],
        "IncidentEventConnection" => &[
            ("totalCount", &[], None),
            ("nodes", &[], Some("IncidentEvent")),
            ("pageInfo", &[], Some("PageInfo")),
        ],
        "IncidentEvent" => &[
            ("id", &[], None),
            ("incidentId", &[], None),
            ("sequence", &[], None),
            ("eventType", &[], None),
            ("content", &[], None),
            ("createdAt", &[], None),
            ("incident", &[], Some("Incident")),
        ],
        "Postmortem" => &[
            ("id", &[], None),
            ("incidentId", &[], None),
            ("rootCause", &[], None),
            ("impactSummary", &[], None),
            ("actionItems", &[], Some("ActionItem")),
            ("incident", &[], Some("Incident")),
        ],
        "ActionItem" => &[
            ("title", &[], None),
            ("dueDate", &[], None),
            ("done", &[], None),
        ],
        "PostmortemConnection" => &[
            ("totalCount", &[], None),
            ("nodes", &[], Some("Postmortem")),
            ("pageInfo", &[], Some("PageInfo")),
        ],
        "AuditEventConnection" => &[
            ("totalCount", &[], None),
            ("nodes", &[], Some("AuditEvent")),
        ],
        "AuditEvent" => &[
            ("id", &[], None),
            ("action", &[], None),
            ("entityId", &[], None),
            ("incidentId", &[], None),
            ("changes", &[], None),
        ],
        "Viewer" => &[
            ("userId", &[], None),
            ("organizationId", &[], None),
            ("role", &[], None),
        ],
        "PageInfo" => &[
            ("hasNextPage", &[], None),
            ("hasPreviousPage", &[], None),
            ("startCursor", &[], None),
            ("endCursor", &[], None),
        ],
        _ => &[("__typename", &[], None)],
    }
}

/// A string literal: mostly plain, sometimes hostile.
fn string_literal() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z ]{1,12}".prop_map(|s| format!("\"{s}\"")),
        1 => string_body().prop_map(|s| format!("\"{s}\"")),
        1 => "\\PC{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
    .boxed()
}

/// A value for a named argument or input field: mostly of the right type, sometimes not.
fn typed_value(arg: &str) -> BoxedStrategy<String> {
    let uuid = prop_oneof![
        4 => any::<u128>().prop_map(|n| format!("\"{}\"", uuid::Uuid::from_u128(n))),
        1 => string_literal(),
    ];
    let right: BoxedStrategy<String> = match arg {
        "id" | "entityId" | "incidentId" => uuid.boxed(),
        "first" | "last" => prop_oneof![0..120i64, -3..0i64, Just(i64::from(i32::MAX) + 1)]
            .prop_map(|n| n.to_string())
            .boxed(),
        "after" | "before" | "note" | "search" | "title" | "content" | "rootCause" => {
            string_literal()
        }
        "to" | "status" => pick(&["OPEN", "MITIGATING", "RESOLVED", "CLOSED"]).boxed(),
        "severity" => pick(&["SEV1", "SEV2", "SEV3", "SEV4"]).boxed(),
        "types" => proptest::collection::vec(string_literal(), 0..3)
            .prop_map(|v| format!("[{}]", v.join(", ")))
            .boxed(),
        "filter" => proptest::collection::vec(
            prop_oneof![
                pick(&["OPEN", "RESOLVED", "CLOSED"]).prop_map(|s| format!("status: [{s}]")),
                pick(&["SEV1", "SEV4"]).prop_map(|s| format!("severity: [{s}]")),
                string_literal().prop_map(|s| format!("search: {s}")),
                string_literal().prop_map(|s| format!("linkedTicketId: {s}")),
                pick(&[
                    "\"2024-01-01T00:00:00Z\"",
                    "\"2999-01-01T00:00:00+02:00\"",
                    "\"now\""
                ])
                .prop_map(|s| format!("startedAfter: {s}")),
            ],
            0..3,
        )
        .prop_map(|fs| format!("{{ {} }}", fs.join(", ")))
        .boxed(),
        "input" => proptest::collection::vec(
            prop_oneof![
                string_literal().prop_map(|s| format!("title: {s}")),
                string_literal().prop_map(|s| format!("content: {s}")),
                pick(&["SEV1", "SEV3"]).prop_map(|s| format!("severity: {s}")),
                pick(&[
                    "\"note\"",
                    "\"deploy\"",
                    "\"Bad Type\"",
                    "\"status_changed\""
                ])
                .prop_map(|s| format!("eventType: {s}")),
                string_literal().prop_map(|s| format!("rootCause: {s}")),
                (
                    string_literal(),
                    pick(&["\"2024-02-29\"", "\"2023-02-29\"", "\"x\""])
                )
                    .prop_map(|(t, d)| format!("actionItems: [{{ title: {t}, dueDate: {d} }}]")),
                proptest::collection::vec(string_literal(), 0..3)
                    .prop_map(|v| format!("linkedTicketIds: [{}]", v.join(", "))),
            ],
            0..4,
        )
        .prop_map(|fs| format!("{{ {} }}", fs.join(", ")))
        .boxed(),
        _ => value().boxed(),
    };
    prop_oneof![6 => right, 1 => value()].boxed()
}

/// A selection set on `ty`, `depth` levels deep at most, of the schema's real fields.
fn typed_set(ty: &'static str, depth: u32) -> BoxedStrategy<String> {
    let fields = fields_of(ty);
    let field =
        proptest::sample::select(fields.to_vec()).prop_flat_map(move |(name, args, child)| {
            let args = proptest::sample::subsequence(args.to_vec(), 0..=args.len())
                .prop_flat_map(|names| {
                    names
                        .into_iter()
                        .map(|a| typed_value(a).prop_map(move |v| format!("{a}: {v}")))
                        .collect::<Vec<_>>()
                })
                .prop_map(|args| {
                    if args.is_empty() {
                        String::new()
                    } else {
                        format!("({})", args.join(", "))
                    }
                });
            match child {
                Some(child) if depth > 0 => (args, typed_set(child, depth - 1))
                    .prop_map(move |(args, set)| format!("{name}{args} {set}"))
                    .boxed(),
                Some(_) => Just("__typename".to_string()).boxed(),
                None => args.prop_map(move |args| format!("{name}{args}")).boxed(),
            }
        });
    proptest::collection::vec(field, 1..4)
        .prop_map(|items| {
            // Distinct aliases, so two uses of a field with different arguments do not conflict.
            let items: Vec<String> = items
                .into_iter()
                .enumerate()
                .map(|(i, f)| format!("f{i}: {f}"))
                .collect();
            format!("{{ {} }}", items.join(" "))
        })
        .boxed()
}

/// A document of the schema's real shape with arguments of (mostly) the right types: these
/// get past validation into the resolvers.
fn typed() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0..5u32).prop_flat_map(|d| typed_set("Query", d)),
        2 => (0..4u32).prop_flat_map(|d| typed_set("Mutation", d)).prop_map(|s| format!("mutation {s}")),
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => typed(),
        4 => composed(),
        // Damaged documents: truncated, or with random characters spliced in.
        1 => (typed(), any::<prop::sample::Index>())
            .prop_map(|(d, at)| d.chars().take(at.index(d.chars().count().max(1))).collect()),
        1 => (composed(), any::<prop::sample::Index>(), "\\PC{1,4}|[{}()\\[\\]$@:!.\"\\\\#]{1,4}")
            .prop_map(|(d, at, junk)| {
                let chars: Vec<char> = d.chars().collect();
                let at = at.index(chars.len().max(1)).min(chars.len());
                chars[..at].iter().chain(junk.chars().collect::<Vec<_>>().iter()).chain(chars[at..].iter()).collect()
            }),
        // Pure noise: braces and anything.
        1 => "[{}a-z ]{0,60}",
        1 => "\\PC{0,40}",
    ]
}

/// JSON variables, at random.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,16}".prop_map(Value::String),
        pick(&[
            "OPEN",
            "SEV1",
            "01a2193b-c818-73aa-af6e-286a2b115e97",
            "2024-01-01T00:00:00Z",
            "\u{0}"
        ])
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec((pick(ARGS), inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn request() -> impl Strategy<Value = Value> {
    (
        document(),
        proptest::option::of(proptest::collection::vec(
            ("[a-z]{1,3}", json_value()),
            0..4,
        )),
        prop_oneof![
            6 => Just(None),
            1 => pick(&["Q", "M", "Nope", ""]).prop_map(Some),
        ],
    )
        .prop_map(|(query, vars, op)| {
            let mut body = json!({ "query": query });
            if let Some(vars) = vars {
                body["variables"] = Value::Object(vars.into_iter().collect());
            }
            if let Some(op) = op {
                body["operationName"] = json!(op);
            }
            body
        })
}

/// Sends one request; checks the invariants.
/// Answers that carried data: documents that got past parsing and validation into execution.
static EXECUTED: AtomicUsize = AtomicUsize::new(0);

async fn check(app: &TestApp, token: &str, body: &Value) -> Result<(), TestCaseError> {
    let resp = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("no answer ({e}) to {body}")))?;
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    prop_assert!(status < 500, "{} to {}: {}", status, body, text);
    prop_assert!(
        status == 200 || (400..500).contains(&status),
        "{} to {}",
        status,
        body
    );
    let answer: Value = serde_json::from_str(&text)
        .map_err(|_| TestCaseError::fail(format!("not JSON ({status}) to {body}: {text}")))?;
    if answer.get("data").is_some_and(|d| !d.is_null()) {
        EXECUTED.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(errors) = answer.get("errors") {
        let errors = errors.as_array().unwrap();
        prop_assert!(!errors.is_empty(), "{}", answer);
        for e in errors {
            prop_assert!(
                e["extensions"]["code"].is_string(),
                "an error without a code for {}: {}",
                body,
                answer
            );
            // No input is a server fault: an INTERNAL (or a panic caught into an error) would
            // be a bug the request triggered.
            prop_assert_ne!(
                &e["extensions"]["code"],
                "INTERNAL",
                "{} for {}",
                answer,
                body
            );
            let message = e["message"].as_str().unwrap_or("");
            prop_assert!(
                !message.contains("panicked") || body.to_string().contains("panicked"),
                "{} for {}",
                answer,
                body
            );
        }
    } else {
        prop_assert_eq!(status, 200, "{}", answer);
        prop_assert!(answer.get("data").is_some(), "{}", answer);
    }
    Ok(())
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn fuzz_graphql_documents_never_break_the_server() {
    let cases = env("INCIDENTD_FUZZ_CASES").unwrap_or(200) as u32;
    let deadline = env("INCIDENTD_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(spawn_app());
    let responder = app.responder();
    let token = responder.token.clone();
    // Chunks of fresh runners (each seeded anew), so a time cap ends the run between chunks
    // rather than generating the skipped cases.
    let (mut ran, mut skipped) = (0u64, AtomicUsize::new(0));
    let started = Instant::now();
    while ran < u64::from(cases) && deadline.is_none_or(|d| Instant::now() < d) {
        let chunk = (u64::from(cases) - ran).min(500) as u32;
        let mut runner = TestRunner::new(Config {
            cases: chunk,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&request(), |body| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                skipped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            rt.block_on(check(&app, &token, &body))
        });
        ran += u64::from(chunk);
        if let Err(e) = result {
            panic!("after {ran} cases: {e}");
        }
    }
    let skipped = *skipped.get_mut() as u64;
    eprintln!(
        "fuzz: {} requests in {:.1?} ({} executed with data), all answered within the rules",
        ran - skipped,
        started.elapsed(),
        EXECUTED.load(Ordering::Relaxed),
    );
    // The server still answers a normal query.
    let data = rt.block_on(app.ok(&responder, "{ viewer { role } }", json!({})));
    assert_eq!(data["viewer"]["role"], "responder");
    assert!(ran > skipped);
    rt.block_on(crate::helpers::assert_no_panic(&app));
}
