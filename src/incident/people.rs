//! The people directory: who a person is (name, email) as their identity provider or their
//! bearer token last said, and the stable id a signed-in person gets from issuer and subject.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use lru::LruCache;
use sea_orm::{ActiveValue::Set, ConnectionTrait};
use uuid::Uuid;

use super::OrgScope;
use super::identity::Principal;
use crate::db::Db;
use crate::entity::person;
use crate::error::AppResult;

/// What an identity says about a person; `None` fields are stored as unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonClaims {
    pub id: Uuid,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl PersonClaims {
    /// A person known by their identity provider's issuer and subject. Subjects are not UUIDs
    /// (and two providers may reuse one), so the id is UUIDv5 (URL namespace) of `issuer|sub`:
    /// the same person keeps the same id at every sign-in.
    pub fn signed_in(
        issuer: &str,
        subject: &str,
        name: Option<String>,
        email: Option<String>,
    ) -> PersonClaims {
        PersonClaims {
            id: person_id(issuer, subject),
            issuer: Some(issuer.to_string()),
            subject: Some(subject.to_string()),
            name: clean(name, 200),
            email: clean(email, 320),
        }
    }
}

impl PersonClaims {
    /// What a bearer token says about its subject, when it says anything (a `name` or an
    /// `email` claim): the token's `sub` is the person's id.
    pub fn from_token(
        subject: Uuid,
        issuer: Option<String>,
        name: Option<String>,
        email: Option<String>,
    ) -> Option<PersonClaims> {
        let (name, email) = (clean(name, 200), clean(email, 320));
        if name.is_none() && email.is_none() {
            return None;
        }
        Some(PersonClaims {
            id: subject,
            issuer: clean(issuer, 500),
            subject: Some(subject.to_string()),
            name,
            email,
        })
    }
}

pub fn person_id(issuer: &str, subject: &str) -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("{issuer}|{subject}").as_bytes(),
    )
}

/// Records the person in the organization's directory, or refreshes them.
#[tracing::instrument(skip(db))]
pub async fn remember<C: ConnectionTrait>(
    db: &C,
    scope: OrgScope,
    claims: &PersonClaims,
) -> AppResult<()> {
    let now = super::now();
    let row = person::ActiveModel {
        organization_id: Set(scope.org_id()),
        id: Set(claims.id),
        issuer: Set(claims.issuer.clone()),
        subject: Set(claims.subject.clone()),
        name: Set(claims.name.clone()),
        email: Set(claims.email.clone()),
        created_at: Set(now),
        updated_at: Set(now),
    };
    scope.upsert_person(db, row).await?;
    Ok(())
}

/// Adds a writer to the directory unless they are in it (a person without a name yet), so a
/// role can name them; what the directory already knows of them stays as it is.
pub async fn ensure<C: ConnectionTrait>(db: &C, scope: OrgScope, id: Uuid) -> AppResult<()> {
    let now = super::now();
    let row = person::ActiveModel {
        organization_id: Set(scope.org_id()),
        id: Set(id),
        issuer: Set(None),
        subject: Set(None),
        name: Set(None),
        email: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    };
    scope.insert_person_if_absent(db, row).await?;
    Ok(())
}

/// The directory as bearer tokens fill it. A token carries its person's name and email on
/// every request; writing them each time would make every read a write. This remembers, per
/// (organization, person), what was written last, and writes only what changed: a caller
/// costs one write per replica until their token says something new. Bounded: a person
/// forgotten here is written once more when next seen.
pub struct Directory {
    written: Mutex<LruCache<(Uuid, Uuid), Arc<PersonClaims>>>,
}

impl Directory {
    const ENTRIES: NonZeroUsize = NonZeroUsize::new(10_000).expect("not zero");

    pub fn new() -> Directory {
        Directory {
            written: Mutex::new(LruCache::new(Self::ENTRIES)),
        }
    }

    fn known(&self, key: (Uuid, Uuid), claims: &PersonClaims) -> bool {
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        written.get(&key).is_some_and(|last| **last == *claims)
    }

    /// Records what the caller's credentials say about them, unless that was written already.
    pub async fn recognize(&self, db: &Db, principal: &Principal) -> AppResult<()> {
        let Some(claims) = &principal.person else {
            return Ok(());
        };
        let key = (principal.org_id, claims.id);
        if self.known(key, claims) {
            return Ok(());
        }
        let txn = db.begin_write().await?;
        remember(&*txn, principal.scope(), claims).await?;
        txn.commit().await?;
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, claims.clone());
        Ok(())
    }
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new()
    }
}

/// Trims, drops empty values, and cuts to the column's length on a character boundary: what a
/// provider sends is not ours to refuse, but it must fit.
fn clean(value: Option<String>, max_chars: usize) -> Option<String> {
    let value = value?;
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return None;
    }
    Some(trimmed.chars().take(max_chars).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_person_keeps_their_id_across_sign_ins_and_providers_do_not_collide() {
        let a = person_id("https://idp.example", "alice");
        assert_eq!(a, person_id("https://idp.example", "alice"));
        assert_ne!(a, person_id("https://other.example", "alice"));
        assert_ne!(a, person_id("https://idp.example", "bob"));
        assert_eq!(a.get_version_num(), 5);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        let p = PersonClaims::signed_in("i", "s", Some("  Ada  ".into()), Some(" ".into()));
        assert_eq!(p.name.as_deref(), Some("Ada"));
        assert_eq!(p.email, None);
        let long = PersonClaims::signed_in("i", "s", Some("é".repeat(300)), None);
        assert_eq!(long.name.unwrap().chars().count(), 200);
    }
}
