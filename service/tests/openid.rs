//! The OpenID Provider at the protocol level, against the real database and face engine:
//! discovery, authorization code + PKCE with the face login, the token endpoint's
//! refusals (wrong verifier, replayed code, wrong redirect URI or client), refresh
//! rotation, userinfo, revocation, introspection and RP-initiated logout. The same
//! flows driven by a certified relying-party library in a real browser are in
//! `e2e/tests/openid_rp.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod common;

use axum::body::Body;
use axum::http::{Request, header};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Multipart, Reply, Tenant, face};
use serde_json::Value;
use sha2::{Digest, Sha256};

const SECRET: &str = "app-secret-0123456789abcdef";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const SHOP: &str = "https://shop.example/cb";
const SPA: &str = "http://localhost:5173/cb";

fn clients() -> String {
    let hash: String = Sha256::digest(SECRET.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        r#"[{{"client_id":"shop","redirect_uris":["{SHOP}"],"post_logout_redirect_uris":["https://shop.example/bye"],"secret_sha256":"{hash}"}},
            {{"client_id":"spa","redirect_uris":["{SPA}"],"id_token_signed_response_alg":"ES256"}}]"#
    )
}

async fn tenant() -> Tenant {
    Tenant::new(&[
        "--oidc-clients",
        &clients(),
        "--issuer-url",
        "https://login.acme.example",
    ])
    .await
}

fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn authorize_query(client: &str, redirect: &str, extra: &[(&str, &str)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile email")
        .append_pair("state", "st-1")
        .append_pair("nonce", "n-0S6_WzA2Mj")
        .append_pair("code_challenge", &challenge(VERIFIER))
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    q.finish()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The face step for `query`; returns the redirect the page is told to follow.
async fn face_step(t: &Tenant, query: &str, photo: &str) -> Reply {
    let form = Multipart::new().file("face_image", "face.jpg", &face(photo));
    t.send(
        form.request(&format!("/authorize/face?{query}")),
        "192.0.2.50",
    )
    .await
}

async fn code_for(t: &Tenant, client: &str, redirect: &str) -> String {
    let r = face_step(
        t,
        &authorize_query(client, redirect, &[]),
        "genuine/colin_powell_2.jpg",
    )
    .await;
    r.expect(200);
    let to = r.json["redirect_to"].as_str().unwrap();
    assert!(to.starts_with(redirect), "{to}");
    assert_eq!(param(to, "state").as_deref(), Some("st-1"));
    assert_eq!(
        param(to, "iss").as_deref(),
        Some("https://login.acme.example")
    );
    param(to, "code").unwrap()
}

async fn post_form(
    t: &Tenant,
    path: &str,
    fields: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut r =
        Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        r = r.header(
            header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        );
    }
    t.send(r.body(Body::from(body)).unwrap(), "192.0.2.51")
        .await
}

async fn exchange(t: &Tenant, code: &str, verifier: &str) -> Reply {
    post_form(
        t,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", SHOP),
            ("code_verifier", verifier),
        ],
        Some(("shop", SECRET)),
    )
    .await
}

/// A refresh-token grant at `/token`, as `client` (`Some((id, secret))`: HTTP Basic;
/// `None`: the public client `spa`).
async fn refresh_as(t: &Tenant, token: &str, client: Option<(&str, &str)>) -> Reply {
    let mut fields = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    if client.is_none() {
        fields.push(("client_id", "spa"));
    }
    post_form(t, "/token", &fields, client).await
}

fn claims(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let mut next =
        || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap()).unwrap();
    let header = next();
    (header, next())
}

fn oauth_error(r: &Reply, status: u16, error: &str) {
    r.expect(status);
    assert_eq!(r.json["error"], error, "{}", r.text);
    assert!(
        r.json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
}

async fn user(t: &Tenant) {
    t.register("colin", &face("genuine/colin_powell_1.jpg"), "192.0.2.10")
        .await
        .expect(201);
}

#[tokio::test]
async fn discovery_names_the_endpoints_under_the_issuer() {
    let t = tenant().await;
    let r = t.get("/.well-known/openid-configuration", None).await;
    r.expect(200);
    let d = &r.json;
    assert_eq!(d["issuer"], "https://login.acme.example");
    assert_eq!(
        d["authorization_endpoint"],
        "https://login.acme.example/authorize"
    );
    assert_eq!(
        d["jwks_uri"],
        "https://login.acme.example/.well-known/jwks.json"
    );
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        d["id_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA", "ES256"])
    );
}

#[tokio::test]
async fn code_flow_with_pkce_issues_verifiable_tokens_once() {
    let t = tenant().await;
    user(&t).await;
    let page = t
        .get(
            &format!("/authorize?{}", authorize_query("shop", SHOP, &[])),
            None,
        )
        .await;
    page.expect(200);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'sha256-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.headers["cache-control"], "no-store");

    let code = code_for(&t, "shop", SHOP).await;
    let r = exchange(&t, &code, VERIFIER).await;
    r.expect(200);
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["scope"], "openid profile email");
    let (header, id) = claims(r.json["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string());
    assert_eq!(id["iss"], "https://login.acme.example");
    assert_eq!(id["aud"], "shop");
    assert_eq!(id["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(id["amr"], serde_json::json!(["face"]));
    assert_eq!(id["preferred_username"], "colin");
    assert_eq!(id["liveness"]["passed"], true);
    assert!(id["auth_time"].as_i64().unwrap() <= id["iat"].as_i64().unwrap());
    let (at_header, at) = claims(r.json["access_token"].as_str().unwrap());
    assert_eq!(at_header["typ"], "at+jwt");
    assert_eq!(at["client_id"], "shop");
    assert_eq!(at["iss"], "https://login.acme.example");
    let access = r.json["access_token"].as_str().unwrap().to_owned();
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();

    let info = t.get("/userinfo", Some(&access)).await;
    info.expect(200);
    assert_eq!(info.json["sub"], id["sub"]);
    assert_eq!(info.json["email"], "colin@example.com");
    assert_eq!(info.json["email_verified"], false);

    // The same code again: refused, and what it was exchanged for is revoked.
    oauth_error(&exchange(&t, &code, VERIFIER).await, 400, "invalid_grant");
    let r = t.get("/userinfo", Some(&access)).await;
    oauth_error(&r, 401, "invalid_token");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer error=\"invalid_token\"")
    );
    let r = refresh_as(&t, &refresh, Some(("shop", SECRET))).await;
    oauth_error(&r, 400, "invalid_grant");
}

#[tokio::test]
async fn the_token_endpoint_refuses_what_the_code_is_not_bound_to() {
    let t = tenant().await;
    user(&t).await;
    // Wrong verifier: refused, and the code is spent by the attempt.
    let code = code_for(&t, "shop", SHOP).await;
    oauth_error(
        &exchange(&t, &code, &"x".repeat(43)).await,
        400,
        "invalid_grant",
    );
    oauth_error(&exchange(&t, &code, VERIFIER).await, 400, "invalid_grant");
    // No verifier.
    let code = code_for(&t, "shop", SHOP).await;
    let r = post_form(
        &t,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP),
        ],
        Some(("shop", SECRET)),
    )
    .await;
    oauth_error(&r, 400, "invalid_grant");
    // Another redirect URI than the request's.
    let code = code_for(&t, "shop", SHOP).await;
    let r = post_form(
        &t,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "https://shop.example/other"),
            ("code_verifier", VERIFIER),
        ],
        Some(("shop", SECRET)),
    )
    .await;
    oauth_error(&r, 400, "invalid_grant");
    // Another client presenting shop's code.
    let code = code_for(&t, "shop", SHOP).await;
    let r = post_form(
        &t,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SHOP),
            ("code_verifier", VERIFIER),
            ("client_id", "spa"),
        ],
        None,
    )
    .await;
    oauth_error(&r, 400, "invalid_grant");
    // Client authentication: wrong secret, none for a confidential client, both methods.
    let code = code_for(&t, "shop", SHOP).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", SHOP),
        ("code_verifier", VERIFIER),
    ];
    let r = post_form(&t, "/token", &fields, Some(("shop", "wrong"))).await;
    oauth_error(&r, 401, "invalid_client");
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let mut no_secret = fields.to_vec();
    no_secret.push(("client_id", "shop"));
    oauth_error(
        &post_form(&t, "/token", &no_secret, None).await,
        401,
        "invalid_client",
    );
    // The code was not spent by the failed client authentications.
    let r = exchange(&t, &code, VERIFIER).await;
    r.expect(200);
    // Unknown grant, missing grant, a code that never existed.
    let r = post_form(
        &t,
        "/token",
        &[("grant_type", "password")],
        Some(("shop", SECRET)),
    )
    .await;
    oauth_error(&r, 400, "unsupported_grant_type");
    let r = post_form(&t, "/token", &[("code", "x")], Some(("shop", SECRET))).await;
    oauth_error(&r, 400, "invalid_request");
    oauth_error(
        &exchange(&t, "no-such-code", VERIFIER).await,
        400,
        "invalid_grant",
    );
    // A JSON body instead of a form.
    let r = t
        .post_json(
            "/token",
            serde_json::json!({"grant_type": "authorization_code"}),
            None,
        )
        .await;
    oauth_error(&r, 400, "invalid_request");
}

#[tokio::test]
async fn bad_authorization_requests_are_refused_without_trusting_the_redirect() {
    let t = tenant().await;
    for q in [
        authorize_query("shop", "https://evil.example/cb", &[]),
        authorize_query("nobody", SHOP, &[]),
        authorize_query("shop", "https://shop.example/cb/../cb", &[]),
    ] {
        let r = t.get(&format!("/authorize?{q}"), None).await;
        r.expect(400);
        assert!(r.headers.get("location").is_none());
        assert!(r.text.contains("not valid"), "{}", r.text);
    }
    for (extra, error) in [
        (&[("code_challenge_method", "plain")][..], "invalid_request"),
        (
            &[("response_type", "token")][..],
            "unsupported_response_type",
        ),
        (&[("prompt", "none")][..], "login_required"),
    ] {
        let mut q = authorize_query("shop", SHOP, &[]);
        for (k, v) in extra {
            q = q
                .split('&')
                .filter(|p| !p.starts_with(&format!("{k}=")))
                .collect::<Vec<_>>()
                .join("&");
            q.push_str(&format!("&{k}={v}"));
        }
        let r = t.get(&format!("/authorize?{q}"), None).await;
        r.expect(303);
        let to = r.headers["location"].to_str().unwrap();
        assert!(to.starts_with(SHOP), "{to}");
        assert_eq!(param(to, "error").as_deref(), Some(error), "{to}");
        assert_eq!(param(to, "state").as_deref(), Some("st-1"));
    }
    let r = t
        .get(
            &format!("/authorize/cancel?{}", authorize_query("shop", SHOP, &[])),
            None,
        )
        .await;
    r.expect(303);
    assert_eq!(
        param(r.headers["location"].to_str().unwrap(), "error").as_deref(),
        Some("access_denied")
    );
    // A face that matches nobody: shown on the page, no code.
    t.register("colin", &face("genuine/colin_powell_1.jpg"), "192.0.2.10")
        .await
        .expect(201);
    let r = face_step(
        &t,
        &authorize_query("shop", SHOP, &[]),
        "genuine/jim_parsons_1.png",
    )
    .await;
    r.expect_error(401, "face_not_recognized");
    assert_eq!(
        t.scalar_i64("SELECT count(*) FROM authorization_codes")
            .await,
        0
    );
}

#[tokio::test]
async fn public_client_refreshes_and_es256_id_tokens_follow_its_registration() {
    let t = tenant().await;
    user(&t).await;
    let code = code_for(&t, "spa", SPA).await;
    let r = post_form(
        &t,
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SPA),
            ("code_verifier", VERIFIER),
            ("client_id", "spa"),
        ],
        None,
    )
    .await;
    r.expect(200);
    let (header, _) = claims(r.json["id_token"].as_str().unwrap());
    assert_eq!(header["alg"], "ES256");
    let first = r.json["refresh_token"].as_str().unwrap().to_owned();
    let r = refresh_as(&t, &first, None).await;
    r.expect(200);
    let (_, id) = claims(r.json["id_token"].as_str().unwrap());
    assert!(id.get("nonce").is_none());
    assert_eq!(id["amr"], serde_json::json!(["face"]));
    let second = r.json["refresh_token"].as_str().unwrap().to_owned();
    // Another client cannot use it, and the attempt does not spend it.
    let r = refresh_as(&t, &second, Some(("shop", SECRET))).await;
    oauth_error(&r, 400, "invalid_grant");
    // The original API's refresh endpoint does not take it either.
    t.refresh(&second)
        .await
        .expect_error(401, "invalid_refresh_token");
    // Reuse of the spent one revokes the family.
    let r = refresh_as(&t, &first, None).await;
    oauth_error(&r, 400, "invalid_grant");
    let r = refresh_as(&t, &second, None).await;
    oauth_error(&r, 400, "invalid_grant");
    // An original-API refresh token is not an OpenID grant.
    let api = t
        .login(&face("genuine/colin_powell_2.jpg"), None, "192.0.2.60")
        .await;
    api.expect(200);
    let r = refresh_as(&t, &api.refresh_token(), None).await;
    oauth_error(&r, 400, "invalid_grant");
    // And its access token is not for /userinfo.
    oauth_error(
        &t.get("/userinfo", Some(&api.access_token())).await,
        401,
        "invalid_token",
    );
}

#[tokio::test]
async fn introspection_revocation_and_logout_take_effect_at_once() {
    let t = tenant().await;
    user(&t).await;
    let code = code_for(&t, "shop", SHOP).await;
    let r = exchange(&t, &code, VERIFIER).await;
    r.expect(200);
    let access = r.json["access_token"].as_str().unwrap().to_owned();
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();
    let id_token = r.json["id_token"].as_str().unwrap().to_owned();
    let introspect = |token: String| {
        let t = &t;
        async move {
            post_form(
                t,
                "/introspect",
                &[("token", &token)],
                Some(("shop", SECRET)),
            )
            .await
        }
    };
    let r = introspect(access.clone()).await;
    r.expect(200);
    assert_eq!(r.json["active"], true);
    assert_eq!(r.json["client_id"], "shop");
    assert_eq!(r.json["token_type"], "access_token");
    let r = introspect(refresh.clone()).await;
    assert_eq!(r.json["active"], true);
    assert_eq!(r.json["token_type"], "refresh_token");
    assert_eq!(introspect("garbage".into()).await.json["active"], false);
    // Public clients cannot introspect.
    let r = post_form(
        &t,
        "/introspect",
        &[("token", &access), ("client_id", "spa")],
        None,
    )
    .await;
    oauth_error(&r, 401, "invalid_client");

    // RP-initiated logout: back to the registered URI with the state; every token dead.
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", "https://shop.example/bye")
        .append_pair("state", "bye-1")
        .finish();
    let r = t.get(&format!("/logout?{q}"), None).await;
    r.expect(303);
    assert_eq!(
        r.headers["location"],
        "https://shop.example/bye?state=bye-1"
    );
    assert_eq!(introspect(access.clone()).await.json["active"], false);
    assert_eq!(introspect(refresh.clone()).await.json["active"], false);
    oauth_error(
        &t.get("/userinfo", Some(&access)).await,
        401,
        "invalid_token",
    );
    // An unregistered return address, or a forged hint, is refused on a page.
    let q = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("id_token_hint", &id_token)
        .append_pair("post_logout_redirect_uri", "https://evil.example/")
        .finish();
    let r = t.get(&format!("/logout?{q}"), None).await;
    r.expect(400);
    assert!(r.headers.get("location").is_none());
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    t.get(&format!("/logout?id_token_hint={forged}"), None)
        .await
        .expect(400);

    // Revocation (RFC 7009) of a fresh grant's refresh token.
    let code = code_for(&t, "shop", SHOP).await;
    let r = exchange(&t, &code, VERIFIER).await;
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();
    post_form(
        &t,
        "/revoke",
        &[("token", &refresh)],
        Some(("shop", SECRET)),
    )
    .await
    .expect(200);
    post_form(
        &t,
        "/revoke",
        &[("token", "unknown")],
        Some(("shop", SECRET)),
    )
    .await
    .expect(200);
    let r = refresh_as(&t, &refresh, Some(("shop", SECRET))).await;
    oauth_error(&r, 400, "invalid_grant");
}

#[tokio::test]
async fn deactivation_ends_access_at_once_and_expired_tokens_are_refused() {
    let t = tenant().await;
    user(&t).await;
    let code = code_for(&t, "shop", SHOP).await;
    let r = exchange(&t, &code, VERIFIER).await;
    r.expect(200);
    let access = r.json["access_token"].as_str().unwrap().to_owned();
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();
    let (_, id) = claims(r.json["id_token"].as_str().unwrap());
    let sub = id["sub"].as_str().unwrap().to_owned();
    t.admin_post(&format!("/api/v1/admin/users/{sub}/deactivate"))
        .await
        .expect(200);
    for token in [&access, &refresh] {
        let r = post_form(
            &t,
            "/introspect",
            &[("token", token)],
            Some(("shop", SECRET)),
        )
        .await;
        r.expect(200);
        assert_eq!(r.json["active"], false, "{}", r.text);
    }
    oauth_error(
        &t.get("/userinfo", Some(&access)).await,
        401,
        "invalid_token",
    );
    let r = refresh_as(&t, &refresh, Some(("shop", SECRET))).await;
    oauth_error(&r, 400, "invalid_grant");

    // A token of this provider's own keys, for an active user, that expired: refused.
    t.admin_post(&format!("/api/v1/admin/users/{sub}/activate"))
        .await
        .expect(200);
    let user: uuid::Uuid = sub.parse().unwrap();
    let generation = t
        .scalar_i64(&format!(
            "SELECT token_generation::bigint FROM users WHERE id = '{sub}'"
        ))
        .await;
    let now = chrono::Utc::now().timestamp();
    let claims = faceid_service::domain::tokens::AccessClaims {
        iss: "https://login.acme.example".into(),
        aud: t.state.tokens().audience().to_owned(),
        sub: user,
        exp: now - 3600,
        iat: now - 7200,
        nbf: now - 7200,
        jti: uuid::Uuid::new_v4(),
        typ: "access".into(),
        r#gen: i32::try_from(generation).unwrap(),
        client_id: Some("shop".into()),
        scope: Some("openid".into()),
    };
    let expired = t
        .state
        .tokens()
        .keys()
        .sign(
            faceid_keys::Alg::EdDsa,
            Some("at+jwt"),
            &claims,
            chrono::Utc::now(),
        )
        .unwrap();
    oauth_error(
        &t.get("/userinfo", Some(&expired)).await,
        401,
        "invalid_token",
    );
    let r = post_form(
        &t,
        "/introspect",
        &[("token", &expired)],
        Some(("shop", SECRET)),
    )
    .await;
    assert_eq!(r.json["active"], false);
    // The same token issued now works: the refusal above was the expiry.
    let fresh = t
        .state
        .tokens()
        .issue_client_access(
            user,
            i32::try_from(generation).unwrap(),
            "shop",
            "openid",
            chrono::Utc::now(),
        )
        .unwrap();
    t.get("/userinfo", Some(&fresh)).await.expect(200);
}

async fn password_step(t: &Tenant, username: &str, password: &str) -> Reply {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("username", username)
        .append_pair("password", password)
        .finish();
    let r = Request::post(format!(
        "/authorize/password?{}",
        authorize_query("shop", SHOP, &[])
    ))
    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    .body(Body::from(body))
    .unwrap();
    t.send(r, "192.0.2.70").await
}

#[tokio::test]
async fn the_password_fallback_is_off_unless_the_tenant_enables_it() {
    let off = tenant().await;
    user(&off).await;
    let page = off
        .get(
            &format!("/authorize?{}", authorize_query("shop", SHOP, &[])),
            None,
        )
        .await;
    assert!(page.text.contains("data-password-login=\"off\""));
    password_step(&off, "colin", "correct horse battery")
        .await
        .expect_error(403, "forbidden");

    let on = Tenant::new(&[
        "--oidc-clients",
        &clients(),
        "--issuer-url",
        "https://login.acme.example",
        "--oidc-password-login",
        "true",
    ])
    .await;
    user(&on).await;
    let page = on
        .get(
            &format!("/authorize?{}", authorize_query("shop", SHOP, &[])),
            None,
        )
        .await;
    page.expect(200);
    assert!(page.text.contains("data-password-login=\"on\""));
    // The page still runs within its policy (the marker is outside the hashed script).
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'sha256-"), "{csp}");
    password_step(&on, "colin", "wrong password")
        .await
        .expect_error(401, "invalid_credentials");
    password_step(&on, "nobody", "correct horse battery")
        .await
        .expect_error(401, "invalid_credentials");
    assert_eq!(
        on.scalar_i64(
            "SELECT count(*) FROM failed_login_attempts WHERE reason = 'invalid_password'"
        )
        .await,
        1
    );
    let r = password_step(&on, "colin", "correct horse battery").await;
    r.expect(200);
    let code = param(r.json["redirect_to"].as_str().unwrap(), "code").unwrap();
    let r = exchange(&on, &code, VERIFIER).await;
    r.expect(200);
    let (_, id) = claims(r.json["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    assert!(id.get("liveness").is_none());
}

/// A browser app (public client) calls `/token`, `/userinfo` and `/revoke` from the
/// origin of its redirect URI without any CORS setting; other origins get no CORS
/// headers there; the discovery document and the JWKS are open to any origin; the
/// original API keeps `CORS_ORIGINS` only.
#[tokio::test]
async fn browser_apps_reach_the_protocol_endpoints_from_their_own_origin() {
    let t = tenant().await;
    let preflight = |path: &str, origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri(path)
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
            .body(Body::empty())
            .unwrap()
    };
    let allowed = |r: &common::Reply| {
        r.headers
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    for path in ["/token", "/userinfo", "/revoke"] {
        // The SPA's redirect URI is http://localhost:5173/cb: its origin.
        let r = t
            .send(preflight(path, "http://localhost:5173"), "10.9.0.1")
            .await;
        assert_eq!(
            allowed(&r).as_deref(),
            Some("http://localhost:5173"),
            "{path}"
        );
        // The confidential client's origin is a server's, and strangers get nothing.
        for other in ["https://shop.example", "https://evil.example"] {
            let r = t.send(preflight(path, other), "10.9.0.1").await;
            assert_eq!(allowed(&r), None, "{path} from {other}");
        }
    }
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/jwks.json",
    ] {
        let r = t
            .send(
                Request::builder()
                    .uri(path)
                    .header(header::ORIGIN, "https://anyone.example")
                    .body(Body::empty())
                    .unwrap(),
                "10.9.0.1",
            )
            .await;
        r.expect(200);
        assert_eq!(allowed(&r).as_deref(), Some("*"), "{path}");
    }
    let r = t
        .send(
            preflight("/api/v1/auth/login", "http://localhost:5173"),
            "10.9.0.1",
        )
        .await;
    assert_eq!(
        allowed(&r),
        None,
        "the original API follows CORS_ORIGINS only"
    );
    // Method errors on the protocol endpoints keep the API's error body.
    t.get("/token", None)
        .await
        .expect_error(405, "method_not_allowed");
}
