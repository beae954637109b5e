//! Choosing the incidents: which ones are written to (hot), which one arms `incidentChanged`
//! (the canary), and which subscriber follows what, grouped onto connections.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use uuid::Uuid;

use super::FanoutOptions;
use super::connection::{Sub, Target};
use crate::client::Credentials;
use crate::world::World;

/// Who subscribes to what, decided before anything connects.
pub(super) struct Plan {
    /// Per organization: its hot incidents, each with its last sequence before the run.
    pub hot: Vec<Vec<(Uuid, i32)>>,
    /// Per organization: the incident written only to arm `incidentChanged`, if it has one.
    pub canaries: Vec<Option<Uuid>>,
    /// Per organization: the token its subscribers and writers use.
    pub tokens: Vec<String>,
    /// Connections other than the stalled one.
    pub connections: usize,
    /// `incidentChanged` subscribers among `opts.subscribers`.
    pub n_changed: usize,
    /// Every subscription's organization and target, the stalled connection's included.
    pub targets: Vec<(usize, Target)>,
    /// `incidentChanged` subscriptions among `targets`.
    pub changed_total: usize,
}

/// The plan, and the subscriptions of each connection (the stalled connection, if any, last).
pub(super) fn choose(
    world: &World,
    credentials: &Credentials,
    opts: &FanoutOptions,
) -> anyhow::Result<(Plan, Vec<Vec<Sub>>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // Hot incidents: the newest `hot_per_org` of each organization that are not closed; the
    // next one is the organization's canary, written only to arm `incidentChanged`.
    let open: Vec<Vec<(Uuid, i32)>> = world
        .orgs
        .iter()
        .map(|o| {
            o.incidents
                .iter()
                .filter(|i| i.status != "CLOSED")
                .take(opts.hot_per_org.max(1) + 1)
                .map(|i| (i.id, i.last_sequence))
                .collect()
        })
        .collect();
    let hot: Vec<Vec<(Uuid, i32)>> = open
        .iter()
        .map(|l| l.iter().take(opts.hot_per_org.max(1)).copied().collect())
        .collect();
    let canaries: Vec<Option<Uuid>> = open
        .iter()
        .map(|l| l.get(opts.hot_per_org.max(1)).map(|(id, _)| *id))
        .collect();
    anyhow::ensure!(
        hot.iter().all(|h| !h.is_empty()),
        "every organization needs an incident that is not closed"
    );

    // Subscriber i: organization i mod n; a changed subscriber every 1/share, the rest on a
    // hot incident of their organization in turn.
    let n_changed = (opts.subscribers as f64 * opts.changed_share).round() as usize;
    let mut subs = Vec::with_capacity(opts.subscribers);
    for i in 0..opts.subscribers {
        let org = i % world.orgs.len();
        let changed = n_changed > 0
            && (i * n_changed) / opts.subscribers != ((i + 1) * n_changed) / opts.subscribers;
        let target = if changed {
            Target::Changed
        } else {
            let (incident, cursor) = hot[org][rng.random_range(0..hot[org].len())];
            Target::Events { incident, cursor }
        };
        subs.push(Sub {
            org,
            target,
            canary: canaries[org],
        });
    }
    let tokens: Vec<String> = world
        .orgs
        .iter()
        .map(|o| credentials.token(o.id, o.user))
        .collect::<anyhow::Result<_>>()?;

    let per = opts.per_connection.clamp(1, 100);
    let mut groups: Vec<Vec<Sub>> = group_by_org(subs, per);
    let connections = groups.len();
    // The stalled connection comes last, on the first organization.
    let stalled_subs = match &opts.stall {
        Some(_) => opts.stall_subscriptions.clamp(1, 100),
        None => 0,
    };
    if stalled_subs > 0 {
        groups.push(
            (0..stalled_subs)
                .map(|k| Sub {
                    org: 0,
                    target: if k == 0 {
                        Target::Changed
                    } else {
                        let (incident, cursor) = hot[0][(k - 1) % hot[0].len()];
                        Target::Events { incident, cursor }
                    },
                    canary: canaries[0],
                })
                .collect(),
        );
    }
    let targets: Vec<(usize, Target)> = groups
        .iter()
        .flatten()
        .map(|s| (s.org, s.target.clone()))
        .collect();
    let changed_total = targets
        .iter()
        .filter(|(_, t)| matches!(t, Target::Changed))
        .count();
    let plan = Plan {
        hot,
        canaries,
        tokens,
        connections,
        n_changed,
        targets,
        changed_total,
    };
    Ok((plan, groups))
}

/// Groups subscribers onto connections: a connection carries one organization's subscribers
/// (its token is that organization's), at most `per` of them.
fn group_by_org(subs: Vec<Sub>, per: usize) -> Vec<Vec<Sub>> {
    let mut by_org: BTreeMap<usize, Vec<Sub>> = BTreeMap::new();
    for s in subs {
        by_org.entry(s.org).or_default().push(s);
    }
    let mut out = Vec::new();
    for (_, list) in by_org {
        let mut list = list.into_iter().peekable();
        while list.peek().is_some() {
            out.push(list.by_ref().take(per).collect());
        }
    }
    out
}
