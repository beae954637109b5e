//! The clients frontend teams use, driven against a real server: Apollo Client 3 (APQ link,
//! GraphQLWsLink), urql (persisted exchange; graphql-ws and graphql-sse subscriptions) and the
//! graphql-sse reference client in both modes. Each runs the whole workflow and follows the
//! timeline across a connection cut, made by a proxy this test owns, resuming from its cursor.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestApp, spawn_app};
use crate::ws_client::npm_ci;

/// A TCP proxy in front of the server whose open connections can be cut at once; connections
/// made after a cut pass again.
struct CuttingProxy {
    addr: SocketAddr,
    current: Arc<Mutex<CancellationToken>>,
    cuts: Arc<Mutex<u32>>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let current = Arc::new(Mutex::new(CancellationToken::new()));
        let token = current.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let cut = token.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        // Dropping both sockets: each side sees its connection end.
                        _ = cut.cancelled() => {}
                    }
                });
            }
        });
        CuttingProxy {
            addr,
            current,
            cuts: Arc::default(),
        }
    }

    fn cut(&self) {
        let mut current = self.current.lock().unwrap();
        current.cancel();
        *current = CancellationToken::new();
        *self.cuts.lock().unwrap() += 1;
    }
}

/// Runs `tests/clients/<script>` against `app`, cutting the live connections when it asks;
/// returns its `OK …` line.
async fn run_client(app: &TestApp, script: &str, extra: &[&str]) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    npm_ci(&dir);
    let proxy = CuttingProxy::start(app.addr).await;
    let alice = app.responder();
    let mut child = tokio::process::Command::new("node")
        .arg(dir.join(script))
        .arg(app.url("/graphql"))
        .arg(format!("http://{}/graphql", proxy.addr))
        .arg(&alice.token)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node 20 and npm are needed)");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut output = vec![];
    let finished = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            output.push(line.clone());
            if line == "CUT" {
                proxy.cut();
                stdin.write_all(b"cut\n").await.unwrap();
                stdin.flush().await.unwrap();
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "{script} did not finish: {output:?}");
    let status = child.wait().await.unwrap();
    assert!(status.success(), "{script} {extra:?} failed: {output:?}");
    assert_eq!(*proxy.cuts.lock().unwrap(), 1, "{output:?}");
    let ok = output
        .iter()
        .find(|l| l.starts_with("OK "))
        .unwrap_or_else(|| panic!("no OK line: {output:?}"))
        .clone();
    assert!(ok.contains(r#""timeline":[1,2,3,4,5]"#), "{ok}");
    println!("{script} {extra:?}: {ok}");
    ok
}

#[tokio::test]
async fn apollo_client_runs_the_workflow_with_apq_and_follows_the_timeline_over_websocket() {
    let app = spawn_app().await;
    let ok = run_client(&app, "apollo.mjs", &["ws"]).await;
    assert!(ok.contains(r#""postsWithText""#), "{ok}");
}

#[tokio::test]
async fn apollo_client_follows_the_timeline_over_sse_with_the_readme_link() {
    let app = spawn_app().await;
    run_client(&app, "apollo.mjs", &["sse"]).await;
}

#[tokio::test]
async fn urql_runs_the_workflow_and_follows_the_timeline_over_graphql_ws() {
    let app = spawn_app().await;
    run_client(&app, "urql.mjs", &["ws"]).await;
}

#[tokio::test]
async fn urql_runs_the_workflow_and_follows_the_timeline_over_sse() {
    let app = spawn_app().await;
    run_client(&app, "urql.mjs", &["sse"]).await;
}

#[tokio::test]
async fn the_graphql_sse_client_runs_the_workflow_in_distinct_connections_mode() {
    let app = spawn_app().await;
    run_client(&app, "sse.mjs", &["distinct"]).await;
}

#[tokio::test]
async fn the_graphql_sse_client_runs_the_workflow_in_single_connection_mode() {
    let app = spawn_app().await;
    run_client(&app, "sse.mjs", &["single"]).await;
}
