//! The incident workflow, all of it:
//!
//! ```text
//! OPEN ──► MITIGATING ──► RESOLVED ──► CLOSED (final)
//!   └──────────────────────►┘
//! RESOLVED ─► OPEN | MITIGATING (reopen: a note is required)
//! ```
//! CLOSED needs a postmortem when the incident is, or ever was, SEV1 or SEV2. A CLOSED incident is frozen:
//! neither its status nor its fields change again. `resolvedAt` is never before `startedAt`.

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

/// Closing needs a postmortem when the incident is, or ever was, SEV1 or SEV2: lowering the
/// severity before closing does not get around it.
pub fn needs_postmortem(incident: &incident::Model) -> bool {
    matches!(incident.highest_severity(), Severity::Sev1 | Severity::Sev2)
}

/// What an incident remembers as its highest severity once its severity becomes `next`.
pub fn highest_severity_after(incident: &incident::Model, next: Severity) -> Option<Severity> {
    Some(Severity::most_severe(incident.highest_severity(), next))
}

/// What the workflow allows from here, now: `allowed_from` minus CLOSED while a required postmortem is missing.
pub fn allowed_now(incident: &incident::Model, has_postmortem: bool) -> Vec<Status> {
    allowed_from(incident.status)
        .iter()
        .copied()
        .filter(|to| *to != Status::Closed || has_postmortem || !needs_postmortem(incident))
        .collect()
}

/// A closed incident is final: no field of it changes any more (otherwise, say, raising its
/// severity to SEV1 after closing would get around the postmortem rule).
pub fn check_editable(incident: &incident::Model) -> AppResult<()> {
    if incident.status == Status::Closed {
        return Err(AppError::Conflict(
            "a closed incident cannot be changed".into(),
        ));
    }
    Ok(())
}

/// An incident is not resolved before it started: checked when `startedAt` moves.
pub fn check_times(started_at: DateTime<Utc>, resolved_at: Option<DateTime<Utc>>) -> AppResult<()> {
    if resolved_at.is_some_and(|resolved| started_at > resolved) {
        return Err(AppError::bad_input(
            "startedAt",
            "startedAt must not be after the incident's resolvedAt",
        ));
    }
    Ok(())
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
    let status = incident.status;
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
    if to == Status::Closed && needs_postmortem(incident) && !has_postmortem {
        return Err(AppError::PostmortemRequired(incident.highest_severity()));
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

    fn incident(status: Status, severity: Severity) -> incident::Model {
        let started = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        incident::Model {
            id: uuid::Uuid::nil(),
            organization_id: uuid::Uuid::nil(),
            title: "t".into(),
            status,
            severity,
            highest_severity: Some(severity),
            linked_ticket_ids: serde_json::json!([]),
            linked_problem_id: None,
            started_at: started,
            resolved_at: (status == Status::Resolved || status == Status::Closed)
                .then_some(started + chrono::TimeDelta::minutes(30)),
            created_by: None,
            created_at: started,
            updated_at: started,
        }
    }

    #[test]
    fn a_closed_incident_is_frozen() {
        for status in ALL {
            let editable = check_editable(&incident(status, Severity::Sev3)).is_ok();
            assert_eq!(editable, status != Status::Closed, "{status}");
        }
        let closed = incident(Status::Closed, Severity::Sev3);
        for to in ALL.into_iter().filter(|s| *s != Status::Closed) {
            let refused = plan_transition(&closed, to, Some("why"), true, closed.updated_at);
            assert!(
                matches!(refused, Err(AppError::InvalidTransition { .. })),
                "CLOSED -> {to}"
            );
        }
    }

    #[test]
    fn an_incident_is_never_resolved_before_it_started() {
        let started = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let later = started + chrono::TimeDelta::seconds(1);
        assert!(check_times(started, None).is_ok());
        assert!(check_times(started, Some(started)).is_ok());
        assert!(check_times(later, Some(started)).is_err());

        // Resolving stamps now, or startedAt when that was back-dated ahead of our clock.
        let mut open = incident(Status::Open, Severity::Sev3);
        let plan = plan_transition(&open, Status::Resolved, None, false, later)
            .unwrap()
            .unwrap();
        assert_eq!(plan.resolved_at, Some(later.max(open.started_at)));
        open.started_at = later + chrono::TimeDelta::minutes(1);
        let plan = plan_transition(&open, Status::Resolved, None, false, later)
            .unwrap()
            .unwrap();
        assert_eq!(plan.resolved_at, Some(open.started_at));

        // A reopen clears resolvedAt; closing keeps it.
        let resolved = incident(Status::Resolved, Severity::Sev3);
        let reopened = plan_transition(&resolved, Status::Open, Some("again"), false, later)
            .unwrap()
            .unwrap();
        assert_eq!(reopened.resolved_at, None);
        let closed = plan_transition(&resolved, Status::Closed, None, false, later)
            .unwrap()
            .unwrap();
        assert_eq!(closed.resolved_at, resolved.resolved_at);
    }

    #[test]
    fn a_reopen_needs_a_note_and_a_close_may_need_a_postmortem() {
        let resolved = incident(Status::Resolved, Severity::Sev2);
        let now = resolved.updated_at;
        assert!(matches!(
            plan_transition(&resolved, Status::Open, None, false, now),
            Err(AppError::BadInput { .. })
        ));
        assert!(matches!(
            plan_transition(&resolved, Status::Closed, None, false, now),
            Err(AppError::PostmortemRequired(Severity::Sev2))
        ));
        assert!(plan_transition(&resolved, Status::Closed, None, true, now).is_ok());
        assert_eq!(
            plan_transition(&resolved, Status::Resolved, None, false, now).unwrap(),
            None,
            "already there: nothing to do"
        );
    }

    #[test]
    fn closed_is_hidden_until_a_required_postmortem_exists() {
        assert_eq!(
            allowed_now(&incident(Status::Resolved, Severity::Sev1), false),
            [Status::Open, Status::Mitigating]
        );
        assert_eq!(
            allowed_now(&incident(Status::Resolved, Severity::Sev3), false),
            [Status::Closed, Status::Open, Status::Mitigating]
        );
    }

    #[test]
    fn the_postmortem_rule_holds_for_the_highest_severity_ever() {
        let mut lowered = incident(Status::Resolved, Severity::Sev1);
        lowered.highest_severity = highest_severity_after(&lowered, Severity::Sev3);
        lowered.severity = Severity::Sev3;
        assert_eq!(lowered.highest_severity(), Severity::Sev1);
        assert!(needs_postmortem(&lowered));
        assert_eq!(
            allowed_now(&lowered, false),
            [Status::Open, Status::Mitigating]
        );
        assert!(matches!(
            plan_transition(&lowered, Status::Closed, None, false, lowered.updated_at),
            Err(AppError::PostmortemRequired(Severity::Sev1))
        ));
        // Raising it counts too, and a row from before the column (NULL) is its current level.
        let mut raised = incident(Status::Resolved, Severity::Sev4);
        raised.highest_severity = None;
        assert!(!needs_postmortem(&raised));
        raised.highest_severity = highest_severity_after(&raised, Severity::Sev2);
        assert_eq!(raised.highest_severity, Some(Severity::Sev2));
    }
}
