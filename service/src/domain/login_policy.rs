//! Which logins a tenant accepts: face-only (1:N identification), face + username (1:1
//! verification), or both, and the gallery size past which face-only login is closed.
//!
//! Face-only login compares a stranger's face with every enrolled person, so the chance
//! that some stranger is taken for somebody grows with the number of people enrolled
//! (measured in docs/FACE_ENGINE.md, "1:N identification"). Past the measured safe size
//! for the tenant's tolerance ([`faceid_limits::safe_face_only_gallery`]) a face-only
//! login is answered `username_required` and the client asks for the username, unless
//! the tenant explicitly accepted the risk.

use clap::ValueEnum;

/// `LOGIN_MODE`: the kinds of login a tenant accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LoginMode {
    /// Face-only (1:N) while the gallery is within the safe size, and face + username
    /// (1:1) always.
    Both,
    /// Face + username only: every login names its account (1:1).
    Username,
    /// Face-only only (kiosks): a username in the login is refused; past the safe size
    /// face-only login closes like `both` (and nothing else is open).
    Face,
}

/// A tenant's login rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginPolicy {
    /// `LOGIN_MODE`.
    pub mode: LoginMode,
    /// Largest gallery (active users) for which face-only login stays open.
    pub face_only_max_users: u64,
    /// `FACE_ONLY_ACCEPT_RISK`: face-only login stays open past `face_only_max_users`.
    pub accept_risk: bool,
}

/// How a login is to be decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route<'a> {
    /// 1:N identification over the whole gallery.
    Identify,
    /// 1:1 verification against this username.
    Verify(&'a str),
}

/// Why a login was refused before any face was compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Face-only login is closed: the gallery is past the safe size, or the tenant takes
    /// usernames only.
    #[error("face-only login is closed for this tenant: enter your username and try again")]
    UsernameRequired,
    /// The tenant logs in by face only.
    #[error("this tenant logs in by face only: send no username")]
    UsernameNotAccepted,
}

impl LoginPolicy {
    /// The policy with the measured safe size for `tolerance`, unless `max_users` overrides it.
    pub fn new(mode: LoginMode, tolerance: f32, max_users: Option<u64>, accept_risk: bool) -> Self {
        Self {
            mode,
            face_only_max_users: max_users
                .unwrap_or_else(|| faceid_limits::safe_face_only_gallery(tolerance)),
            accept_risk,
        }
    }

    /// Whether face-only login is open with `enrolled` active users.
    pub fn face_only_open(&self, enrolled: u64) -> bool {
        self.mode != LoginMode::Username
            && (self.accept_risk || enrolled <= self.face_only_max_users)
    }

    /// Routes a login that did (`Some`) or did not name an account, by the mode alone;
    /// a face-only login is then admitted by [`Self::admit_face_only`].
    pub fn route<'a>(&self, username: Option<&'a str>) -> Result<Route<'a>, Refusal> {
        match (self.mode, username) {
            (LoginMode::Face, Some(_)) => Err(Refusal::UsernameNotAccepted),
            (_, Some(name)) => Ok(Route::Verify(name)),
            (LoginMode::Username, None) => Err(Refusal::UsernameRequired),
            (_, None) => Ok(Route::Identify),
        }
    }

    /// Admits a face-only login with `enrolled` active users in the gallery.
    pub fn admit_face_only(&self, enrolled: u64) -> Result<(), Refusal> {
        if self.face_only_open(enrolled) {
            Ok(())
        } else {
            Err(Refusal::UsernameRequired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: LoginMode, accept_risk: bool) -> LoginPolicy {
        LoginPolicy {
            mode,
            face_only_max_users: 20,
            accept_risk,
        }
    }

    #[test]
    fn face_only_closes_past_the_safe_size() {
        let p = policy(LoginMode::Both, false);
        assert_eq!(p.route(None), Ok(Route::Identify));
        assert_eq!(p.admit_face_only(20), Ok(()));
        assert_eq!(p.admit_face_only(21), Err(Refusal::UsernameRequired));
        // 1:1 stays open whatever the size.
        assert_eq!(p.route(Some("ann")), Ok(Route::Verify("ann")));
    }

    #[test]
    fn accepting_the_risk_keeps_face_only_open() {
        let p = policy(LoginMode::Both, true);
        assert_eq!(p.admit_face_only(1_000_000), Ok(()));
        assert!(p.face_only_open(u64::MAX));
    }

    #[test]
    fn modes_restrict_what_is_sent() {
        let username = policy(LoginMode::Username, true);
        assert_eq!(username.route(None), Err(Refusal::UsernameRequired));
        assert_eq!(username.route(Some("ann")), Ok(Route::Verify("ann")));
        assert!(!username.face_only_open(0));
        let face = policy(LoginMode::Face, false);
        assert_eq!(face.route(Some("ann")), Err(Refusal::UsernameNotAccepted));
        assert_eq!(face.route(None), Ok(Route::Identify));
        assert_eq!(face.admit_face_only(21), Err(Refusal::UsernameRequired));
    }

    #[test]
    fn an_override_replaces_the_measured_size() {
        let p = LoginPolicy::new(LoginMode::Both, 0.6, Some(3), false);
        assert_eq!(p.face_only_max_users, 3);
        let measured = LoginPolicy::new(LoginMode::Both, 0.6, None, false);
        assert_eq!(
            measured.face_only_max_users,
            faceid_limits::safe_face_only_gallery(0.6)
        );
    }
}
