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

/// The severities at which closing needs a postmortem (also read by the SQL of the
/// `awaitingPostmortem` filter, so the list is written once).
pub const POSTMORTEM_SEVERITIES: [Severity; 2] = [Severity::Sev1, Severity::Sev2];

/// Closing needs a postmortem when the incident is, or ever was, SEV1 or SEV2: lowering the
/// severity before closing does not get around it.
pub fn needs_postmortem(incident: &incident::Model) -> bool {
    POSTMORTEM_SEVERITIES.contains(&incident.highest_severity())
}

/// Resolved, and closing it waits for a postmortem that is required and not written yet.
pub fn awaiting_postmortem(incident: &incident::Model, has_postmortem: bool) -> bool {
    incident.status == Status::Resolved && needs_postmortem(incident) && !has_postmortem
}

/// Whether the answer of [`awaiting_postmortem`] (and so of [`close_blocker`] and of CLOSED in
/// [`allowed_now`]) depends on a postmortem existing: callers look one up only then.
pub fn depends_on_postmortem(incident: &incident::Model) -> bool {
    incident.status == Status::Resolved && needs_postmortem(incident)
}

/// Why closing is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseBlockReason {
    /// The incident is or was SEV1 or SEV2 and has no postmortem yet.
    PostmortemRequired,
}

/// What stands between a resolved incident and CLOSED, told to clients so none re-implements it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseBlocker {
    pub reason: CloseBlockReason,
    /// The severity that makes the postmortem required: the highest the incident ever had.
    pub severity: Severity,
}

impl CloseBlocker {
    /// The reason in words, for people.
    pub fn message(&self) -> String {
        match self.reason {
            CloseBlockReason::PostmortemRequired => format!(
                "Closing a {} incident needs a postmortem first",
                self.severity
            ),
        }
    }
}

/// Why CLOSED is not among the transitions allowed now although the workflow leads there from
/// the incident's status; `None` when nothing blocks it (or when the status does not lead to
/// CLOSED at all).
pub fn close_blocker(incident: &incident::Model, has_postmortem: bool) -> Option<CloseBlocker> {
    awaiting_postmortem(incident, has_postmortem).then(|| CloseBlocker {
        reason: CloseBlockReason::PostmortemRequired,
        severity: incident.highest_severity(),
    })
}

/// A transition allowed now, and whether it needs a note (a reopen does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: Status,
    pub needs_note: bool,
}

/// The transitions allowed from here, now ([`allowed_now`]), each with what it needs.
pub fn transitions_now(incident: &incident::Model, has_postmortem: bool) -> Vec<Transition> {
    allowed_now(incident, has_postmortem)
        .into_iter()
        .map(|to| Transition {
            to,
            needs_note: is_reopen(incident.status, to),
        })
        .collect()
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
        .filter(|to| *to != Status::Closed || close_blocker(incident, has_postmortem).is_none())
        .collect()
}

/// Whether the incident's fields and roles may still change. A closed incident is final: no
/// field of it changes any more (otherwise, say, raising its severity to SEV1 after closing
/// would get around the postmortem rule), and neither do its roles.
pub fn is_editable(incident: &incident::Model) -> bool {
    incident.status != Status::Closed
}

pub fn check_editable(incident: &incident::Model) -> AppResult<()> {
    if !is_editable(incident) {
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
    fn what_the_desk_is_told_follows_the_highest_severity_ever() {
        let mut lowered = incident(Status::Resolved, Severity::Sev1);
        lowered.severity = Severity::Sev3;
        assert!(awaiting_postmortem(&lowered, false));
        assert!(!awaiting_postmortem(&lowered, true));
        assert_eq!(
            close_blocker(&lowered, false),
            Some(CloseBlocker {
                reason: CloseBlockReason::PostmortemRequired,
                severity: Severity::Sev1,
            })
        );
        assert_eq!(close_blocker(&lowered, true), None);
        assert_eq!(
            transitions_now(&lowered, false),
            [
                Transition {
                    to: Status::Open,
                    needs_note: true
                },
                Transition {
                    to: Status::Mitigating,
                    needs_note: true
                },
            ]
        );
        assert_eq!(transitions_now(&lowered, true)[0].to, Status::Closed);
        assert!(!transitions_now(&lowered, true)[0].needs_note);
        // Only a resolved incident waits; an open SEV1 has other steps before closing.
        let open = incident(Status::Open, Severity::Sev1);
        assert!(!awaiting_postmortem(&open, false));
        assert_eq!(close_blocker(&open, false), None);
        assert!(transitions_now(&open, false).iter().all(|t| !t.needs_note));
        assert!(!awaiting_postmortem(
            &incident(Status::Resolved, Severity::Sev3),
            false
        ));
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
