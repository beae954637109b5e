//! The real application in the test's process, listening on a port the system chose, told to
//! stop when dropped.

use std::net::SocketAddr;
use std::time::Duration;

use incidentd::app::{AppState, Application};
use incidentd::config::Config;

/// A configuration for `database_url` that listens on port 0 and signs tokens with `secret`;
/// the caller tunes the rest.
pub fn config(database_url: &str, secret: &str) -> Config {
    let mut config = Config::for_database(database_url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.jwt_secret = Some(secret.to_string().into());
    config
}

/// A server in this process; stopped when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    /// Builds the application (running the migrations) and serves it until stopped.
    pub async fn start(config: Config) -> TestServer {
        Self::start_with_clock(config, std::sync::Arc::new(incidentd::webhook::SystemClock)).await
    }

    /// As `start`, with the clock the webhook worker schedules by.
    pub async fn start_with_clock(
        config: Config,
        clock: std::sync::Arc<dyn incidentd::webhook::Clock>,
    ) -> TestServer {
        let app = Application::build_with_clock(config, clock)
            .await
            .expect("the server builds");
        let addr = app.local_addr();
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = app
                .run_until(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        TestServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://127.0.0.1:port`
    pub fn http(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:port/graphql`
    pub fn ws(&self) -> String {
        format!("ws://{}/graphql", self.addr)
    }

    /// Tells the server to stop, as SIGTERM would, without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the server and waits (at most 30 s) until it has.
    pub async fn stop(mut self) {
        self.signal_stop();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.signal_stop();
    }
}
