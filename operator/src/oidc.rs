//! The tenant's OpenID Connect clients (`spec.oidc`): the service's `ISSUER_URL` and
//! `OIDC_CLIENTS`, and one Secret per confidential client holding what the app mounts
//! (`issuer`, `client_id`, `client_secret`).
//!
//! A client secret is generated once, when its Secret does not exist, and read back from
//! that Secret afterwards: the operator never rotates it on its own (deleting the Secret
//! makes a new one, and the app must then be restarted with it). The service only ever
//! sees the secret's SHA-256.
//!
//! The Secret lives in the tenant's namespace (the tenant its controller), or in the
//! app's own namespace (`secretNamespace`) when that namespace accepts it by the
//! annotation [`ACCEPT_ANNOTATION`]: without that consent a tenant's author could make
//! the operator write into any namespace. No owner reference crosses namespaces, so such
//! a Secret names its tenant by [`TENANT_UID_ANNOTATION`] and is deleted by the operator
//! with the client or the tenant.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::crd::{FaceIdTenant, OidcClientSpec};

/// Label on every client Secret, naming its tenant (`<namespace>.<name>`), so stale ones
/// (of clients no longer declared) can be found and deleted.
pub const CLIENT_OF_LABEL: &str = "faceid.dev/oidc-client-of";
/// Annotation on a namespace: the tenants' namespaces (comma-separated) whose OpenID
/// clients may have their Secrets written into it.
pub const ACCEPT_ANNOTATION: &str = "faceid.dev/accept-oidc-client-secrets-from";
/// Annotation on a client Secret outside the tenant's namespace: the tenant's UID (what
/// an owner reference would say, had it been allowed across namespaces).
pub const TENANT_UID_ANNOTATION: &str = "faceid.dev/oidc-client-of-uid";

/// Where a client's Secret is: its namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretRef {
    /// The namespace (the tenant's, or the client's `secretNamespace`).
    pub namespace: String,
    /// The name ([`secret_name`]).
    pub name: String,
}

impl SecretRef {
    /// Where the Secret of `client` of `tenant` goes.
    pub fn of(tenant: &FaceIdTenant, client: &OidcClientSpec) -> Self {
        Self {
            namespace: client
                .secret_namespace
                .clone()
                .unwrap_or_else(|| tenant.namespace().unwrap_or_default()),
            name: secret_name(tenant, &client.client_id),
        }
    }

    /// Whether it is outside the tenant's namespace.
    pub fn is_elsewhere(&self, tenant: &FaceIdTenant) -> bool {
        Some(&self.namespace) != tenant.namespace().as_ref()
    }

    /// Its entry in `status.oidcClientSecrets`: the name in the tenant's namespace,
    /// `namespace/name` elsewhere.
    pub fn status_entry(&self, tenant: &FaceIdTenant) -> String {
        if self.is_elsewhere(tenant) {
            format!("{}/{}", self.namespace, self.name)
        } else {
            self.name.clone()
        }
    }

    /// The reference a [`status_entry`](Self::status_entry) of `tenant` stands for.
    pub fn from_status_entry(tenant: &FaceIdTenant, entry: &str) -> Self {
        match entry.split_once('/') {
            Some((namespace, name)) => Self {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            },
            None => Self {
                namespace: tenant.namespace().unwrap_or_default(),
                name: entry.to_owned(),
            },
        }
    }
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Whether `namespace` accepts client Secrets from tenants in `tenant_namespace` (its
/// [`ACCEPT_ANNOTATION`] lists it).
pub fn accepts(namespace: &Namespace, tenant_namespace: &str) -> bool {
    namespace
        .annotations()
        .get(ACCEPT_ANNOTATION)
        .is_some_and(|list| list.split(',').any(|n| n.trim() == tenant_namespace))
}

/// Whether `secret` is one of `tenant`'s client Secrets: controlled by it in its
/// namespace, annotated with its UID and labelled with its key elsewhere.
pub fn is_of(secret: &Secret, tenant: &FaceIdTenant) -> bool {
    if secret.namespace() == tenant.namespace() {
        return crate::resources::is_controlled_by(secret.owner_references(), tenant);
    }
    tenant.uid().is_some_and(|uid| {
        secret.annotations().get(TENANT_UID_ANNOTATION) == Some(&uid)
            && secret.labels().get(CLIENT_OF_LABEL) == Some(&client_of(tenant))
    })
}
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

/// The desired Secret of confidential client `client`: controlled by the tenant in its
/// namespace; in the client's `secretNamespace`, annotated with the tenant's UID.
pub fn client_secret(
    tenant: &FaceIdTenant,
    client: &OidcClientSpec,
    secret: &str,
    issuer: &str,
) -> Secret {
    let at = SecretRef::of(tenant, client);
    let elsewhere = at.is_elsewhere(tenant);
    let mut metadata = crate::resources::meta(tenant, at.name);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(CLIENT_OF_LABEL.to_owned(), client_of(tenant));
    if elsewhere {
        metadata.namespace = Some(at.namespace);
        metadata.owner_references = None;
        metadata.annotations = Some(BTreeMap::from([(
            TENANT_UID_ANNOTATION.to_owned(),
            tenant.uid().unwrap_or_default(),
        )]));
    }
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
            secret_namespace: None,
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

    #[test]
    fn a_secret_for_another_namespace_names_its_tenant_without_an_owner() {
        let t = tenant();
        let mut c = client("web", "confidential");
        c.secret_namespace = Some("storefront".to_owned());
        let s = client_secret(&t, &c, &"x".repeat(40), "https://login.example");
        assert_eq!(s.metadata.namespace.as_deref(), Some("storefront"));
        assert!(s.metadata.owner_references.is_none());
        assert_eq!(s.annotations()[TENANT_UID_ANNOTATION], "u-1");
        assert!(is_of(&s, &t));
        let at = SecretRef::of(&t, &c);
        assert_eq!(at.status_entry(&t), "storefront/faceid-oidc-acme-web");
        assert_eq!(SecretRef::from_status_entry(&t, &at.status_entry(&t)), at);
        // Another tenant of the same name elsewhere, or a lookalike without the UID.
        let mut other = t.clone();
        other.metadata.uid = Some("u-2".to_owned());
        assert!(!is_of(&s, &other));
        let mut forged = s.clone();
        forged.metadata.annotations = None;
        assert!(!is_of(&forged, &t));
        // In the tenant's own namespace, the owner reference decides.
        let own = client_secret(&t, &client("web", "confidential"), "y", "https://l");
        assert!(is_of(&own, &t) && !is_of(&own, &other));
        let entry = SecretRef::of(&t, &client("web", "confidential")).status_entry(&t);
        assert_eq!(entry, "faceid-oidc-acme-web");
        assert_eq!(SecretRef::from_status_entry(&t, &entry).namespace, "shop");
    }

    #[test]
    fn a_namespace_accepts_only_the_tenant_namespaces_it_lists() {
        let ns = |annotation: Option<&str>| -> Namespace {
            let mut n = Namespace::default();
            if let Some(a) = annotation {
                n.metadata.annotations = Some(BTreeMap::from([(
                    ACCEPT_ANNOTATION.to_owned(),
                    a.to_owned(),
                )]));
            }
            n
        };
        assert!(!accepts(&ns(None), "shop"));
        assert!(accepts(&ns(Some("shop")), "shop"));
        assert!(accepts(&ns(Some("billing, shop")), "shop"));
        assert!(!accepts(&ns(Some("shopping,shop-2")), "shop"));
        assert!(!accepts(&ns(Some("*")), "shop"));
    }
}
