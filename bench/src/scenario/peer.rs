//! `--peer`: the three read pages against PostGraphile 5 (`bench/peer/`) on the same database,
//! alternating with incidentd phase by phase (incidentd, peer, incidentd, peer, …), so both
//! meet the same machine load; then each side's throughput and latency, and their ratio.
//!
//! The peer has no authentication: each of its queries names the organization in a
//! `condition` (or in the lookup's key), so it reads the same rows incidentd's scope reads.

use rand::Rng;
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::read::{DETAIL_EVENTS, LIST_EVENTS, LIST_PAGE, Page, ServerRead};
use super::{MetricsProbe, RunOptions, Scenario};
use crate::client::Gql;
use crate::db::Pool;
use crate::drive::{NoProbe, Phase, Worker, drive};
use crate::stats::Summary;
use crate::world::{Org, World};

/// Where the peer serves, and how many rounds each page runs on each side.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// The peer's base URL (its endpoint is `<url>/graphql`).
    pub url: String,
    /// The peer's process id (the Node process), for its CPU time.
    pub pid: Option<u32>,
    /// Phases per side; 2 runs incidentd, peer, incidentd, peer.
    pub rounds: usize,
}

// The same columns incidentd's pages ask for, in PostGraphile's names (`rowId` is the
// table's `id`: PostGraphile's `id` is its global node id). incidentd also answers
// `allowedTransitions`, which the peer has no way to compute.
const INCIDENT_FIELDS: &str = "rowId title status severity linkedTicketIds linkedProblemId \
     startedAt resolvedAt createdBy createdAt updatedAt";
const EVENT_FIELDS: &str = "rowId sequence eventType content createdBy createdAt";
const POSTMORTEM_FIELDS: &str = "rowId impactSummary rootCause timeline whatWentWell \
     whatWentWrong actionItems publicSummary internalNotes createdBy createdAt updatedAt";
/// incidentd's order: newest first.
const ORDER: &str = "orderBy: [CREATED_AT_DESC, ROW_ID_DESC]";

/// The list page on the peer: 50 incidents of one organization, each with its first 20 events
/// and its postmortem (a list of at most one: the postmortem's key is the incident alone, its
/// reference the organization and the incident).
pub fn list_query() -> String {
    format!(
        "query List($org: UUID!) {{ allIncidentRecords(condition: {{ organizationId: $org }}, {ORDER}, first: {LIST_PAGE}) {{ \
         pageInfo {{ hasNextPage endCursor }} nodes {{ {INCIDENT_FIELDS} \
         incidentEventsByOrganizationIdAndIncidentId(first: {LIST_EVENTS}, orderBy: SEQUENCE_ASC) {{ nodes {{ {EVENT_FIELDS} }} }} \
         incidentPostmortemsByOrganizationIdAndIncidentId(first: 1) {{ nodes {{ {POSTMORTEM_FIELDS} }} }} }} }} }}"
    )
}

/// The board on the peer: 50 incidents, flat, with the organization's total.
pub fn board_query() -> String {
    format!(
        "query Board($org: UUID!) {{ allIncidentRecords(condition: {{ organizationId: $org }}, {ORDER}, first: {LIST_PAGE}) {{ \
         totalCount pageInfo {{ hasNextPage endCursor }} nodes {{ \
         rowId title status severity linkedTicketIds startedAt resolvedAt updatedAt }} }} }}"
    )
}

/// One incident on the peer, looked up by (organization, id), with its timeline and postmortem.
pub fn detail_query() -> String {
    format!(
        "query Detail($org: UUID!, $id: UUID!) {{ incidentRecordByOrganizationIdAndRowId(organizationId: $org, rowId: $id) {{ \
         {INCIDENT_FIELDS} \
         incidentEventsByOrganizationIdAndIncidentId(first: {DETAIL_EVENTS}, orderBy: SEQUENCE_ASC) {{ nodes {{ {EVENT_FIELDS} }} }} \
         incidentPostmortemsByOrganizationIdAndIncidentId(first: 1) {{ nodes {{ {POSTMORTEM_FIELDS} }} }} }} }}"
    )
}

/// One worker on the peer: the page of its organization (a random incident of it for the
/// detail), one request at a time: incidentd's worker with the peer's query.
pub struct PeerRead {
    read: ServerRead,
    org: Uuid,
}

impl PeerRead {
    pub fn new(gql: Gql, page: Page, org: &Org, seed: u64) -> PeerRead {
        let mut read = ServerRead::new(gql, page, org, seed);
        read.query = match page {
            Page::List => list_query(),
            Page::Board => board_query(),
            Page::Detail => detail_query(),
        }
        .into();
        PeerRead { read, org: org.id }
    }
}

impl Worker for PeerRead {
    async fn step(&mut self) -> Result<u64, String> {
        let r = &mut self.read;
        let variables = match r.page {
            Page::Detail => {
                let id = r.incidents[r.rng.random_range(0..r.incidents.len())];
                json!({ "org": self.org, "id": id })
            }
            _ => json!({ "org": self.org }),
        };
        r.gql.check(&r.query, &variables).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Incidentd,
    Peer,
}

/// The order of a page's phases: incidentd first, then the sides in turn.
pub fn schedule(rounds: usize) -> Vec<Side> {
    (0..rounds.max(1))
        .flat_map(|_| [Side::Incidentd, Side::Peer])
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct SidePhase {
    pub side: Side,
    pub summary: Summary,
    /// CPU milliseconds of that side's process per request, when its pid was given.
    pub cpu_ms_per_request: Option<f64>,
}

/// One side over all its phases.
#[derive(Debug, Clone, Serialize)]
pub struct SideTotal {
    pub requests: u64,
    pub errors: u64,
    /// Requests over the measured seconds of all its phases.
    pub throughput: f64,
    /// Means of the phases' percentiles.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_bytes: f64,
    pub cpu_ms_per_request: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PeerReport {
    pub scenario: Scenario,
    pub phases: Vec<SidePhase>,
    pub incidentd: SideTotal,
    pub peer: SideTotal,
    /// incidentd's throughput ÷ the peer's.
    pub ratio: Option<f64>,
}

pub fn total(phases: &[SidePhase], side: Side) -> SideTotal {
    let mine: Vec<&SidePhase> = phases.iter().filter(|p| p.side == side).collect();
    let n = mine.len().max(1) as f64;
    let requests: u64 = mine.iter().map(|p| p.summary.requests).sum();
    let seconds: f64 = mine.iter().map(|p| p.summary.seconds).sum();
    let ok: u64 = mine
        .iter()
        .map(|p| p.summary.requests - p.summary.errors)
        .sum();
    let bytes: f64 = mine
        .iter()
        .map(|p| p.summary.mean_bytes * (p.summary.requests - p.summary.errors) as f64)
        .sum();
    let cpu: Vec<(f64, u64)> = mine
        .iter()
        .filter_map(|p| p.cpu_ms_per_request.map(|c| (c, p.summary.requests)))
        .collect();
    let cpu_requests: u64 = cpu.iter().map(|(_, r)| r).sum();
    SideTotal {
        requests,
        errors: mine.iter().map(|p| p.summary.errors).sum(),
        throughput: if seconds > 0.0 {
            requests as f64 / seconds
        } else {
            0.0
        },
        p50_ms: mine.iter().map(|p| p.summary.p50_ms).sum::<f64>() / n,
        p99_ms: mine.iter().map(|p| p.summary.p99_ms).sum::<f64>() / n,
        mean_bytes: if ok > 0 { bytes / ok as f64 } else { 0.0 },
        cpu_ms_per_request: (!cpu.is_empty() && cpu.len() == mine.len() && cpu_requests > 0)
            .then(|| cpu.iter().map(|(c, r)| c * *r as f64).sum::<f64>() / cpu_requests as f64),
    }
}

fn cpu_ms_per_request(phase: &Phase) -> Option<f64> {
    let requests = phase.summary.requests as f64;
    phase
        .server
        .cpu_seconds
        .filter(|_| requests > 0.0)
        .map(|s| s * 1000.0 / requests)
}

/// Runs one read page on both sides in turn. The workers are the same organizations and
/// seeds on both sides, so each side asks for the same pages.
pub async fn run(
    scenario: Scenario,
    pool: &Pool,
    opts: &RunOptions,
    peer: &PeerOptions,
) -> anyhow::Result<PeerReport> {
    let page = match scenario {
        Scenario::List => Page::List,
        Scenario::Board => Page::Board,
        Scenario::Detail => Page::Detail,
        other => anyhow::bail!("{} has no peer page", other.name()),
    };
    let world = World::load(pool, opts.credentials.token_org()).await?;
    anyhow::ensure!(!world.orgs.is_empty(), "the database has no incidents");
    let org_of = |w: usize| &world.orgs[w % world.orgs.len()];
    let seed = |w: usize| opts.seed.wrapping_mul(1_000_003).wrapping_add(w as u64);
    let probe = MetricsProbe(opts.url.clone());
    let mut phases = Vec::new();
    for (round, side) in schedule(peer.rounds).into_iter().enumerate() {
        eprintln!("  {} phase {}: {side:?}", scenario.name(), round + 1);
        let phase = match side {
            Side::Incidentd => {
                let workers = (0..opts.connections)
                    .map(|w| {
                        let org = org_of(w);
                        let gql = Gql::new(&opts.url, &opts.credentials.token(org.id, org.user)?)?;
                        Ok(ServerRead::new(gql, page, org, seed(w)))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                drive(workers, opts.warmup, opts.duration, opts.server_pid, &probe).await
            }
            Side::Peer => {
                let workers = (0..opts.connections)
                    .map(|w| {
                        Ok(PeerRead::new(
                            Gql::anonymous(&peer.url)?,
                            page,
                            org_of(w),
                            seed(w),
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                drive(workers, opts.warmup, opts.duration, peer.pid, &NoProbe).await
            }
        };
        phases.push(SidePhase {
            side,
            cpu_ms_per_request: cpu_ms_per_request(&phase),
            summary: phase.summary,
        });
    }
    let incidentd = total(&phases, Side::Incidentd);
    let peer_total = total(&phases, Side::Peer);
    Ok(PeerReport {
        scenario,
        ratio: (peer_total.throughput > 0.0).then(|| incidentd.throughput / peer_total.throughput),
        phases,
        incidentd,
        peer: peer_total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(requests: u64, seconds: f64, p50: f64, p99: f64) -> Summary {
        Summary {
            requests,
            errors: 0,
            error_kinds: Default::default(),
            seconds,
            throughput: requests as f64 / seconds,
            p50_ms: p50,
            p90_ms: p99,
            p99_ms: p99,
            max_ms: p99,
            mean_bytes: 100.0,
        }
    }

    #[test]
    fn the_sides_alternate_starting_with_incidentd() {
        use Side::*;
        assert_eq!(schedule(2), [Incidentd, Peer, Incidentd, Peer]);
        assert_eq!(schedule(0), [Incidentd, Peer]);
    }

    #[test]
    fn a_side_totals_its_own_phases_only() {
        let phase = |side, requests, p99, cpu| SidePhase {
            side,
            summary: summary(requests, 10.0, 1.0, p99),
            cpu_ms_per_request: cpu,
        };
        let phases = [
            phase(Side::Incidentd, 1000, 10.0, Some(1.0)),
            phase(Side::Peer, 400, 40.0, None),
            phase(Side::Incidentd, 3000, 30.0, Some(2.0)),
            phase(Side::Peer, 600, 60.0, None),
        ];
        let ours = total(&phases, Side::Incidentd);
        assert_eq!(ours.requests, 4000);
        assert!((ours.throughput - 200.0).abs() < 1e-9);
        assert!((ours.p99_ms - 20.0).abs() < 1e-9);
        // Weighted by requests: (1 × 1000 + 2 × 3000) / 4000.
        assert!((ours.cpu_ms_per_request.unwrap() - 1.75).abs() < 1e-9);
        let theirs = total(&phases, Side::Peer);
        assert!((theirs.throughput - 50.0).abs() < 1e-9);
        assert_eq!(theirs.cpu_ms_per_request, None);
    }

    #[test]
    fn every_peer_query_names_the_organization() {
        for query in [list_query(), board_query(), detail_query()] {
            assert!(
                query.contains("organizationId: $org"),
                "unscoped peer query: {query}"
            );
        }
    }
}
