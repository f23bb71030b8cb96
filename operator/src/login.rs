//! Whether a tenant's face-only (1:N) login is open, from its spec and the gallery the
//! operator counted: the `FaceOnlyLogin` condition and `status.login`. The service
//! enforces the same rule on every login (`faceid_limits`, `LOGIN_MODE`,
//! `FACE_ONLY_MAX_USERS`, `FACE_ONLY_ACCEPT_RISK`); the status tells the platform team.

use crate::conditions::{Status, reasons};
use crate::crd::{FaceIdTenantSpec, LoginStatus};

/// The `FaceOnlyLogin` condition's status, reason and message, and `status.login`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaceOnlyLogin {
    /// For `status.login`.
    pub status: LoginStatus,
    /// Condition status.
    pub condition: Status,
    /// Condition reason.
    pub reason: &'static str,
    /// Condition message.
    pub message: String,
}

/// Judges face-only login for `spec` with `active_users` enrolled.
pub fn face_only_login(spec: &FaceIdTenantSpec, active_users: i64) -> FaceOnlyLogin {
    let tolerance: f32 = spec.recognition.tolerance.parse().unwrap_or(f32::NAN);
    let measured = i64::try_from(faceid_limits::safe_face_only_gallery(tolerance)).unwrap_or(0);
    let max = spec.login.face_only_max_users.unwrap_or(measured);
    let within = active_users <= max;
    let username_only = spec.login.mode.as_deref() == Some("username");
    let risk = spec.login.accept_face_only_risk;
    let open = !username_only && (within || risk);
    let (condition, reason, message) = if username_only {
        (
            Status::False,
            reasons::USERNAME_MODE,
            "login.mode is username: every login names its account".to_owned(),
        )
    } else if within {
        (
            Status::True,
            reasons::WITHIN_SAFE_SIZE,
            format!(
                "{active_users} active users, within the {max} for which face-only login is open (tolerance {})",
                spec.recognition.tolerance
            ),
        )
    } else if risk {
        (
            Status::True,
            reasons::RISK_ACCEPTED,
            format!(
                "{active_users} active users, past the safe {max} for tolerance {}: open because login.acceptFaceOnlyRisk is true; strangers are logged in as somebody more often than 1 in 100",
                spec.recognition.tolerance
            ),
        )
    } else {
        (
            Status::False,
            reasons::PAST_SAFE_SIZE,
            format!(
                "{active_users} active users, past the {max} for which face-only login is safe at tolerance {}: logins without a username are answered username_required. Lower the tolerance, raise login.faceOnlyMaxUsers or set login.acceptFaceOnlyRisk (docs/OPERATOR.md)",
                spec.recognition.tolerance
            ),
        )
    };
    FaceOnlyLogin {
        status: LoginStatus {
            active_users,
            face_only_max_users: max,
            face_only_open: open,
        },
        condition,
        reason,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> FaceIdTenantSpec {
        serde_saphyr::from_str(&format!(
            "database: {{connectionSecretRef: {{name: pg}}, schema: acme}}\n{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn the_default_closes_past_the_measured_size() {
        let s = spec("");
        let measured = i64::try_from(faceid_limits::safe_face_only_gallery(0.6)).unwrap();
        let open = face_only_login(&s, measured);
        assert_eq!(open.reason, reasons::WITHIN_SAFE_SIZE);
        assert!(open.status.face_only_open);
        let closed = face_only_login(&s, measured + 1);
        assert_eq!(closed.condition, Status::False);
        assert_eq!(closed.reason, reasons::PAST_SAFE_SIZE);
        assert!(!closed.status.face_only_open);
        assert!(
            closed.message.contains("username_required"),
            "{}",
            closed.message
        );
    }

    #[test]
    fn a_stricter_tolerance_serves_more_people() {
        let s = spec("recognition: {tolerance: \"0.5\"}");
        assert_eq!(face_only_login(&s, 0).status.face_only_max_users, 65);
    }

    #[test]
    fn the_spec_can_raise_the_size_or_accept_the_risk() {
        let s = spec("login: {faceOnlyMaxUsers: 100}");
        assert!(face_only_login(&s, 100).status.face_only_open);
        let s = spec("login: {acceptFaceOnlyRisk: true}");
        let j = face_only_login(&s, 1_000_000);
        assert_eq!(
            (j.condition, j.reason),
            (Status::True, reasons::RISK_ACCEPTED)
        );
        let s = spec("login: {mode: username, acceptFaceOnlyRisk: true}");
        let j = face_only_login(&s, 0);
        assert_eq!(
            (j.condition, j.reason),
            (Status::False, reasons::USERNAME_MODE)
        );
        assert!(!j.status.face_only_open);
    }
}
