//! The incident workflow, all of it:
//!
//! ```text
//! OPEN ──► MITIGATING ──► RESOLVED ──► CLOSED (final)
//!   └──────────────────────►┘
//! RESOLVED ─► OPEN | MITIGATING (reopen: a note is required)
//! ```
//! CLOSED needs a postmortem when the severity is SEV1 or SEV2.

use chrono::{DateTime, Utc};

use crate::entity::{Severity, Status, incident};
use crate::error::{AppError, AppResult};

pub fn allowed_from(status: Status) -> &'static [Status] {
    match status {
        Status::Open => &[Status::Mitigating, Status::Resolved],
        Status::Mitigating => &[Status::Resolved],
        Status::Resolved => &[Status::Closed, Status::Open, Status::Mitigating],
        Status::Closed => &[],
    }
}

pub fn is_reopen(from: Status, to: Status) -> bool {
    from == Status::Resolved && matches!(to, Status::Open | Status::Mitigating)
}

pub fn needs_postmortem(severity: Severity) -> bool {
    matches!(severity, Severity::Sev1 | Severity::Sev2)
}

/// What the workflow allows from here, now: `allowed_from` minus CLOSED while a required postmortem is missing.
pub fn allowed_now(status: Status, severity: Severity, has_postmortem: bool) -> Vec<Status> {
    allowed_from(status)
        .iter()
        .copied()
        .filter(|to| *to != Status::Closed || has_postmortem || !needs_postmortem(severity))
        .collect()
}

/// The effect of a transition on the incident's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransitionPlan {
    pub from: Status,
    pub to: Status,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Checks a transition; `Ok(None)` means "already there": nothing to do, nothing to record.
pub fn plan_transition(
    incident: &incident::Model,
    to: Status,
    note: Option<&str>,
    has_postmortem: bool,
    now: DateTime<Utc>,
) -> AppResult<Option<TransitionPlan>> {
    let (status, severity) = (incident.status, incident.severity);
    if status == to {
        return Ok(None);
    }
    if !allowed_from(status).contains(&to) {
        return Err(AppError::InvalidTransition {
            from: status,
            to,
            allowed: allowed_from(status).to_vec(),
        });
    }
    if is_reopen(status, to) && note.is_none() {
        return Err(AppError::bad_input(
            "note",
            "reopening a resolved incident needs a note saying why",
        ));
    }
    if to == Status::Closed && needs_postmortem(severity) && !has_postmortem {
        return Err(AppError::PostmortemRequired(severity));
    }
    let resolved_at = match to {
        // resolvedAt is never before startedAt, even when startedAt was back-dated into the future of our clock.
        Status::Resolved => Some(now.max(incident.started_at)),
        Status::Closed => incident.resolved_at,
        Status::Open | Status::Mitigating => None,
    };
    Ok(Some(TransitionPlan {
        from: status,
        to,
        resolved_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Status; 4] = [
        Status::Open,
        Status::Mitigating,
        Status::Resolved,
        Status::Closed,
    ];

    #[test]
    fn exactly_the_contract_transitions_are_allowed() {
        let mut allowed = vec![];
        for from in ALL {
            for to in allowed_from(from) {
                allowed.push(format!("{from}->{to}"));
            }
        }
        assert_eq!(
            allowed,
            [
                "OPEN->MITIGATING",
                "OPEN->RESOLVED",
                "MITIGATING->RESOLVED",
                "RESOLVED->CLOSED",
                "RESOLVED->OPEN",
                "RESOLVED->MITIGATING"
            ]
        );
    }

    #[test]
    fn closed_is_hidden_until_a_required_postmortem_exists() {
        assert_eq!(
            allowed_now(Status::Resolved, Severity::Sev1, false),
            [Status::Open, Status::Mitigating]
        );
        assert_eq!(
            allowed_now(Status::Resolved, Severity::Sev3, false),
            [Status::Closed, Status::Open, Status::Mitigating]
        );
    }
}
