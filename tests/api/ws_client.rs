//! The graphql-ws reference client (npm `graphql-ws`) subscribes and receives replayed and
//! live events: the protocol works with the library its PROTOCOL.md belongs to.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::spawn_app;

/// Installs the client's pinned packages when this checkout has none yet.
pub fn npm_ci(dir: &Path) {
    // Tests run in parallel threads (or processes, under nextest): one installs while the others
    // wait, and the install counts as done only once npm has written its record of the tree
    // (the last thing it writes), not when the folder first appears.
    let lock =
        std::fs::File::create(dir.join(".npm-ci.lock")).expect("lock file in the test folder");
    lock.lock().expect("lock the test folder");
    if dir.join("node_modules/.package-lock.json").exists() {
        return;
    }
    let status = std::process::Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm is installed (Node 20)");
    assert!(status.success(), "npm ci failed in {}", dir.display());
}

#[tokio::test]
async fn the_graphql_ws_library_client_receives_replay_and_live_events() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ws-client");
    npm_ci(&dir);
    let app = spawn_app().await;
    let alice = app.responder();
    let id = app
        .create_incident(&alice, json!({ "title": "from node" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.add_event(&alice, &id, "one").await;
    app.add_event(&alice, &id, "two").await;

    let mut child = tokio::process::Command::new("node")
        .arg(dir.join("subscribe.mjs"))
        .arg(format!("ws://{}/graphql", app.addr))
        .arg(&alice.token)
        .arg(&id)
        .arg("4")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = vec![];
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            if line == "seq 2" {
                // Replay is done; these two arrive live.
                app.add_event(&alice, &id, "three").await;
                app.add_event(&alice, &id, "four").await;
            }
        }
    })
    .await
    .expect("the client finishes within 60 s");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "node client failed: {seen:?}");
    assert_eq!(seen, ["seq 1", "seq 2", "seq 3", "seq 4"]);
}
