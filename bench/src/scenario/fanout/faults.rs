//! Faults injected while `fanout`'s writers run: the server's LISTEN connection terminated from
//! the database side, or any shell command (a PostgreSQL restart), each at a set time.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::db::Pool;
use crate::with_pool;

/// The `application_name` of a server's LISTEN connection (src/live/pg.rs).
pub const LISTENER_APPLICATION_NAME: &str = "incidentd-listener";

#[derive(Debug, Clone)]
pub enum FaultKind {
    /// `pg_terminate_backend` of every `incidentd-listener` connection to the bench's database.
    TerminateListener,
    /// A shell command (`sh -c`), e.g. a PostgreSQL restart.
    Command(String),
}

#[derive(Debug, Clone)]
pub struct Fault {
    /// After the writers start.
    pub at: Duration,
    pub kind: FaultKind,
}

impl Fault {
    pub fn name(&self) -> String {
        match &self.kind {
            FaultKind::TerminateListener => "listener terminated".into(),
            FaultKind::Command(c) => format!("`{c}`"),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub what: String,
    /// Seconds after the writers started.
    pub at_seconds: f64,
    pub took_seconds: f64,
    pub outcome: String,
}

/// Runs each fault at its time (in order), bounded by `end`: a fault due after it is skipped.
pub async fn run(
    pool: Pool,
    mut faults: Vec<Fault>,
    start: Instant,
    end: Instant,
) -> Vec<FaultReport> {
    faults.sort_by_key(|f| f.at);
    let mut out = Vec::with_capacity(faults.len());
    for fault in faults {
        let at = start + fault.at;
        if at >= end {
            out.push(FaultReport {
                what: fault.name(),
                at_seconds: fault.at.as_secs_f64(),
                took_seconds: 0.0,
                outcome: "skipped: after the writers' end".into(),
            });
            continue;
        }
        tokio::time::sleep_until(at.into()).await;
        let began = Instant::now();
        let outcome = match &fault.kind {
            FaultKind::TerminateListener => terminate_listener(&pool).await,
            FaultKind::Command(command) => run_command(command).await,
        };
        out.push(FaultReport {
            what: fault.name(),
            at_seconds: began.duration_since(start).as_secs_f64(),
            took_seconds: began.elapsed().as_secs_f64(),
            outcome,
        });
    }
    out
}

async fn terminate_listener(pool: &Pool) -> String {
    if !pool.is_postgres() {
        return "skipped: not PostgreSQL".into();
    }
    // Only this database's listeners: other servers may share the PostgreSQL cluster.
    let sql = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
               WHERE application_name = $1 AND datname = current_database()";
    let result: Result<Vec<bool>, sea_orm::sqlx::Error> = with_pool!(pool, |p, _D| {
        sea_orm::sqlx::query_scalar(sql)
            .bind(LISTENER_APPLICATION_NAME)
            .fetch_all(p)
            .await
    });
    match result {
        Ok(rows) => format!(
            "terminated {} of {} listener connections",
            rows.iter().filter(|t| **t).count(),
            rows.len()
        ),
        Err(e) => format!("failed: {e}"),
    }
}

async fn run_command(command: &str) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .kill_on_drop(true)
            .output(),
    )
    .await;
    match output {
        Err(_) => "failed: still running after 300 s (killed)".into(),
        Ok(Err(e)) => format!("failed to start: {e}"),
        Ok(Ok(o)) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
            match (o.status.success(), last) {
                (true, _) => "exit 0".into(),
                (false, Some(line)) => format!("{}: {}", o.status, line.trim()),
                (false, None) => o.status.to_string(),
            }
        }
    }
}
