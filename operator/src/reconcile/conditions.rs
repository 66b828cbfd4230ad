//! Status conditions (`Ready`, `Progressing`, `Degraded`) that keep their last transition time
//! while their status stays the same, as Kubernetes conventions ask.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// One condition to set: type, status, reason, message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// `Ready`, `Progressing` or `Degraded`.
    pub kind: &'static str,
    /// Whether it holds.
    pub status: bool,
    /// CamelCase reason.
    pub reason: &'static str,
    /// What a human should know.
    pub message: String,
}

impl Want {
    /// A condition that holds.
    pub fn yes(kind: &'static str, reason: &'static str, message: impl Into<String>) -> Want {
        Want {
            kind,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// A condition that does not hold.
    pub fn no(kind: &'static str, reason: &'static str, message: impl Into<String>) -> Want {
        Want {
            kind,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

/// The conditions `wanted` describes, keeping each one's transition time from `previous` when
/// its status did not change; `now` stamps the others.
pub fn merge(
    previous: &[Condition],
    wanted: &[Want],
    generation: i64,
    now: Time,
) -> Vec<Condition> {
    wanted
        .iter()
        .map(|w| {
            let status = if w.status { "True" } else { "False" }.to_string();
            let since = previous
                .iter()
                .find(|c| c.type_ == w.kind && c.status == status)
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: w.kind.to_string(),
                status,
                reason: w.reason.to_string(),
                message: w.message.clone(),
                observed_generation: Some(generation),
                last_transition_time: since,
            }
        })
        .collect()
}

/// Whether the condition `kind` among `conditions` is True (a missing one is not).
pub fn holds(conditions: &[Condition], kind: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == kind && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn a_condition_keeps_its_transition_time_until_its_status_changes() {
        let t = |s: i64| Time(Timestamp::from_second(s).unwrap());
        let first = merge(&[], &[Want::no("Ready", "Starting", "0/3 ready")], 1, t(10));
        assert_eq!(first[0].last_transition_time, t(10));
        let same = merge(
            &first,
            &[Want::no("Ready", "Starting", "2/3 ready")],
            1,
            t(20),
        );
        assert_eq!(same[0].last_transition_time, t(10), "still not ready");
        assert_eq!(same[0].message, "2/3 ready");
        let flipped = merge(&same, &[Want::yes("Ready", "Ready", "3/3")], 2, t(30));
        assert_eq!(flipped[0].last_transition_time, t(30));
        assert_eq!(flipped[0].status, "True");
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn a_condition_holds_only_when_it_is_there_and_true() {
        let t = Time(Timestamp::from_second(0).unwrap());
        let wanted = [
            Want::yes("Ready", "Ready", "3/3"),
            Want::no("Degraded", "AsExpected", "fine"),
        ];
        let conditions = merge(&[], &wanted, 1, t);
        assert!(holds(&conditions, "Ready"));
        assert!(!holds(&conditions, "Degraded"));
        assert!(!holds(&conditions, "Progressing"), "missing");
        assert!(!holds(&[], "Ready"));
    }
}
