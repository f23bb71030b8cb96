//! The tenant's OpenID Connect clients (`spec.oidc`): the service's `ISSUER_URL` and
//! `OIDC_CLIENTS`, and one Secret per confidential client holding what the app mounts
//! (`issuer`, `client_id`, `client_secret`).
//!
//! A client secret is generated once, when its Secret does not exist, and read back from
//! that Secret afterwards: the operator never rotates it on its own (deleting the Secret
//! makes a new one, and the app must then be restarted with it). The service only ever
//! sees the secret's SHA-256.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::crd::{FaceIdTenant, OidcClientSpec};

/// Label on every client Secret, naming its tenant (`<namespace>.<name>`), so stale ones
/// (of clients no longer declared) can be found and deleted.
pub const CLIENT_OF_LABEL: &str = "faceid.dev/oidc-client-of";
/// Keys of a client Secret.
pub mod keys {
    /// The issuer URL.
    pub const ISSUER: &str = "issuer";
    /// The client id.
    pub const CLIENT_ID: &str = "client_id";
    /// The client secret.
    pub const CLIENT_SECRET: &str = "client_secret";
}

/// Name of the Secret of confidential client `client_id` of `tenant`:
/// `faceid-oidc-<tenant>-<clientId>`, the client id lower-cased with `_` as `-`, plus a
/// short hash of the exact id when that changed it (so `App` and `app` never share one).
pub fn secret_name(tenant: &FaceIdTenant, client_id: &str) -> String {
    let cleaned: String = client_id
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            '_' => '-',
            c => c,
        })
        .collect();
    let cleaned = cleaned.trim_matches(|c| c == '-' || c == '.').to_owned();
    let suffix = if cleaned == client_id && !cleaned.is_empty() {
        String::new()
    } else {
        let h = Sha256::digest(client_id.as_bytes());
        format!("-{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
    };
    let sep = if cleaned.is_empty() { "" } else { "-" };
    format!("faceid-oidc-{}{sep}{cleaned}{suffix}", tenant.name_any())
}

/// The tenant key of [`CLIENT_OF_LABEL`] (a label value: `<namespace>.<name>`).
pub fn client_of(tenant: &FaceIdTenant) -> String {
    format!(
        "{}.{}",
        tenant.namespace().unwrap_or_default(),
        tenant.name_any()
    )
}

/// The `client_secret` stored in an existing client Secret, if any (at least 32 bytes).
pub fn stored_secret(secret: &Secret) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(keys::CLIENT_SECRET))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|v| v.len() >= 32)
}

/// `OIDC_CLIENTS` for the service: every declared client, a confidential one with the
/// SHA-256 of its secret (`secrets`, by client id).
pub fn render_clients(clients: &[OidcClientSpec], secrets: &BTreeMap<String, String>) -> String {
    let rendered: Vec<serde_json::Value> = clients
        .iter()
        .map(|c| {
            let mut v = serde_json::json!({
                "client_id": c.client_id,
                "redirect_uris": c.redirect_uris,
                "post_logout_redirect_uris": c.post_logout_redirect_uris,
            });
            if let Some(alg) = &c.id_token_signed_response_alg {
                v["id_token_signed_response_alg"] = serde_json::json!(alg);
            }
            if c.is_confidential()
                && let Some(secret) = secrets.get(&c.client_id)
            {
                let hash: String = Sha256::digest(secret.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                v["secret_sha256"] = serde_json::json!(hash);
            }
            v
        })
        .collect();
    serde_json::Value::Array(rendered).to_string()
}

/// The desired Secret of confidential client `client` (controlled by the tenant, in its
/// namespace).
pub fn client_secret(
    tenant: &FaceIdTenant,
    client: &OidcClientSpec,
    secret: &str,
    issuer: &str,
) -> Secret {
    let mut metadata = crate::resources::meta(tenant, secret_name(tenant, &client.client_id));
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(CLIENT_OF_LABEL.to_owned(), client_of(tenant));
    let data = BTreeMap::from([
        (
            keys::ISSUER.to_owned(),
            ByteString(issuer.as_bytes().to_vec()),
        ),
        (
            keys::CLIENT_ID.to_owned(),
            ByteString(client.client_id.as_bytes().to_vec()),
        ),
        (
            keys::CLIENT_SECRET.to_owned(),
            ByteString(secret.as_bytes().to_vec()),
        ),
    ]);
    Secret {
        metadata,
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> FaceIdTenant {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "faceid.dev/v1alpha1",
            "kind": "FaceIdTenant",
            "metadata": {"name": "acme", "namespace": "shop", "uid": "u-1"},
            "spec": {"database": {"connectionSecretRef": {"name": "pg"}, "schema": "acme"}}
        }))
        .unwrap()
    }

    fn client(id: &str, kind: &str) -> OidcClientSpec {
        OidcClientSpec {
            client_id: id.to_owned(),
            client_type: kind.to_owned(),
            redirect_uris: vec!["https://shop.example/cb".to_owned()],
            post_logout_redirect_uris: Vec::new(),
            id_token_signed_response_alg: None,
        }
    }

    #[test]
    fn secret_names_are_valid_and_distinct() {
        let t = tenant();
        assert_eq!(secret_name(&t, "shop-web"), "faceid-oidc-acme-shop-web");
        let upper = secret_name(&t, "Shop_Web");
        assert!(upper.starts_with("faceid-oidc-acme-shop-web-"), "{upper}");
        assert_ne!(secret_name(&t, "App"), secret_name(&t, "app"));
        for id in ["App", "a.b", "_x_", "..", "a-"] {
            let n = secret_name(&t, id);
            assert!(
                n.bytes().all(|b| b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || b == b'-'
                    || b == b'.')
                    && !n.ends_with('-')
                    && !n.ends_with('.'),
                "{id}: {n}"
            );
        }
    }

    #[test]
    fn only_confidential_clients_carry_a_secret_hash() {
        let secrets = BTreeMap::from([("web".to_owned(), "s".repeat(40))]);
        let json = render_clients(
            &[client("web", "confidential"), client("spa", "public")],
            &secrets,
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["client_id"], "web");
        assert_eq!(v[0]["secret_sha256"].as_str().unwrap().len(), 64);
        assert!(!json.contains(&"s".repeat(40)));
        assert!(v[1].get("secret_sha256").is_none());
        assert_eq!(v[1]["redirect_uris"][0], "https://shop.example/cb");
    }

    #[test]
    fn a_client_secret_names_its_tenant_and_holds_what_the_app_mounts() {
        let t = tenant();
        let s = client_secret(
            &t,
            &client("web", "confidential"),
            &"x".repeat(40),
            "https://login.example",
        );
        assert_eq!(s.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(s.labels()[CLIENT_OF_LABEL], "shop.acme");
        assert_eq!(stored_secret(&s), Some("x".repeat(40)));
        let data = s.data.unwrap();
        assert_eq!(data[keys::ISSUER].0, b"https://login.example");
        assert_eq!(data[keys::CLIENT_ID].0, b"web");
        assert!(s.metadata.owner_references.unwrap()[0].controller == Some(true));
    }
}
