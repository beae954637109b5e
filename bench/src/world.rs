//! What the scenarios work on: the organizations and incidents in the database, read once.

use std::collections::BTreeMap;

use sea_orm::sqlx::{self, Row};
use uuid::Uuid;

use crate::db::Pool;
use crate::with_pool;

#[derive(Debug, Clone)]
pub struct Incident {
    pub id: Uuid,
    pub status: String,
    pub severity: String,
    pub last_sequence: i32,
}

#[derive(Debug, Clone)]
pub struct Org {
    pub id: Uuid,
    /// The user the bench acts as in this organization (any id will do: tokens name it).
    pub user: Uuid,
    /// Newest first, as the lists show them.
    pub incidents: Vec<Incident>,
}

#[derive(Debug, Clone)]
pub struct World {
    pub orgs: Vec<Org>,
}

impl World {
    /// Every organization with incidents (or only `only`), in a stable order.
    pub async fn load(pool: &Pool, only: Option<Uuid>) -> anyhow::Result<World> {
        let rows: Vec<(Uuid, Uuid, String, String, i64)> = with_pool!(pool, |p, _D| {
            let rows = sqlx::query(
                "SELECT i.id, i.organization_id, CAST(i.status AS TEXT), CAST(i.severity AS TEXT), \
                 COALESCE((SELECT MAX(e.sequence) FROM incident_events e WHERE e.incident_id = i.id), 0) \
                 FROM incident_records i ORDER BY i.organization_id, i.created_at DESC, i.id DESC",
            )
            .fetch_all(p)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get(1)?,
                        r.try_get(2)?,
                        r.try_get(3)?,
                        r.try_get::<i64, _>(4)
                            .or_else(|_| r.try_get::<i32, _>(4).map(i64::from))?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        let mut orgs: BTreeMap<Uuid, Vec<Incident>> = BTreeMap::new();
        for (id, org, status, severity, last) in rows {
            if only.is_some_and(|o| o != org) {
                continue;
            }
            orgs.entry(org).or_default().push(Incident {
                id,
                status,
                severity,
                last_sequence: last as i32,
            });
        }
        anyhow::ensure!(
            !orgs.is_empty(),
            "no incidents in the database: run `incidentd-bench seed` first"
        );
        Ok(World {
            orgs: orgs
                .into_iter()
                .map(|(id, incidents)| Org {
                    id,
                    user: Uuid::from_u128(id.as_u128() ^ 0xbe7c_0000_0000_0000_0000_0000_0000_0001),
                    incidents,
                })
                .collect(),
        })
    }

    pub fn incidents(&self) -> usize {
        self.orgs.iter().map(|o| o.incidents.len()).sum()
    }
}

/// The last sequence of each incident in `ids` (0 for one without events).
pub async fn last_sequences(
    pool: &Pool,
    ids: &[Uuid],
) -> anyhow::Result<std::collections::HashMap<Uuid, i32>> {
    let mut out: std::collections::HashMap<Uuid, i32> = ids.iter().map(|id| (*id, 0)).collect();
    for chunk in ids.chunks(500) {
        let sql = pool.sql(&format!(
            "SELECT incident_id, MAX(sequence) FROM incident_events WHERE incident_id IN ({}) GROUP BY incident_id",
            crate::db::placeholders(1, chunk.len())
        ));
        let rows: Vec<(Uuid, i64)> = with_pool!(pool, |p, _D| {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(&*sql));
            for id in chunk {
                q = q.bind(*id);
            }
            q.fetch_all(p)
                .await?
                .iter()
                .map(|r| {
                    Ok((
                        r.try_get(0)?,
                        r.try_get::<i64, _>(1)
                            .or_else(|_| r.try_get::<i32, _>(1).map(i64::from))?,
                    ))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?
        });
        for (id, max) in rows {
            out.insert(id, max as i32);
        }
    }
    Ok(out)
}
