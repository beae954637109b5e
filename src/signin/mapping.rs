//! What an ID token's claims make of a person here: the organization (one for everyone, or a
//! claim holding its UUID) and the role (`--oidc-role-map` over `--oidc-role-claim`).

use std::str::FromStr;

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::incident::identity::Role;

/// `value=role,…` with `*=role` as the fallback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap {
    entries: Vec<(String, Role)>,
    fallback: Option<Role>,
}

impl FromStr for RoleMap {
    type Err = String;

    fn from_str(text: &str) -> Result<RoleMap, String> {
        let mut map = RoleMap {
            entries: vec![],
            fallback: None,
        };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (value, role) = entry
                .rsplit_once('=')
                .ok_or_else(|| format!("`{entry}` is not `value=role`"))?;
            let role = <Role as clap::ValueEnum>::from_str(role.trim(), true)
                .map_err(|_| format!("`{role}` is not viewer, responder or admin"))?;
            match value.trim() {
                "" => return Err(format!("`{entry}` names no value")),
                "*" => map.fallback = Some(role),
                value => map.entries.push((value.to_string(), role)),
            }
        }
        if map.entries.is_empty() && map.fallback.is_none() {
            return Err("the role map is empty".into());
        }
        Ok(map)
    }
}

impl RoleMap {
    /// The highest role any of `values` maps to; the fallback when none does.
    pub fn role<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        values
            .into_iter()
            .flat_map(|value| {
                self.entries
                    .iter()
                    .filter(move |(v, _)| v == value)
                    .map(|(_, role)| *role)
            })
            .max()
            .or(self.fallback)
    }
}

/// Where a signed-in person's organization comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrgSource {
    Fixed(Uuid),
    Claim(String),
}

/// Why claims map to nobody here; the reason the sign-in page shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmapped {
    NoOrganization,
    NoRole,
}

/// The organization and role `claims` give, or why they give none.
pub fn map_claims(
    claims: &Map<String, Value>,
    org: &OrgSource,
    role_claim: &str,
    roles: &RoleMap,
) -> Result<(Uuid, Role), Unmapped> {
    let org_id = match org {
        OrgSource::Fixed(id) => *id,
        OrgSource::Claim(name) => claims
            .get(name)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s.trim()).ok())
            .ok_or(Unmapped::NoOrganization)?,
    };
    let values: Vec<&str> = match claims.get(role_claim) {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let role = roles.role(values).ok_or(Unmapped::NoRole)?;
    Ok((org_id, role))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(text: &str) -> RoleMap {
        text.parse().unwrap()
    }

    #[test]
    fn the_highest_matching_role_wins_and_the_fallback_only_without_a_match() {
        let roles = map("sre-admins=admin, oncall=responder, *=viewer");
        assert_eq!(roles.role(["oncall", "sre-admins"]), Some(Role::Admin));
        assert_eq!(roles.role(["oncall"]), Some(Role::Responder));
        assert_eq!(roles.role(["marketing"]), Some(Role::Viewer));
        assert_eq!(map("oncall=responder").role(["marketing"]), None);
        assert!("oncall".parse::<RoleMap>().is_err());
        assert!("oncall=owner".parse::<RoleMap>().is_err());
        assert!("".parse::<RoleMap>().is_err());
    }

    #[test]
    fn claims_give_an_organization_and_a_role_or_the_reason_why_not() {
        let org = Uuid::new_v4();
        let roles = map("oncall=responder");
        let claims = |v: Value| v.as_object().unwrap().clone();
        let by_claim = OrgSource::Claim("org".into());
        assert_eq!(
            map_claims(
                &claims(json!({ "org": org.to_string(), "groups": ["oncall"] })),
                &by_claim,
                "groups",
                &roles
            ),
            Ok((org, Role::Responder))
        );
        assert_eq!(
            map_claims(
                &claims(json!({ "groups": "oncall" })),
                &OrgSource::Fixed(org),
                "groups",
                &roles
            ),
            Ok((org, Role::Responder))
        );
        assert_eq!(
            map_claims(
                &claims(json!({ "groups": ["oncall"] })),
                &by_claim,
                "groups",
                &roles
            ),
            Err(Unmapped::NoOrganization)
        );
        assert_eq!(
            map_claims(
                &claims(json!({ "org": "not-a-uuid", "groups": ["oncall"] })),
                &by_claim,
                "groups",
                &roles
            ),
            Err(Unmapped::NoOrganization)
        );
        assert_eq!(
            map_claims(
                &claims(json!({ "org": org.to_string(), "groups": ["x"] })),
                &by_claim,
                "groups",
                &roles
            ),
            Err(Unmapped::NoRole)
        );
    }
}
