//! The people directory: who a person is (name, email) as their identity provider or their
//! bearer token last said, and the stable id a signed-in person gets from issuer and subject.

use sea_orm::{ActiveValue::Set, ConnectionTrait};
use uuid::Uuid;

use super::OrgScope;
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
