//! FaceID service: one tenant's face-authentication API.
//!
//! Layout by role:
//! - [`face`]: turns an uploaded photo into a decision (decode, detect, align, embed,
//!   liveness) on ONNX Runtime; knows nothing of HTTP.
//! - [`domain`]: pure rules (matching, lockout, rate specs, tokens), time as a parameter.
//! - [`store`]: PostgreSQL (sqlx + pgvector) and the rate-limit counters.
//! - [`flows`]: the use cases (register, login, refresh, enrol, erase).
//! - [`openid`]: the tenant as an OpenID Provider (authorization code + PKCE, tokens,
//!   userinfo, logout, revocation, introspection), its login being the face login.
//! - [`http`]: router, extractors, handlers and the one error mapping.

pub mod config;
pub mod domain;
pub mod face;
pub mod flows;
pub mod http;
pub mod metrics;
pub mod openid;
pub mod passwords;
pub mod serve;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
