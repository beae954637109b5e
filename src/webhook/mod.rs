//! Delivery of the messages the domain queued: claims due messages (leased; on PostgreSQL with
//! `FOR UPDATE SKIP LOCKED`, so replicas share the work), signs and sends them, and records
//! each attempt, retrying on the Standard Webhooks schedule.

mod client;
pub mod format;
pub mod signing;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::ActiveValue::Set;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::Db;
use crate::entity::{
    WebhookDeliveryStatus as Status, webhook_attempt, webhook_delivery, webhook_endpoint,
};
use crate::incident::OrgScope;
use crate::incident::audit::Diff;
use crate::incident::webhooks::{self, WebhookSettings, secret, store};

/// The time the worker schedules by; tests move it forward instead of sleeping.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system's time plus an offset that only grows: a clock tests advance by hand.
#[derive(Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// Waits after each failed attempt (the first attempt is immediate): the Standard Webhooks
/// schedule. After the last, the message is dead.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// An endpoint failing this long without a success is disabled.
pub const FAILING_LIMIT: Duration = Duration::from_secs(5 * 86_400);

/// The wait before the next attempt after `failures` failed ones, ±10 % (`jitter` in 0..1),
/// never sooner than the receiver's `Retry-After`; `None`: give up.
pub fn retry_delay(failures: i32, retry_after: Option<Duration>, jitter: f64) -> Option<Duration> {
    let base = RETRY_SCHEDULE.get(usize::try_from(failures).ok()?.checked_sub(1)?)?;
    let jittered = base.mul_f64(0.9 + 0.2 * jitter.clamp(0.0, 1.0));
    Some(jittered.max(retry_after.unwrap_or_default()))
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Concurrent deliveries of this replica.
    pub workers: usize,
    /// One attempt's limit.
    pub timeout: Duration,
    /// How often other replicas' messages and due retries are looked for, besides wake-ups.
    pub poll: Duration,
}

impl WorkerOptions {
    /// How long a claim holds a message: well past one attempt's limit, so only a replica
    /// that died leaves it to the others.
    fn lease(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(10)
    }
}

/// The running worker: wake it, stop it, read its clock.
#[derive(Clone)]
pub struct Deliveries {
    wake: Arc<Notify>,
    stop: CancellationToken,
    pub clock: Arc<dyn Clock>,
}

impl Deliveries {
    /// Looks for due messages now (after a clock change, say).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops claiming, and drops the attempts in flight without recording them (as a replica
    /// that dies would: their leases run out and they are sent again).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

struct Worker {
    db: Db,
    settings: WebhookSettings,
    options: WorkerOptions,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    owner: Uuid,
    stop: CancellationToken,
    /// Deliveries this replica is sending: a claim that finds one again (its lease ran out
    /// while the receiver took its time) leaves it to the attempt in flight.
    in_flight: std::sync::Mutex<std::collections::HashSet<Uuid>>,
}

/// Starts the worker on this replica.
pub fn start(
    db: Db,
    settings: WebhookSettings,
    options: WorkerOptions,
    clock: Arc<dyn Clock>,
) -> Deliveries {
    let http = client::build(
        settings.resolver.clone(),
        settings.destinations.clone(),
        options.timeout,
    );
    let deliveries = Deliveries {
        wake: settings.wake.clone(),
        stop: CancellationToken::new(),
        clock: clock.clone(),
    };
    let worker = Arc::new(Worker {
        db,
        settings,
        options,
        clock,
        http,
        owner: Uuid::new_v4(),
        stop: deliveries.stop.clone(),
        in_flight: Default::default(),
    });
    tokio::spawn(worker.run());
    deliveries
}

impl Worker {
    async fn run(self: Arc<Self>) {
        let slots = Arc::new(Semaphore::new(self.options.workers.max(1)));
        let mut stats_at: Option<Instant> = None;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let free = slots.available_permits();
            let mut full_batch = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(rows) => {
                        full_batch = rows.len() == free;
                        for row in rows {
                            if !self.lock_in_flight().insert(row.id) {
                                continue;
                            }
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                return;
                            };
                            let this = self.clone();
                            tokio::spawn(async move {
                                tokio::select! {
                                    _ = this.stop.cancelled() => {}
                                    _ = this.deliver(&row) => {}
                                }
                                this.lock_in_flight().remove(&row.id);
                                drop(permit);
                                this.settings.wake.notify_one();
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
                }
            }
            if stats_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                stats_at = Some(Instant::now());
                self.sample_queue().await;
            }
            if full_batch {
                continue;
            }
            tokio::select! {
                _ = self.settings.wake.notified() => {}
                _ = tokio::time::sleep(self.options.poll) => {}
                _ = self.stop.cancelled() => return,
            }
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Uuid>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn claim(&self, limit: usize) -> anyhow::Result<Vec<webhook_delivery::Model>> {
        let now = self.clock.now();
        let until = now + TimeDelta::from_std(self.options.lease())?;
        let txn = self
            .db
            .begin_write()
            .await
            .map_err(|_| anyhow::anyhow!("no database connection"))?;
        store::without_flush_wait(&*txn).await?;
        let rows = store::claim(&*txn, now, self.owner, until, limit as u64).await?;
        txn.commit().await?;
        Ok(rows)
    }

    async fn sample_queue(&self) {
        if let Ok((depth, oldest)) = store::queue_stats(&self.db).await {
            let age = oldest
                .and_then(|t| (self.clock.now() - t).to_std().ok())
                .unwrap_or_default();
            crate::monitoring::webhook_queue(depth, age);
        }
    }

    async fn deliver(&self, delivery: &webhook_delivery::Model) {
        if let Err(e) = self.try_deliver(delivery).await {
            tracing::warn!(error = %e, delivery = %delivery.id, "recording a webhook attempt failed");
        }
    }

    async fn try_deliver(&self, delivery: &webhook_delivery::Model) -> anyhow::Result<()> {
        let scope = OrgScope::new(delivery.organization_id);
        let Some(endpoint) = store::endpoint(&self.db, scope, delivery.endpoint_id).await? else {
            return Ok(()); // deleted meanwhile, with its deliveries
        };
        if !endpoint.enabled {
            store::release(&self.db, delivery, self.owner).await?;
            return Ok(());
        }
        let started = Instant::now();
        let outcome = self.send(&endpoint, delivery).await;
        let took = started.elapsed();
        self.record(scope, &endpoint, delivery, outcome, took).await
    }

    /// The keys that sign now: the current secret, and the previous one until it expires.
    fn keys(&self, endpoint: &webhook_endpoint::Model) -> Vec<Vec<u8>> {
        let cipher = self.settings.cipher.as_ref();
        let mut stored = vec![endpoint.secret.as_str()];
        if let (Some(previous), Some(until)) = (
            &endpoint.previous_secret,
            endpoint.previous_secret_expires_at,
        ) && until > self.clock.now()
        {
            stored.push(previous);
        }
        stored
            .into_iter()
            .filter_map(|s| secret::open(cipher, s))
            .filter_map(|s| secret::key_bytes(&s))
            .collect()
    }

    async fn send(
        &self,
        endpoint: &webhook_endpoint::Model,
        delivery: &webhook_delivery::Model,
    ) -> Outcome {
        let url = match url::Url::parse(&endpoint.url) {
            Ok(url) => url,
            Err(e) => return Outcome::failed(None, format!("the URL does not parse: {e}")),
        };
        if let Err(reason) = self.may_reach(&url).await {
            return Outcome::failed(None, reason);
        }
        let keys = self.keys(endpoint);
        if keys.is_empty() {
            return Outcome::failed(
                None,
                "the signing secret cannot be read (was it sealed with another --webhook-secret-key?)".into(),
            );
        }
        let body = format::render(endpoint.format, &delivery.payload).to_string();
        // The receiver compares this with its own clock: the time of sending, not the schedule's.
        let timestamp = Utc::now().timestamp();
        let signature = signing::signature(&delivery.message_id, timestamp, body.as_bytes(), &keys);
        let sent = self
            .http
            .post(url)
            .header("webhook-id", &delivery.message_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => Outcome::from_response(&response, self.clock.now()),
            Err(e) if e.is_timeout() => Outcome::failed(None, "timed out".into()),
            Err(e) => Outcome::failed(None, error_chain(&e)),
        }
    }

    /// The connect-time check for addresses written in the URL (names are checked by the
    /// client's resolver), and `http` only to allowed hosts.
    async fn may_reach(&self, url: &url::Url) -> Result<(), String> {
        let destinations = &self.settings.destinations;
        let plain = url.scheme() == "http";
        if let Some(ip) = client::literal_host(url) {
            return if destinations.may_connect(ip, plain) {
                Ok(())
            } else {
                Err(format!("{ip} is not an address webhooks may reach"))
            };
        }
        if plain {
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(80);
            let addresses = self
                .settings
                .resolver
                .resolve(host, port)
                .await
                .map_err(|e| format!("{host} does not resolve: {e}"))?;
            if addresses.is_empty() || !addresses.iter().all(|ip| destinations.is_allowed(*ip)) {
                return Err("http is allowed only to hosts in --webhook-allow-hosts".into());
            }
        }
        Ok(())
    }

    async fn record(
        &self,
        scope: OrgScope,
        endpoint: &webhook_endpoint::Model,
        delivery: &webhook_delivery::Model,
        outcome: Outcome,
        took: Duration,
    ) -> anyhow::Result<()> {
        let now = self.clock.now();
        let attempts = delivery.attempt_count.saturating_add(1);
        let (status, next) = match &outcome {
            Outcome::Delivered(_) => (Status::Delivered, None),
            Outcome::Failed { retry_after, .. } | Outcome::Gone { retry_after, .. } => {
                match retry_delay(attempts, *retry_after, rand::random::<f64>()) {
                    Some(wait) => (Status::Failed, Some(now + TimeDelta::from_std(wait)?)),
                    None => (Status::Dead, None),
                }
            }
        };
        let attempt = webhook_attempt::Model {
            id: Uuid::now_v7(),
            organization_id: delivery.organization_id,
            delivery_id: delivery.id,
            at: crate::incident::truncate(now),
            response_status: outcome.status().map(i32::from),
            duration_ms: i32::try_from(took.as_millis()).unwrap_or(i32::MAX),
            error: outcome.error(),
        };
        let txn = self
            .db
            .begin_write()
            .await
            .map_err(|_| anyhow::anyhow!("no database connection"))?;
        store::without_flush_wait(&*txn).await?;
        let owned =
            store::finish(&*txn, delivery, self.owner, status, attempts, next, attempt).await?;
        if !owned {
            return Ok(()); // the lease ran out and another replica took the message
        }
        let disable = match &outcome {
            Outcome::Delivered(_) => {
                if endpoint.failing_since.is_some() {
                    let row = webhook_endpoint::ActiveModel {
                        failing_since: Set(None),
                        ..Default::default()
                    };
                    store::update_endpoint(&*txn, scope, endpoint.id, row).await?;
                }
                None
            }
            Outcome::Gone { .. } => Some(("gone", "the endpoint answered 410 Gone".to_string())),
            Outcome::Failed { .. } => match endpoint.failing_since {
                None => {
                    let row = webhook_endpoint::ActiveModel {
                        failing_since: Set(Some(crate::incident::truncate(now))),
                        ..Default::default()
                    };
                    store::update_endpoint(&*txn, scope, endpoint.id, row).await?;
                    None
                }
                Some(since) if (now - since).to_std().unwrap_or_default() >= FAILING_LIMIT => {
                    Some((
                        "failing",
                        format!(
                            "every attempt failed since {} (5 days without a success)",
                            since.format("%Y-%m-%d %H:%M UTC")
                        ),
                    ))
                }
                Some(_) => None,
            },
        };
        if let Some((kind, reason)) = &disable {
            disable_endpoint(&*txn, scope, endpoint, reason, now).await?;
            crate::monitoring::webhook_endpoint_disabled(kind);
        }
        txn.commit().await?;
        let label = match status {
            Status::Delivered => "delivered",
            Status::Dead => "dead",
            _ => "failed",
        };
        crate::monitoring::webhook_delivery(label, took);
        Ok(())
    }
}

async fn disable_endpoint<C: sea_orm::ConnectionTrait>(
    txn: &C,
    scope: OrgScope,
    endpoint: &webhook_endpoint::Model,
    reason: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let now = crate::incident::truncate(now);
    let row = webhook_endpoint::ActiveModel {
        enabled: Set(false),
        disabled_reason: Set(Some(reason.to_string())),
        updated_at: Set(now),
        ..Default::default()
    };
    store::update_endpoint(txn, scope, endpoint.id, row).await?;
    let mut diff = Diff::default();
    diff.field("enabled", &true, &false);
    diff.field("disabledReason", &None, &Some(reason));
    let audit = webhooks::audit_row(None, webhooks::ENDPOINT_DISABLED, endpoint.id, diff, now);
    store::insert_audit(txn, scope, audit).await?;
    tracing::warn!(endpoint = %endpoint.id, reason, "webhook endpoint disabled");
    Ok(())
}

/// What one attempt came to.
enum Outcome {
    Delivered(u16),
    Gone {
        retry_after: Option<Duration>,
    },
    Failed {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
}

impl Outcome {
    fn failed(status: Option<u16>, error: String) -> Outcome {
        Outcome::Failed {
            status,
            error,
            retry_after: None,
        }
    }

    fn from_response(response: &reqwest::Response, now: DateTime<Utc>) -> Outcome {
        let status = response.status();
        let code = status.as_u16();
        if status.is_success() {
            return Outcome::Delivered(code);
        }
        if code == 410 {
            return Outcome::Gone { retry_after: None };
        }
        let retry_after = if code == 429 || code == 503 {
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now))
        } else {
            None
        };
        let error = if status.is_redirection() {
            format!("answered {code}; redirects are not followed")
        } else {
            format!("answered {code}")
        };
        Outcome::Failed {
            status: Some(code),
            error,
            retry_after,
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered(code) => Some(*code),
            Outcome::Gone { .. } => Some(410),
            Outcome::Failed { status, .. } => *status,
        }
    }

    fn error(&self) -> Option<String> {
        match self {
            Outcome::Delivered(_) => None,
            Outcome::Gone { .. } => Some("answered 410 Gone: the endpoint is disabled".into()),
            Outcome::Failed { error, .. } => Some(error.clone()),
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date; at most a day is honoured.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let wait = match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = DateTime::parse_from_rfc2822(value.trim()).ok()?;
            (at.with_timezone(&Utc) - now).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(Duration::from_secs(86_400)))
}

/// An error with its causes (reqwest's own message hides the resolver's reason).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out.chars().take(1000).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_standard_webhooks_with_jitter_and_retry_after() {
        let secs = |f: i32, j: f64| retry_delay(f, None, j).map(|d| d.as_secs_f64());
        assert_eq!(secs(1, 0.5), Some(5.0));
        assert_eq!(secs(2, 0.5), Some(300.0));
        assert_eq!(secs(3, 0.5), Some(1800.0));
        assert_eq!(secs(4, 0.5), Some(7200.0));
        assert_eq!(secs(5, 0.5), Some(18000.0));
        assert_eq!(secs(6, 0.5), Some(36000.0));
        assert_eq!(secs(7, 0.5), Some(36000.0));
        assert_eq!(secs(8, 0.5), None, "eight attempts, then dead");
        assert_eq!(secs(0, 0.5), None);
        assert_eq!(secs(1, 0.0), Some(4.5));
        assert!(secs(1, 1.0).unwrap() <= 5.5);
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(120)), 0.5),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_delay(2, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(300))
        );
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 10:01:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("999999", now),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn a_manual_clock_moves_when_told() {
        let clock = ManualClock::default();
        let before = clock.now();
        clock.advance(Duration::from_secs(3600));
        assert!(clock.now() - before >= TimeDelta::seconds(3600));
    }
}
