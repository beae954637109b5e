//! Who is acting: the caller a transport authenticated (`Principal`), what its role allows, and
//! the `Writer` capability that every write of the domain requires.

use std::sync::Arc;

use uuid::Uuid;

use super::OrgScope;
use super::people::PersonClaims;
use crate::error::{AppError, AppResult};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
    async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
#[graphql(rename_items = "lowercase")]
pub enum Role {
    Viewer,
    Responder,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub org_id: Uuid,
    pub role: Role,
    /// The token's `exp` (seconds since the epoch): long-lived connections close then.
    pub expires_at: u64,
    /// What the credentials say about the person (name, email), when they say anything: the
    /// directory is filled from it. Shared, so a principal stays cheap to clone.
    pub person: Option<Arc<PersonClaims>>,
}

/// What a responder (or admin) may do: write. Only `Principal::writer` makes one.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    pub user_id: Uuid,
    pub scope: OrgScope,
}

impl Role {
    /// The name tokens, sessions and the API give the role (lowercase, as serde and clap spell it).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

impl Principal {
    pub fn scope(&self) -> OrgScope {
        OrgScope::new(self.org_id)
    }

    pub fn writer(&self) -> AppResult<Writer> {
        if self.role >= Role::Responder {
            Ok(Writer {
                user_id: self.user_id,
                scope: self.scope(),
            })
        } else {
            Err(AppError::Forbidden(
                "this needs the responder or admin role".into(),
            ))
        }
    }

    pub fn require_admin(&self) -> AppResult<()> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AppError::Forbidden("this needs the admin role".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn a_roles_name_is_the_one_serde_and_clap_use() {
        for role in [Role::Viewer, Role::Responder, Role::Admin] {
            assert_eq!(serde_json::to_value(role).unwrap(), role.as_str());
            let parsed = <Role as clap::ValueEnum>::from_str(role.as_str(), false).unwrap();
            assert_eq!(parsed, role);
        }
    }
}
