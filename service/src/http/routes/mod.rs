//! Handlers: extract, call a flow, map the result. Each is annotated for the OpenAPI
//! document.

pub mod admin;
pub mod auth;
pub mod openid;
pub mod system;
pub mod users;
pub mod well_known;
