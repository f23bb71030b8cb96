//! The use cases: registration, login, token refresh, enrolment and erasure. Each takes
//! validated input, calls the face engine, the stores and the domain rules, records
//! metrics and the fraud trail, and returns a typed outcome for the HTTP layer.

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::RedisFailurePolicy;
use crate::domain::lockout::{self, ClientGate};
use crate::domain::login_policy::Route;
use crate::domain::matching::{self, Candidate, MatchOutcome};
use crate::domain::tokens::{hash_refresh_token, new_refresh_token};
use crate::face::{Analysis, AnalyzeOptions, FaceError, LivenessReport, Purpose};
use crate::http::error::{ApiError, ApiResult, seconds_until};
use crate::http::extract::Client;
use crate::state::AppState;
use crate::store::attempts::{self, FailureReason, NewAttempt};
use crate::store::ratelimit::LimiterUnavailable;
use crate::store::users::{self, UserRow};
use crate::store::{StoreError, tokens};

/// How many nearest templates a 1:N search fetches: enough to see the nearest template of
/// the best user *and* of the runner-up user however many templates the best user has.
/// Every template nearer than the runner-up user's nearest belongs to the best user
/// (another user's would make that user the runner-up), and one user has at most
/// [`users::MAX_FACES_PER_USER`], so one more than that always reaches the runner-up: a
/// user who fills every slot with their own templates cannot hide a rival from the
/// ambiguity check.
const SEARCH_CANDIDATES: i64 = users::MAX_FACES_PER_USER + 1;

/// The recognition network (and embedding dimension) whose templates this build makes
/// and compares: stored beside every template, and every search and comparison is
/// restricted to it, because templates of another network are not comparable. The int8
/// and float32 builds of the one network share it (their embeddings are 0.036 apart at
/// the median); a new network gets a new name (docs/FACE_ENGINE.md, "Moving to another
/// network").
pub const RECOGNITION_NETWORK: &str = "face-api-resnet128@1.7.15/128";

/// A user as the API shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// Id.
    pub id: Uuid,
    /// Username.
    pub username: String,
    /// E-mail.
    pub email: String,
    /// Whether the account may log in.
    pub is_active: bool,
    /// Whether the account is locked now.
    pub is_locked: bool,
    /// End of the current lock.
    pub locked_until: Option<DateTime<Utc>>,
    /// Model version of the registration template.
    pub model_version: String,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl UserOut {
    pub(crate) fn from_row(row: UserRow, now: DateTime<Utc>) -> Self {
        let locked = lockout::is_locked(row.is_locked, row.locked_until, now);
        Self {
            id: row.id,
            username: row.username,
            email: row.email,
            is_active: row.is_active,
            is_locked: locked,
            locked_until: if locked { row.locked_until } else { None },
            model_version: row.model_version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// Access and refresh tokens.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// JWT access token (EdDSA or ES256 with a `kid` of `/.well-known/jwks.json`; HS256
    /// while LEGACY_HS256_TOKENS is on), for `Authorization: Bearer`.
    pub access_token: String,
    /// Opaque single-use refresh token.
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime in seconds.
    pub expires_in: u64,
}

/// 201 answer of a registration.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Registered {
    /// The new user.
    pub user: UserOut,
    /// Tokens.
    #[serde(flatten)]
    pub tokens: TokenPair,
    /// Liveness score of the registration photo (absent when liveness is disabled).
    pub liveness_score: Option<f32>,
    /// Faces found in the photo. Above 1, the largest face was used because it dominates
    /// the photo (docs/FACE_ENGINE.md, "Several faces"); the others were ignored.
    pub faces_detected: usize,
}

/// 200 answer of a login.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LoggedIn {
    /// Tokens.
    #[serde(flatten)]
    pub tokens: TokenPair,
    /// The user.
    pub user: UserOut,
    /// Liveness score in [0, 1] (absent when liveness is disabled).
    pub liveness_score: Option<f32>,
    /// `1 − distance` to the nearest enrolled template, clamped to [0, 1].
    pub confidence_score: f32,
    /// Faces found in the photo. Above 1, the largest face was used because it dominates
    /// the photo (docs/FACE_ENGINE.md, "Several faces"); the others were ignored.
    pub faces_detected: usize,
}

/// Registration input, validated.
#[derive(Debug)]
pub struct Registration<'a> {
    /// Username.
    pub username: &'a str,
    /// E-mail.
    pub email: &'a str,
    /// Password (hashed with argon2id before storage).
    pub password: &'a str,
    /// The uploaded photo.
    pub image: Bytes,
}

/// Which rate limit an endpoint falls under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `RATE_LIMIT_REGISTER`.
    Register,
    /// `RATE_LIMIT_LOGIN`.
    Login,
    /// `RATE_LIMIT_DEFAULT`.
    Default,
}

/// Counts a request against its rate limit; refuses with 429 past it. When Redis is
/// down the `RATE_LIMIT_REDIS_FAILURE` policy decides (503 or let through), never a 500.
pub async fn rate_limit(state: &AppState, limit: Limit, client: &Client) -> ApiResult<()> {
    let config = state.config();
    if !config.rate_limit_enabled {
        return Ok(());
    }
    let (endpoint, spec) = match limit {
        Limit::Register => ("register", config.rate_limit_register),
        Limit::Login => ("login", config.rate_limit_login),
        Limit::Default => ("default", config.rate_limit_default),
    };
    match state.limiter().hit(endpoint, &client.key, spec).await {
        Ok(decision) if decision.allowed => Ok(()),
        Ok(decision) => {
            state
                .metrics()
                .rate_limit_hits
                .with_label_values(&[endpoint])
                .inc();
            tracing::warn!(event = "rate_limited", endpoint, client_ip = %client.ip, "rate limit exceeded");
            // One fraud-record row per client and window: a burst writes no row per request.
            if limit == Limit::Login && decision.first_refusal {
                let attempt = failed_attempt(client, None, FailureReason::RateLimit, None, None);
                record_failure(state, &attempt).await;
                state
                    .metrics()
                    .login_attempts
                    .with_label_values(&["failure", "rate_limit"])
                    .inc();
            }
            Err(ApiError::RateLimited {
                retry_after: decision.retry_after_secs(),
            })
        }
        Err(LimiterUnavailable(detail)) => {
            state
                .metrics()
                .dependency_errors
                .with_label_values(&["redis"])
                .inc();
            let closed = match config.rate_limit_redis_failure {
                RedisFailurePolicy::Closed => true,
                RedisFailurePolicy::ClosedForAuth => limit != Limit::Default,
                RedisFailurePolicy::Open => false,
            };
            tracing::warn!(event = "rate_limiter_unavailable", endpoint, fail_closed = closed, detail = %detail, "Redis unavailable");
            if closed {
                Err(ApiError::Unavailable("rate limiter"))
            } else {
                Ok(())
            }
        }
    }
}

/// Runs the face engine, timing it.
async fn analyze(state: &AppState, image: Bytes, purpose: Purpose) -> Result<Analysis, FaceError> {
    let started = Instant::now();
    let options = AnalyzeOptions {
        purpose,
        liveness: state.config().liveness_enabled,
    };
    let result = state.engine().analyze(image, options).await;
    state
        .metrics()
        .face_match_latency
        .with_label_values(&["analyze"])
        .observe(started.elapsed().as_secs_f64());
    if let Ok(analysis) = &result {
        state
            .metrics()
            .photo_decodes
            .with_label_values(&[&analysis.reduced_by.to_string()])
            .inc();
        if let Some(live) = &analysis.liveness {
            let label = if live.is_live { "live" } else { "spoof" };
            state
                .metrics()
                .liveness_checks
                .with_label_values(&[label])
                .inc();
        }
    }
    result
}

fn is_spoof(liveness: Option<&LivenessReport>) -> bool {
    liveness.is_some_and(|l| !l.is_live)
}

/// Hashes a password with argon2id off the executor (see [`crate::passwords`]).
async fn hash_password(state: &AppState, password: &str) -> ApiResult<String> {
    state.passwords().hash(password).await.map_err(|e| match e {
        crate::passwords::HashError::Closed => ApiError::Unavailable("shutting down"),
        crate::passwords::HashError::Failed(e) => ApiError::Internal(e),
    })
}

/// Signs an access token for `user` at its current token generation.
fn sign_access(state: &AppState, user: &UserRow, now: DateTime<Utc>) -> ApiResult<String> {
    state
        .tokens()
        .issue_access(user.id, user.token_generation, now)
        .map_err(|e| ApiError::Internal(format!("token signing: {e}")))
}

async fn issue_tokens(
    state: &AppState,
    user: &UserRow,
    now: DateTime<Utc>,
) -> ApiResult<TokenPair> {
    let access_token = sign_access(state, user, now)?;
    let refresh_token = new_refresh_token();
    let expires =
        now + chrono::Duration::from_std(state.config().refresh_ttl()).unwrap_or_default();
    tokens::issue(
        state.db(),
        &hash_refresh_token(&refresh_token),
        user.id,
        expires,
        None,
    )
    .await?;
    Ok(TokenPair {
        access_token,
        refresh_token,
        token_type: "bearer",
        expires_in: state.tokens().access_ttl().as_secs(),
    })
}

/// Records a failed attempt; a failure to record is logged, never turned into a 500
/// over the answer the client is owed. Returns whether the attempt locked the account.
async fn record_failure(state: &AppState, attempt: &NewAttempt) -> bool {
    match attempts::record(state.db(), attempt, state.lockout(), Utc::now()).await {
        Ok(locked) => {
            if locked {
                tracing::warn!(event = "account_locked", user_id = ?attempt.user_id, "account locked after repeated failures");
            }
            locked
        }
        Err(e) => {
            state
                .metrics()
                .dependency_errors
                .with_label_values(&["postgresql"])
                .inc();
            tracing::error!(event = "attempt_not_recorded", error = %e, "failed to record a failed attempt");
            false
        }
    }
}

fn face_failure_reason(e: &FaceError) -> FailureReason {
    match e {
        FaceError::NoFace => FailureReason::NoFace,
        FaceError::MultipleFaces { .. } => FailureReason::MultipleFaces,
        FaceError::PoorQuality(_) => FailureReason::PoorQuality,
        _ => FailureReason::InvalidImage,
    }
}

/// Registers a user from a photo: the original's flow (exists → liveness → face →
/// quality → embed → store → tokens).
pub async fn register(
    state: &AppState,
    client: &Client,
    input: Registration<'_>,
) -> ApiResult<Registered> {
    let metrics = state.metrics();
    let result = register_inner(state, client, input).await;
    let status = match &result {
        Ok(_) => "success",
        Err(e) => e.status_and_code().1,
    };
    metrics
        .registration_attempts
        .with_label_values(&[status])
        .inc();
    result
}

async fn register_inner(
    state: &AppState,
    client: &Client,
    input: Registration<'_>,
) -> ApiResult<Registered> {
    // Cheap check first, so a taken name costs no inference; the unique index decides
    // races later.
    if let Some(field) = users::taken_field(state.db(), input.username, input.email).await? {
        return Err(ApiError::UserExists(field));
    }
    let analysis = analyze(state, input.image, Purpose::Enroll).await?;
    if is_spoof(analysis.liveness.as_ref()) {
        let attempt = failed_attempt(
            client,
            None,
            FailureReason::LivenessFailed,
            None,
            analysis.liveness.as_ref().map(|l| l.score),
        );
        record_failure(state, &attempt).await;
        tracing::warn!(event = "spoof_detected", flow = "register", client_ip = %client.ip, "registration refused by liveness");
        return Err(ApiError::SpoofDetected);
    }
    let template = state
        .templates()
        .protect(analysis.face.embedding.as_slice());
    let password_hash = hash_password(state, input.password).await?;
    // One face, one account, unless the tenant allows more.
    let duplicate_within =
        (!state.config().allow_duplicate_faces).then(|| state.engine().tolerance());
    let created = users::create(
        state.db(),
        users::NewUser {
            username: input.username,
            email: input.email,
            password_hash: &password_hash,
            embedding: &template,
            model_version: state.engine().model_version(),
            network: RECOGNITION_NETWORK,
        },
        duplicate_within,
    )
    .await?;
    let user = match created {
        users::Created::User(user) => user,
        users::Created::DuplicateOf(existing) => {
            record_duplicate_face(state, client, existing).await;
            return Err(ApiError::DuplicateFace);
        }
    };
    state.gallery().invalidate();
    let now = Utc::now();
    let tokens = issue_tokens(state, &user, now).await?;
    tracing::info!(event = "user_registered", user_id = %user.id, "user registered");
    Ok(Registered {
        user: UserOut::from_row(user, now),
        tokens,
        liveness_score: analysis.liveness.map(|l| l.score),
        faces_detected: analysis.face_count,
    })
}

/// Records a registration refused because its face is enrolled under `existing`, as a
/// fraud signal against that account (it never counts towards the account's lockout).
async fn record_duplicate_face(state: &AppState, client: &Client, existing: Candidate) {
    let attempt = failed_attempt(
        client,
        Some(existing.user_id),
        FailureReason::DuplicateFace,
        Some(matching::confidence_score(existing.distance)),
        None,
    );
    record_failure(state, &attempt).await;
    tracing::warn!(event = "duplicate_face", existing_user_id = %existing.user_id, client_ip = %client.ip, "registration refused: the face is enrolled under another account");
}

/// A face login that succeeded, before anything is issued for it.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The user, active and not locked.
    pub user: UserRow,
    /// `1 − distance` to the matched template, clamped to [0, 1].
    pub confidence: f32,
    /// The probe's liveness score (absent when liveness is disabled).
    pub liveness: Option<f32>,
    /// Faces found in the photo.
    pub faces_detected: usize,
}

/// Logs in by face: 1:N identification, or 1:1 verification when `username` is given.
pub async fn login(
    state: &AppState,
    client: &Client,
    username: Option<&str>,
    image: Bytes,
) -> ApiResult<LoggedIn> {
    let auth = authenticate_face(state, client, username, image).await?;
    let now = Utc::now();
    let tokens = issue_tokens(state, &auth.user, now).await?;
    Ok(LoggedIn {
        tokens,
        user: UserOut::from_row(auth.user, now),
        liveness_score: auth.liveness,
        confidence_score: auth.confidence,
        faces_detected: auth.faces_detected,
    })
}

/// Authenticates the person in `image`, as a login does (rate limits, lockout, liveness,
/// the tenant's login mode, fraud records, the login metric), without issuing anything:
/// [`login`] issues the API's tokens, the OpenID Provider an authorization code.
pub async fn authenticate_face(
    state: &AppState,
    client: &Client,
    username: Option<&str>,
    image: Bytes,
) -> ApiResult<Authenticated> {
    let result = login_inner(state, client, username, image).await;
    let (status, reason) = match &result {
        Ok(_) => ("success", "none"),
        Err(e) => ("failure", e.status_and_code().1),
    };
    state
        .metrics()
        .login_attempts
        .with_label_values(&[status, reason])
        .inc();
    result
}

async fn login_inner(
    state: &AppState,
    client: &Client,
    username: Option<&str>,
    image: Bytes,
) -> ApiResult<Authenticated> {
    let claimed = claim(state, client, username).await?;
    let analysis = analyze_probe(state, client, claimed.as_ref(), image).await?;
    let liveness = analysis.liveness.as_ref().map(|l| l.score);
    // Stored templates are protected; the probe is protected the same way (distances
    // are preserved).
    let template = state
        .templates()
        .protect(analysis.face.embedding.as_slice());
    let (user, outcome) = find_owner(state, claimed.as_ref(), template.as_slice()).await?;
    // A spoof is refused whoever it resembles; the resembled account counts the failure.
    if is_spoof(analysis.liveness.as_ref()) {
        let confidence = match outcome {
            MatchOutcome::Matched { confidence, .. } => Some(confidence),
            _ => None,
        };
        let target = confidence.and(user.as_ref().map(|u| u.id));
        let attempt = failed_attempt(
            client,
            target,
            FailureReason::LivenessFailed,
            confidence,
            liveness,
        );
        record_failure(state, &attempt).await;
        tracing::warn!(event = "spoof_detected", flow = "login", client_ip = %client.ip, "login refused by liveness");
        return Err(ApiError::LivenessFailed);
    }
    let faces_detected = analysis.face_count;
    conclude_login(state, client, user, outcome, liveness, faces_detected).await
}

/// A failed attempt of `client`, for the fraud record and the lockout.
fn failed_attempt(
    client: &Client,
    user_id: Option<Uuid>,
    reason: FailureReason,
    confidence: Option<f32>,
    liveness: Option<f32>,
) -> NewAttempt {
    NewAttempt {
        user_id,
        ip: client.ip.clone(),
        client_key: client.key.clone(),
        user_agent: client.user_agent.clone(),
        reason,
        confidence,
        liveness,
    }
}

/// The account a login claims: `None` for face-only (1:N), `Some(None)` for an unknown
/// username, `Some(Some(user))` for 1:1. The tenant's login mode, and for face-only
/// logins the gallery's size, decide first whether this kind of login is open at all;
/// a locked account, or a client locked out of it or made to wait, costs no face work.
async fn claim(
    state: &AppState,
    client: &Client,
    username: Option<&str>,
) -> ApiResult<Option<Option<UserRow>>> {
    let policy = state.login_policy();
    let name = match policy.route(username)? {
        Route::Verify(name) => name,
        Route::Identify => {
            policy.admit_face_only(state.gallery().get(state.db()).await?)?;
            return Ok(None);
        }
    };
    let user = users::by_username(state.db(), name).await?;
    if let Some(user) = &user {
        admit_client(state, client, user).await?;
    }
    Ok(Some(user))
}

/// Runs the face engine on a login photo; a photo without one usable face is a failed
/// attempt (against the claimed account, if any).
async fn analyze_probe(
    state: &AppState,
    client: &Client,
    claimed: Option<&Option<UserRow>>,
    image: Bytes,
) -> ApiResult<Analysis> {
    match analyze(state, image, Purpose::Identify).await {
        Ok(a) => Ok(a),
        Err(e) => {
            if !matches!(e, FaceError::Inference(_)) {
                let user = claimed.and_then(|c| c.as_ref()).map(|u| u.id);
                let attempt = failed_attempt(client, user, face_failure_reason(&e), None, None);
                record_failure(state, &attempt).await;
            }
            Err(e.into())
        }
    }
}

/// Who the probe belongs to: 1:1 against the claimed account, or 1:N over the gallery
/// (the tenant's `HNSW_EF_SEARCH` is a setting of every pooled connection).
async fn find_owner(
    state: &AppState,
    claimed: Option<&Option<UserRow>>,
    embedding: &[f32],
) -> ApiResult<(Option<UserRow>, MatchOutcome)> {
    let tolerance = state.engine().tolerance();
    let started = Instant::now();
    let found = match claimed {
        Some(None) => (
            None,
            MatchOutcome::NoMatch {
                best_distance: None,
            },
        ),
        Some(Some(user)) => {
            let d = users::distance_to_user(state.db(), user.id, embedding, RECOGNITION_NETWORK)
                .await?;
            let outcome = match d {
                Some(d) if d <= tolerance => MatchOutcome::Matched {
                    user_id: user.id,
                    distance: d,
                    confidence: matching::confidence_score(d),
                },
                _ => MatchOutcome::NoMatch { best_distance: d },
            };
            (Some(user.clone()), outcome)
        }
        None => {
            let candidates = users::nearest(
                state.db(),
                embedding,
                SEARCH_CANDIDATES,
                RECOGNITION_NETWORK,
            )
            .await?;
            let margin = state.config().match_ambiguity_margin;
            let outcome = matching::decide(&candidates, tolerance, margin);
            let user = match outcome {
                MatchOutcome::Matched { user_id, .. } => users::by_id(state.db(), user_id).await?,
                _ => None,
            };
            (user, outcome)
        }
    };
    let kind = if claimed.is_some() {
        "one_to_one"
    } else {
        "one_to_many"
    };
    state
        .metrics()
        .vector_search_duration
        .with_label_values(&[kind])
        .observe(started.elapsed().as_secs_f64());
    Ok(found)
}

/// Turns a live probe's match outcome into an authenticated user, or into the failure
/// it is.
async fn conclude_login(
    state: &AppState,
    client: &Client,
    user: Option<UserRow>,
    outcome: MatchOutcome,
    liveness: Option<f32>,
    faces_detected: usize,
) -> ApiResult<Authenticated> {
    let (user, confidence) = match outcome {
        MatchOutcome::NoMatch { best_distance } => {
            let target = user.as_ref().map(|u| u.id);
            let confidence = best_distance.map(matching::confidence_score);
            let attempt =
                failed_attempt(client, target, FailureReason::NoMatch, confidence, liveness);
            if record_failure(state, &attempt).await {
                tracing::warn!(
                    event = "account_locked",
                    "account locked by a failed 1:1 login"
                );
            }
            return Err(ApiError::NotRecognized);
        }
        MatchOutcome::Ambiguous { best_distance, .. } => {
            let confidence = Some(matching::confidence_score(best_distance));
            let attempt = failed_attempt(
                client,
                None,
                FailureReason::AmbiguousMatch,
                confidence,
                liveness,
            );
            record_failure(state, &attempt).await;
            return Err(ApiError::AmbiguousMatch);
        }
        MatchOutcome::Matched { confidence, .. } => match user {
            Some(user) => (user, confidence),
            // Deleted between the search and the lookup.
            None => return Err(ApiError::NotRecognized),
        },
    };
    if !user.is_active {
        let attempt = failed_attempt(
            client,
            Some(user.id),
            FailureReason::Inactive,
            Some(confidence),
            liveness,
        );
        record_failure(state, &attempt).await;
        return Err(ApiError::Inactive);
    }
    // Again after the match: 1:N learns the account only now, and a lock may have been
    // taken while the face was analysed.
    admit_client(state, client, &user).await?;
    tracing::info!(event = "login_succeeded", user_id = %user.id, confidence, "user logged in");
    Ok(Authenticated {
        user,
        confidence,
        liveness,
        faces_detected,
    })
}

/// Refuses a login attempt on `user` from `client` that the lockout policy does not let
/// through: the account is locked (423 for every client), or this client is locked out of
/// it (the same 423, so it cannot tell which) or must wait after its failures (429
/// `login_throttled`). Nothing is recorded: these refusals do no face work and must not
/// renew a lock or write a row per request.
async fn admit_client(state: &AppState, client: &Client, user: &UserRow) -> ApiResult<()> {
    let now = Utc::now();
    if lockout::is_locked(user.is_locked, user.locked_until, now) {
        return Err(ApiError::Locked {
            retry_after: user.locked_until.map(|u| seconds_until(u, now)),
        });
    }
    let policy = state.lockout();
    let since = policy.counting_since(now, user.lockout_reset_at);
    let (failures, last) =
        attempts::client_failures(state.db(), user.id, &client.key, since).await?;
    match policy.client_gate(failures, last, now) {
        ClientGate::Open => Ok(()),
        ClientGate::Wait { until } => {
            tracing::info!(event = "login_throttled", user_id = %user.id, client_ip = %client.ip, failures, "login attempt refused: the client must wait after repeated failures");
            Err(ApiError::LoginThrottled {
                retry_after: seconds_until(until, now),
            })
        }
        ClientGate::LockedOut { until } => {
            tracing::warn!(event = "client_locked_out", user_id = %user.id, client_ip = %client.ip, failures, "login attempt refused: the client is locked out of this account");
            Err(ApiError::Locked {
                retry_after: Some(seconds_until(until, now)),
            })
        }
    }
}

/// Whether an access token still stands for its user now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionStatus {
    /// Yes.
    Valid,
    /// The account was erased.
    Gone,
    /// Issued before the user's last logout, lock or deactivation.
    Revoked,
    /// The account is deactivated.
    Inactive,
    /// The account is locked (until then, if the lock ends).
    Locked(Option<DateTime<Utc>>),
}

/// A well-signed access token is only as good as its user's state now: one primary-key
/// lookup makes logout, deactivation, locks and erasure take effect on access tokens at
/// once (the bound is zero), instead of when they expire.
pub async fn session_status(
    state: &AppState,
    user: Uuid,
    generation: i32,
    now: DateTime<Utc>,
) -> Result<SessionStatus, StoreError> {
    let Some(session) = users::session_state(state.db(), user).await? else {
        return Ok(SessionStatus::Gone);
    };
    Ok(if session.token_generation != generation {
        SessionStatus::Revoked
    } else if !session.is_active {
        SessionStatus::Inactive
    } else if lockout::is_locked(session.is_locked, session.locked_until, now) {
        SessionStatus::Locked(session.locked_until)
    } else {
        SessionStatus::Valid
    })
}

/// Exchanges a refresh token for a new pair (the old one is spent).
pub async fn refresh(state: &AppState, refresh_token: &str) -> ApiResult<TokenPair> {
    let now = Utc::now();
    let successor = new_refresh_token();
    let expires =
        now + chrono::Duration::from_std(state.config().refresh_ttl()).unwrap_or_default();
    match tokens::rotate(
        state.db(),
        &hash_refresh_token(refresh_token),
        &hash_refresh_token(&successor),
        now,
        expires,
        None,
    )
    .await?
    {
        tokens::Redeemed::Rotated { user_id, .. } => {
            let user = users::by_id(state.db(), user_id)
                .await?
                .ok_or(ApiError::InvalidRefreshToken)?;
            if !user.is_active {
                return Err(ApiError::Inactive);
            }
            if lockout::is_locked(user.is_locked, user.locked_until, now) {
                return Err(ApiError::Locked {
                    retry_after: user.locked_until.map(|u| seconds_until(u, now)),
                });
            }
            let access_token = sign_access(state, &user, now)?;
            Ok(TokenPair {
                access_token,
                refresh_token: successor,
                token_type: "bearer",
                expires_in: state.tokens().access_ttl().as_secs(),
            })
        }
        tokens::Redeemed::Reused => {
            tracing::warn!(
                event = "refresh_token_reused",
                "spent refresh token presented again; family revoked"
            );
            Err(ApiError::InvalidRefreshToken)
        }
        tokens::Redeemed::Invalid => Err(ApiError::InvalidRefreshToken),
    }
}

/// Revokes a refresh token (and its family) and every access token of its user issued so
/// far (other sessions get new access tokens by refreshing). Unknown tokens are accepted
/// silently, as RFC 7009 recommends, so the endpoint reveals nothing.
pub async fn logout(state: &AppState, refresh_token: &str) -> ApiResult<()> {
    if let Some(user) =
        tokens::revoke(state.db(), &hash_refresh_token(refresh_token), Utc::now()).await?
    {
        users::bump_token_generation(state.db(), user).await?;
        tracing::info!(event = "logged_out", user_id = %user, "refresh token and access tokens revoked");
    }
    Ok(())
}

/// The current user.
pub async fn me(state: &AppState, user: Uuid) -> ApiResult<UserOut> {
    let row = users::by_id(state.db(), user)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
    Ok(UserOut::from_row(row, Utc::now()))
}

/// A newly enrolled face.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct FaceEnrolled {
    /// Id of the new template.
    pub face_id: Uuid,
    /// Templates the user now has.
    pub face_count: i64,
    /// Distance from the new photo to the account's registration photo.
    pub distance: f32,
    /// Liveness score of the photo.
    pub liveness_score: Option<f32>,
    /// Faces found in the photo. Above 1, the largest face was used because it dominates
    /// the photo (docs/FACE_ENGINE.md, "Several faces"); the others were ignored.
    pub faces_detected: usize,
}

/// Enrols another photo of the signed-in user. The photo must pass liveness and match
/// the account's *registration* photo, not merely its nearest template: matching the
/// nearest would let a stolen token walk the account to another person's face in steps
/// (each blend close to the one before), whereas every step must now stay within the
/// tolerance of the face the account was opened with.
pub async fn enroll_face(state: &AppState, user: Uuid, image: Bytes) -> ApiResult<FaceEnrolled> {
    let row = users::by_id(state.db(), user)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))?;
    if !row.is_active {
        return Err(ApiError::Inactive);
    }
    let analysis = analyze(state, image, Purpose::Enroll).await?;
    if is_spoof(analysis.liveness.as_ref()) {
        tracing::warn!(event = "spoof_detected", flow = "enroll", user_id = %user, "enrolment refused by liveness");
        return Err(ApiError::SpoofDetected);
    }
    let template = state
        .templates()
        .protect(analysis.face.embedding.as_slice());
    let embedding = template.as_slice();
    let distance =
        users::distance_to_registration(state.db(), user, embedding, RECOGNITION_NETWORK)
            .await?
            .unwrap_or(f32::INFINITY);
    if distance > state.engine().tolerance() {
        tracing::warn!(event = "enroll_mismatch", user_id = %user, "enrolment photo does not match the account");
        return Err(ApiError::FaceMismatch);
    }
    let face_id = users::add_face(
        state.db(),
        user,
        embedding,
        state.engine().model_version(),
        RECOGNITION_NETWORK,
    )
    .await?
    .ok_or(ApiError::TooManyFaces(users::MAX_FACES_PER_USER))?;
    let face_count = users::face_count(state.db(), user).await?;
    Ok(FaceEnrolled {
        face_id,
        face_count,
        distance,
        liveness_score: analysis.liveness.map(|l| l.score),
        faces_detected: analysis.face_count,
    })
}

/// What proves, at erasure, that the bearer of the access token is the account's owner
/// now: a stolen access token alone must not be able to destroy an account.
#[derive(Debug)]
pub enum OwnerProof {
    /// The account's password.
    Password(String),
    /// A live photo matching the account's enrolled faces.
    Face(Bytes),
}

/// Authenticates `username` with `password`: the OpenID login page's fallback, where the
/// tenant enables it. The same lockout and fraud record as a login (a wrong password
/// counts against the client like a failed face); an unknown username costs the same
/// password hashing and gets the same answer as a wrong password.
pub async fn authenticate_password(
    state: &AppState,
    client: &Client,
    username: &str,
    password: &str,
) -> ApiResult<Authenticated> {
    let Some(user) = users::by_username(state.db(), username).await? else {
        let _ = state.passwords().hash(password).await;
        return Err(ApiError::InvalidCredentials);
    };
    match prove_owner(
        state,
        client,
        &user,
        OwnerProof::Password(password.to_owned()),
    )
    .await
    {
        Ok(()) => {}
        Err(ApiError::ReauthenticationFailed) => return Err(ApiError::InvalidCredentials),
        Err(e) => return Err(e),
    }
    if !user.is_active {
        return Err(ApiError::Inactive);
    }
    tracing::info!(event = "login_succeeded", user_id = %user.id, method = "password", "user logged in with a password");
    Ok(Authenticated {
        user,
        confidence: 0.0,
        liveness: None,
        faces_detected: 0,
    })
}

/// Checks an [`OwnerProof`] for `user`, counting a failed one against the client like a
/// failed login (so guessing is throttled and locked out the same way).
async fn prove_owner(
    state: &AppState,
    client: &Client,
    user: &UserRow,
    proof: OwnerProof,
) -> ApiResult<()> {
    admit_client(state, client, user).await?;
    let (proven, reason, liveness) = match proof {
        OwnerProof::Password(password) => {
            let phc = users::password_hash(state.db(), user.id)
                .await?
                .ok_or(ApiError::NotFound("user"))?;
            let ok = state
                .passwords()
                .verify(&password, &phc)
                .await
                .map_err(|e| ApiError::Internal(format!("password check: {e}")))?;
            (ok, FailureReason::InvalidPassword, None)
        }
        OwnerProof::Face(image) => {
            let analysis = analyze(state, image, Purpose::Identify).await?;
            if is_spoof(analysis.liveness.as_ref()) {
                return Err(ApiError::LivenessFailed);
            }
            let template = state
                .templates()
                .protect(analysis.face.embedding.as_slice());
            let distance = users::distance_to_user(
                state.db(),
                user.id,
                template.as_slice(),
                RECOGNITION_NETWORK,
            )
            .await?
            .unwrap_or(f32::INFINITY);
            let liveness = analysis.liveness.map(|l| l.score);
            (
                distance <= state.engine().tolerance(),
                FailureReason::NoMatch,
                liveness,
            )
        }
    };
    if proven {
        return Ok(());
    }
    let attempt = failed_attempt(client, Some(user.id), reason, None, liveness);
    record_failure(state, &attempt).await;
    tracing::warn!(event = "reauthentication_failed", user_id = %user.id, client_ip = %client.ip, "ownership proof refused");
    Err(ApiError::ReauthenticationFailed)
}

/// Erases the signed-in user and every template, once `proof` shows the owner is there.
pub async fn erase(
    state: &AppState,
    client: &Client,
    user: Uuid,
    proof: OwnerProof,
) -> ApiResult<()> {
    let row = users::by_id(state.db(), user)
        .await?
        .ok_or(ApiError::NotFound("user"))?;
    prove_owner(state, client, &row, proof).await?;
    if users::delete(state.db(), user).await? {
        state.gallery().invalidate();
        tracing::info!(event = "user_erased", user_id = %user, "user and biometric data erased");
        Ok(())
    } else {
        Err(ApiError::NotFound("user"))
    }
}

/// Keeps the user gauges current and deletes attempts past retention; run periodically.
pub async fn housekeeping(state: &AppState) -> Result<(), StoreError> {
    let now = Utc::now();
    let (_, active, locked) = users::counts(state.db(), now).await?;
    state.metrics().active_users.set(active);
    state.metrics().locked_accounts.set(locked);
    let cutoff =
        now - chrono::Duration::days(i64::from(state.config().failed_attempt_retention_days));
    let deleted = attempts::delete_older_than(state.db(), cutoff).await?;
    if deleted > 0 {
        tracing::info!(
            event = "attempts_expired",
            deleted,
            "deleted failed attempts past retention"
        );
    }
    Ok(())
}

/// A stored user as the API shows it at `now`.
pub fn user_out(row: UserRow, now: DateTime<Utc>) -> UserOut {
    UserOut::from_row(row, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_name_follows_the_loaded_model() {
        assert_eq!(
            RECOGNITION_NETWORK,
            format!(
                "{}/{}",
                crate::face::models::RECOGNITION_SOURCE,
                crate::face::embed::DIM
            )
        );
    }
}
