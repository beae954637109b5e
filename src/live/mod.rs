//! The change feed: the domain's `ChangeSink`, and the streams subscribers read. Writers
//! announce committed changes (ids only); a dispatcher reads what was announced in batches, on
//! connections of its own, and hands each change only to the subscribers it concerns (one
//! channel per watched incident timeline, one per organization's change feed). The database
//! stays the source of truth: a subscriber that may have missed a signal (lag, a lost
//! PostgreSQL listener, a failed read) re-reads from its own cursor. Trouble stays local: a
//! failed read re-syncs only the organizations it concerns.
//! See `pg.rs` for the bridge between replicas.

mod feed;
mod pg;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sea_orm::{DatabaseTransaction, DbErr};
use tokio::sync::{Semaphore, broadcast, mpsc};
use uuid::Uuid;

use crate::db::{DatabaseUrl, Db, DbOptions};
use crate::entity::{incident, incident_event};
use crate::incident::changes::{Announcement, ChangeKind, ChangeSink};
use crate::incident::{OrgScope, audit, read, workflow};

pub const LAG_METRIC: &str = "incidentd_live_dispatch_lag_seconds";
pub const RESYNCS_METRIC: &str = "incidentd_live_resyncs_total";
pub const DROPPED_METRIC: &str = "incidentd_live_dropped_total";

/// How the change feed runs.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Committed transactions waiting for the dispatcher, at most. Beyond, announcements are
    /// dropped, counted, and every subscriber re-reads once the dispatcher catches up.
    pub queue: usize,
    /// The connection the PostgreSQL listener uses, when it is not the pool's (a
    /// transaction-pooling PgBouncer in front of the pool cannot LISTEN).
    pub listen_url: Option<DatabaseUrl>,
    /// How often the listener proves its connection alive with a round trip, and how long it
    /// waits for the answer before it reconnects.
    pub heartbeat: Duration,
}

/// A change to one incident as the change feed delivers it: what happened, the incident as it
/// is now (as read when dispatched: never older than the change, possibly newer), and as it was
/// just before the change (`None` when the change did not alter the incident's fields: a
/// creation, an event, a postmortem).
#[derive(Debug)]
pub struct Changed {
    pub kind: ChangeKind,
    pub incident: incident::Model,
    pub before: Option<incident::Model>,
    /// `workflow::awaiting_postmortem` of `incident`, and of the incident before the change.
    /// A postmortem change may be its creation, so before one the incident counts as having
    /// none: a subscriber to `awaitingPostmortem: true` sees the incident leave its filter.
    pub awaiting_postmortem: bool,
    pub was_awaiting_postmortem: bool,
    /// The people holding a role on the incident, and before the change.
    pub holders: Vec<Uuid>,
    pub was_holders: Vec<Uuid>,
}

/// What a subscriber's channel carries.
#[derive(Debug)]
pub enum Signal<T> {
    Item(Arc<T>),
    /// Signals sent before this moment may have been lost (a lost listener, an overflow, a
    /// failed read): re-read from your cursor, or tell your client to. Any read that starts
    /// after it will do, so the subscribers of one incident share one.
    Resync(Instant),
}

impl<T> Clone for Signal<T> {
    fn clone(&self) -> Self {
        match self {
            Signal::Item(item) => Signal::Item(item.clone()),
            Signal::Resync(at) => Signal::Resync(*at),
        }
    }
}

/// Which subscribers a resync concerns.
#[derive(Debug, Clone)]
enum Affected {
    All,
    Orgs(HashSet<Uuid>),
}

impl Affected {
    fn includes(&self, org: Uuid) -> bool {
        match self {
            Affected::All => true,
            Affected::Orgs(orgs) => orgs.contains(&org),
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Affected::All => "all",
            Affected::Orgs(_) => "organizations",
        }
    }
}

enum Input {
    /// What one transaction announced, in order, and when it reached this server.
    Committed(Vec<Announcement>, Instant),
    Resync(Affected),
}

/// Signals kept for a timeline subscriber that is behind; one further behind re-reads.
const TIMELINE_BUFFER: usize = 64;
/// Changes kept for an organization's change feed; a subscriber further behind is told
/// `SUBSCRIBER_LAGGED` (the feed cannot replay).
pub const FEED_BUFFER: usize = 1024;
/// Announcements the dispatcher reads in one round trip per kind of row.
const DISPATCH_BATCH: usize = 256;
/// The dispatcher's own connections: a busy request pool never delays the feed.
const DISPATCH_CONNECTIONS: u32 = 2;
/// Timeline subscribers reading from the database at once (start-up, after a resync): a
/// burst of thousands queues here instead of timing out on the request pool.
const REPLAY_CONCURRENCY: usize = 4;

const LISTEN_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// One server's end of the change feed: it receives commits (from NOTIFY on PostgreSQL, from
/// the writers themselves on SQLite) and hands them to subscribers.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
    input: mpsc::Sender<Input>,
    /// Whether commits are announced by PostgreSQL NOTIFY (true) or in-process (false).
    via_postgres: bool,
}

/// What the hub and its dispatcher share (the dispatcher holds no sender of its own queue, so
/// it ends when the last hub is dropped).
struct Inner {
    /// The request pool: subscribers' own reads (catching up from a cursor).
    db: Db,
    /// Set when an announcement was dropped on a full queue; the dispatcher re-syncs everyone.
    overflowed: AtomicBool,
    routes: Mutex<Routes>,
    replays: Semaphore,
    /// Timeline catch-up reads in flight, by (organization, incident, cursor), with when each
    /// was created: subscribers at the same place share one (see `feed.rs`).
    reads: Mutex<HashMap<ReadKey, (Instant, SharedRead)>>,
    /// Timeline subscriptions' tenancy checks in flight, by (organization, incident): the
    /// subscriptions of one incident that start together share one (see `feed.rs`).
    checks: Mutex<HashMap<(Uuid, Uuid), SharedCheck>>,
}

/// (organization, incident, cursor).
type ReadKey = (Uuid, Uuid, i64);
type SharedRead = futures_util::future::Shared<BoxFuture<'static, Option<Arc<read::EventBatch>>>>;
/// Whether the incident was found in the organization.
type SharedCheck = futures_util::future::Shared<BoxFuture<'static, bool>>;

/// The channels of the subscribers this server has: one per watched timeline, one per
/// organization with a change-feed subscriber. Channels nobody reads any more are swept.
#[derive(Default)]
struct Routes {
    timelines: HashMap<(Uuid, Uuid), broadcast::Sender<Signal<incident_event::Model>>>,
    feeds: HashMap<Uuid, broadcast::Sender<Signal<Changed>>>,
    swept_at: usize,
}

impl Routes {
    fn sweep_if_grown(&mut self) {
        let len = self.timelines.len() + self.feeds.len();
        if len > 2 * self.swept_at + 64 {
            self.timelines.retain(|_, tx| tx.receiver_count() > 0);
            self.feeds.retain(|_, tx| tx.receiver_count() > 0);
            self.swept_at = self.timelines.len() + self.feeds.len();
        }
    }

    fn timeline(
        &self,
        org: Uuid,
        incident: Uuid,
    ) -> Option<&broadcast::Sender<Signal<incident_event::Model>>> {
        self.timelines
            .get(&(org, incident))
            .filter(|tx| tx.receiver_count() > 0)
    }

    fn feed(&self, org: Uuid) -> Option<&broadcast::Sender<Signal<Changed>>> {
        self.feeds.get(&org).filter(|tx| tx.receiver_count() > 0)
    }
}

impl Hub {
    /// Starts the dispatcher, on connections of its own. On PostgreSQL, also starts the LISTEN
    /// bridge and waits (up to `LISTEN_READY_TIMEOUT`) until it listens, so no commit after
    /// start-up goes unheard.
    pub async fn start(db: Db, db_options: &DbOptions, options: LiveOptions) -> Hub {
        let (input, rx) = mpsc::channel(options.queue.max(1));
        let via_postgres = db.backend() == sea_orm::DatabaseBackend::Postgres;
        let hub = Hub {
            inner: Arc::new(Inner {
                db: db.clone(),
                overflowed: AtomicBool::new(false),
                routes: Mutex::new(Routes::default()),
                replays: Semaphore::new(REPLAY_CONCURRENCY),
                reads: Mutex::default(),
                checks: Mutex::default(),
            }),
            input,
            via_postgres,
        };
        let reader = dispatcher_db(&db, db_options).await;
        tokio::spawn(dispatch(hub.inner.clone(), reader, rx));
        if via_postgres {
            let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
            let wait = LISTEN_READY_TIMEOUT.min(options.heartbeat * 2);
            tokio::spawn(pg::listen(db, options, hub.clone(), ready_tx));
            if tokio::time::timeout(wait, ready_rx).await.is_err() {
                tracing::warn!("the change listener is not up yet; it keeps retrying");
            }
        }
        hub
    }

    /// What one committed transaction announced (in-process on SQLite, from NOTIFY on
    /// PostgreSQL). Never waits: on a full queue the announcement is dropped and counted, and
    /// the dispatcher re-syncs everyone once it catches up.
    fn publish(&self, announcements: Vec<Announcement>) {
        if announcements.is_empty() {
            return;
        }
        let n = announcements.len() as u64;
        metrics::counter!(crate::monitoring::CHANGES_PUBLISHED).increment(n);
        match self
            .input
            .try_send(Input::Committed(announcements, Instant::now()))
        {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!(DROPPED_METRIC).increment(n);
                self.inner.overflowed.store(true, Ordering::SeqCst);
            }
            // The dispatcher lives as long as the hub; it is gone only during shutdown.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// Every subscriber re-reads, after whatever is queued now.
    fn resync(&self) {
        self.resync_affected(Affected::All);
    }

    fn resync_affected(&self, affected: Affected) {
        if self.input.try_send(Input::Resync(affected)).is_err() {
            self.inner.overflowed.store(true, Ordering::SeqCst);
        }
    }

    /// The channel of one incident's timeline, as the scope sees it. Registered now, before
    /// the caller's first read, so nothing committed after that read goes unsignalled.
    fn timeline_signals(
        &self,
        scope: OrgScope,
        incident_id: Uuid,
    ) -> broadcast::Receiver<Signal<incident_event::Model>> {
        let mut routes = self.inner.routes.lock().expect("the routes lock");
        routes.sweep_if_grown();
        routes
            .timelines
            .entry((scope.org_id(), incident_id))
            .or_insert_with(|| broadcast::channel(TIMELINE_BUFFER).0)
            .subscribe()
    }

    /// The channel of an organization's change feed. Registered now.
    fn feed_signals(&self, scope: OrgScope) -> broadcast::Receiver<Signal<Changed>> {
        let mut routes = self.inner.routes.lock().expect("the routes lock");
        routes.sweep_if_grown();
        routes
            .feeds
            .entry(scope.org_id())
            .or_insert_with(|| broadcast::channel(FEED_BUFFER).0)
            .subscribe()
    }
}

impl Inner {
    fn send_resync(&self, affected: &Affected) {
        metrics::counter!(RESYNCS_METRIC, "scope" => affected.reason()).increment(1);
        let at = Instant::now();
        let routes = self.routes.lock().expect("the routes lock");
        for ((org, _), tx) in &routes.timelines {
            if affected.includes(*org) {
                let _ = tx.send(Signal::Resync(at));
            }
        }
        for (org, tx) in &routes.feeds {
            if affected.includes(*org) {
                let _ = tx.send(Signal::Resync(at));
            }
        }
    }
}

/// PostgreSQL: a NOTIFY inside the transaction reaches every replica's listener at commit.
/// SQLite (one process): published in-process right after the commit.
impl ChangeSink for Hub {
    fn within<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        announcements: &'a [Announcement],
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        if self.via_postgres {
            pg::notify(txn, announcements).boxed()
        } else {
            std::future::ready(Ok(())).boxed()
        }
    }

    fn committed(&self, announcements: Vec<Announcement>) {
        if !self.via_postgres {
            self.publish(announcements);
        }
    }
}

/// A small pool of the dispatcher's own, on the same database. An in-memory SQLite database
/// exists only in its own pool, so there the dispatcher shares the request pool.
async fn dispatcher_db(db: &Db, options: &DbOptions) -> Db {
    if options.url.expose().contains(":memory:") || options.url.expose().contains("mode=memory") {
        return db.clone();
    }
    let options = DbOptions {
        max_connections: DISPATCH_CONNECTIONS,
        ..options.clone()
    };
    match Db::connect_lazy(&options).await {
        Ok(own) => own,
        Err(e) => {
            tracing::warn!(error = %e, "the change feed shares the request pool");
            db.clone()
        }
    }
}

/// Drains the queue in batches: each batch is read in one round trip per kind of row and
/// handed to the channels of the subscribers it concerns, in commit order.
async fn dispatch(hub: Arc<Inner>, db: Db, mut rx: mpsc::Receiver<Input>) {
    let mut inputs = Vec::with_capacity(DISPATCH_BATCH);
    loop {
        if rx.recv_many(&mut inputs, DISPATCH_BATCH).await == 0 {
            return;
        }
        let mut batch = Vec::new();
        for input in inputs.drain(..) {
            match input {
                Input::Committed(list, at) => batch.extend(list.into_iter().map(|a| (a, at))),
                Input::Resync(affected) => {
                    deliver(&hub, &db, std::mem::take(&mut batch)).await;
                    hub.send_resync(&affected);
                }
            }
        }
        deliver(&hub, &db, batch).await;
        if hub.overflowed.swap(false, Ordering::SeqCst) {
            tracing::warn!("the change queue overflowed; every subscriber re-reads");
            hub.send_resync(&Affected::All);
        }
    }
}

async fn deliver(hub: &Inner, db: &Db, batch: Vec<(Announcement, Instant)>) {
    if batch.is_empty() {
        return;
    }
    // Only what somebody here listens to is read.
    let (mut incidents, mut events, mut audits) = (Vec::new(), Vec::new(), Vec::new());
    let wanted: Vec<(Announcement, Instant, bool, bool)> = {
        let routes = hub.routes.lock().expect("the routes lock");
        batch
            .into_iter()
            .filter_map(|(a, at)| {
                let feed = routes.feed(a.org_id).is_some();
                let timeline = a.kind == ChangeKind::EventAdded
                    && routes.timeline(a.org_id, a.incident_id).is_some();
                (feed || timeline).then_some((a, at, feed, timeline))
            })
            .collect()
    };
    let mut seen = HashSet::new();
    for (a, _, feed, timeline) in &wanted {
        let scope = OrgScope::new(a.org_id);
        if *feed && seen.insert((a.org_id, a.incident_id)) {
            incidents.push((scope, a.incident_id));
        }
        if let (true, Some(audit)) = (*feed, a.audit) {
            audits.push((scope, audit));
        }
        if let (true, Some(seq)) = (*timeline, a.sequence) {
            events.push((scope, a.incident_id, seq));
        }
    }
    if wanted.is_empty() {
        return;
    }
    let rows = match read::announced(db, &incidents, &events, &audits).await {
        Ok(rows) => rows,
        Err(e) => {
            // Only the organizations of this batch may have missed something.
            let orgs = wanted.iter().map(|(a, ..)| a.org_id).collect();
            tracing::warn!(error = %e, "the change feed could not read a batch; its organizations re-read");
            hub.send_resync(&Affected::Orgs(orgs));
            return;
        }
    };
    let incidents: HashMap<(Uuid, Uuid), incident::Model> = rows
        .incidents
        .into_iter()
        .map(|i| ((i.organization_id, i.id), i))
        .collect();
    let mut events: HashMap<(Uuid, Uuid, i64), incident_event::Model> = rows
        .events
        .into_iter()
        .map(|e| ((e.organization_id, e.incident_id, e.sequence), e))
        .collect();
    // Each update's "before": the incident as read, with this update and the later ones of
    // the batch undone, newest first (a filter over several fields then sees each update's
    // own before, not one mixed with its successors').
    let no_one: &[Uuid] = &[];
    let holders = |key: &(Uuid, Uuid)| rows.holders.get(key).map_or(no_one, Vec::as_slice);
    let mut befores: Vec<Option<incident::Model>> = vec![None; wanted.len()];
    let mut holders_before: Vec<Option<Vec<Uuid>>> = vec![None; wanted.len()];
    let mut undone: HashMap<(Uuid, Uuid), (incident::Model, Vec<Uuid>)> = HashMap::new();
    for (i, (a, _, feed, _)) in wanted.iter().enumerate().rev() {
        let key = (a.org_id, a.incident_id);
        let (true, Some(changes), Some(now)) = (
            *feed,
            a.audit.and_then(|id| rows.audits.get(&id)),
            incidents.get(&key),
        ) else {
            continue;
        };
        let (after, after_holders) = match undone.get(&key) {
            Some((model, people)) => (model, people.as_slice()),
            None => (now, holders(&key)),
        };
        let before = audit::before(after, changes);
        let was_holders = audit::holders_before(after_holders, changes);
        undone.insert(key, (before.clone(), was_holders.clone()));
        befores[i] = Some(before);
        holders_before[i] = Some(was_holders);
    }
    // Whether a postmortem exists, read only for the incidents whose answer depends on it.
    let mut asked = HashSet::new();
    let depends: Vec<(OrgScope, Uuid)> = wanted
        .iter()
        .zip(&befores)
        .filter(|((a, _, feed, _), before)| {
            *feed
                && incidents
                    .get(&(a.org_id, a.incident_id))
                    .into_iter()
                    .chain(before.as_ref())
                    .any(workflow::depends_on_postmortem)
        })
        .map(|((a, ..), _)| (OrgScope::new(a.org_id), a.incident_id))
        .filter(|(scope, id)| asked.insert((scope.org_id(), *id)))
        .collect();
    let with_postmortem = match read::with_postmortem(db, &depends).await {
        Ok(found) => found,
        Err(e) => {
            let orgs = wanted.iter().map(|(a, ..)| a.org_id).collect();
            tracing::warn!(error = %e, "the change feed could not read a batch; its organizations re-read");
            hub.send_resync(&Affected::Orgs(orgs));
            return;
        }
    };
    let routes = hub.routes.lock().expect("the routes lock");
    for (((a, at, feed, timeline), before), was_holders) in
        wanted.into_iter().zip(befores).zip(holders_before)
    {
        if feed
            && let (Some(tx), Some(now)) = (
                routes.feed(a.org_id),
                incidents.get(&(a.org_id, a.incident_id)),
            )
        {
            let has_postmortem = with_postmortem.contains(&(a.org_id, a.incident_id));
            let had_postmortem = has_postmortem && a.kind != ChangeKind::PostmortemUpdated;
            let was = before.as_ref().unwrap_or(now);
            let holders = holders(&(a.org_id, a.incident_id)).to_vec();
            let _ = tx.send(Signal::Item(Arc::new(Changed {
                kind: a.kind,
                incident: now.clone(),
                awaiting_postmortem: workflow::awaiting_postmortem(now, has_postmortem),
                was_awaiting_postmortem: workflow::awaiting_postmortem(was, had_postmortem),
                before,
                was_holders: was_holders.unwrap_or_else(|| holders.clone()),
                holders,
            })));
        }
        if timeline && let Some(tx) = routes.timeline(a.org_id, a.incident_id) {
            let event = a
                .sequence
                .and_then(|seq| events.remove(&(a.org_id, a.incident_id, seq)));
            let _ = match event {
                Some(event) => tx.send(Signal::Item(Arc::new(event))),
                // Announced but not read back: its subscribers re-read from their cursors.
                None => tx.send(Signal::Resync(Instant::now())),
            };
        }
        metrics::histogram!(LAG_METRIC).record(at.elapsed().as_secs_f64());
    }
}
