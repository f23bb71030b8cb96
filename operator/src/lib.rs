//! The FaceID Kubernetes operator: the `FaceIdTenant` resource and its reconciler.
//!
//! Also a library, so that end-to-end tests provision tenants with exactly the code the
//! reconciler runs:
//! - [`database::provision`] / [`database::deprovision`]: a tenant's schema, role,
//!   migrations and HNSW index in PostgreSQL ([`database::provision_schema`] and
//!   [`database::rebuild_index`] are the two halves the reconciler calls, the rebuild in
//!   the background);
//! - [`config::render_env`]: the environment a tenant's service process gets;
//! - [`resources::build`]: the Kubernetes objects of a tenant (pure);
//! - [`crd::validate`] / [`crd::validate_tenant`]: every rule of the resource's schema
//!   (and of its name), in Rust.

pub mod conditions;
pub mod config;
pub mod controller;
pub mod crd;
pub mod database;
pub mod health;
pub mod leader;
pub mod login;
pub mod metrics;
pub mod monitoring;
pub mod oidc;
pub mod resources;
pub mod signing_keys;

pub use crd::{FaceIdTenant, FaceIdTenantSpec, FaceIdTenantStatus};
