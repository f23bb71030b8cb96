"""The Python examples of docs/INTEGRATION.md, run against real tenants.

A Flask app signs in with Authlib exactly as the "Python (Authlib)" example does (the app
code below is the documented one), driven by Flask's test client; the face step is the
login page's own request (`POST /authorize/face` with the photo), as the page's script
sends it. A resource server then verifies the access token with PyJWT as the
"Verifying an access token" example does, and with introspection.

Usage: python oidc_authlib.py CONFIG.json, where CONFIG holds `tenants` (each `issuer`,
`client_id`, `client_secret`, `redirect_uri`, `photo`, `id_token_alg`). Prints one line
of JSON: `{"ok": bool, "checks": [...], "error": "..."}`.
"""

import json
import os
import sys
import urllib.parse

import jwt  # PyJWT, with cryptography
import requests
from authlib.integrations.flask_client import OAuth
from flask import Flask, jsonify, session, url_for

checks = []


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    checks.append(name)


def relying_party(tenant):
    """The documented Flask app, configured from the environment as the docs say."""
    os.environ["OIDC_ISSUER"] = tenant["issuer"]
    os.environ["OIDC_CLIENT_ID"] = tenant["client_id"]
    os.environ["OIDC_CLIENT_SECRET"] = tenant["client_secret"]
    redirect = urllib.parse.urlsplit(tenant["redirect_uri"])
    app = Flask(__name__)
    app.secret_key = os.urandom(16)
    app.config["SERVER_NAME"] = redirect.netloc
    app.config["PREFERRED_URL_SCHEME"] = redirect.scheme

    # --- as in docs/INTEGRATION.md ---
    oauth = OAuth(app)
    oauth.register(
        "faceid",
        server_metadata_url=f"{os.environ['OIDC_ISSUER']}/.well-known/openid-configuration",
        client_id=os.environ["OIDC_CLIENT_ID"],
        client_secret=os.environ["OIDC_CLIENT_SECRET"],
        client_kwargs={"scope": "openid profile email", "code_challenge_method": "S256"},
    )

    @app.route("/login")
    def login():
        return oauth.faceid.authorize_redirect(url_for("callback", _external=True))

    @app.route("/callback")
    def callback():
        token = oauth.faceid.authorize_access_token()  # verifies the ID token with the JWKS
        session["user"] = token["userinfo"]  # sub, amr, liveness, ...
        return jsonify(token)  # the docs redirect to "/"; the test reads the tokens
    # --- end of the documented app ---

    return app


def face_step(authorize_url, photo):
    """What the login page does: show the page, post the face, follow `redirect_to`."""
    page = requests.get(authorize_url, timeout=30)
    check_page = page.status_code == 200 and "text/html" in page.headers.get("content-type", "")
    query = urllib.parse.urlsplit(authorize_url).query
    base = authorize_url.split("?", 1)[0]
    with open(photo, "rb") as f:
        answer = requests.post(
            f"{base}/face?{query}",
            files={"face_image": ("face.png", f, "image/png")},
            timeout=60,
        )
    return check_page, answer


def sign_in(tenant, label):
    app = relying_party(tenant)
    browser = app.test_client()
    start = browser.get("/login")
    location = start.headers.get("Location", "")
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
    check(
        f"{label}: Authlib sends PKCE S256, state and nonce",
        start.status_code == 302
        and params.get("code_challenge_method") == "S256"
        and params.get("state")
        and params.get("nonce"),
        location,
    )
    page_ok, answer = face_step(location, tenant["photo"])
    check(f"{label}: the login page is served", page_ok)
    check(f"{label}: the face step answers where to go", answer.status_code == 200, answer.text)
    back = urllib.parse.urlsplit(answer.json()["redirect_to"])
    check(
        f"{label}: redirected to the registered callback",
        f"{back.scheme}://{back.netloc}{back.path}" == tenant["redirect_uri"],
        back.geturl(),
    )
    done = browser.get(f"{back.path}?{back.query}")
    check(f"{label}: Authlib's callback accepts the code", done.status_code == 200, done.text)
    token = done.get_json()
    user = token["userinfo"]
    header = jwt.get_unverified_header(token["id_token"])
    check(
        f"{label}: ID token verified by Authlib ({tenant['id_token_alg']})",
        header["alg"] == tenant["id_token_alg"] and user["iss"] == tenant["issuer"]
        and user["aud"] == tenant["client_id"] and user["nonce"] == params["nonce"],
        json.dumps(user),
    )
    check(
        f"{label}: amr face and the liveness claim",
        user.get("amr") == ["face"] and user.get("liveness", {}).get("passed") is True,
        json.dumps(user),
    )
    return token


def resource_server(tenant, other, token, label):
    """docs/INTEGRATION.md, "Verifying an access token at your resource server"."""
    issuer, access = tenant["issuer"], token["access_token"]
    # --- as in docs/INTEGRATION.md ---
    jwks = jwt.PyJWKClient(f"{issuer}/.well-known/jwks.json")
    key = jwks.get_signing_key_from_jwt(access)
    claims = jwt.decode(access, key.key, algorithms=["EdDSA", "ES256"], issuer=issuer,
                        options={"verify_aud": False})
    # --- end ---
    check(
        f"{label}: PyJWT verifies the access token with the JWKS",
        claims["client_id"] == tenant["client_id"] and claims["sub"] == token["userinfo"]["sub"],
        json.dumps(claims),
    )
    foreign = jwt.PyJWKClient(f"{other['issuer']}/.well-known/jwks.json")
    try:
        foreign_key = foreign.get_signing_key_from_jwt(access)
        jwt.decode(access, foreign_key.key, algorithms=["EdDSA", "ES256"],
                   issuer=other["issuer"], options={"verify_aud": False})
        refused = False
    except (jwt.PyJWKClientError, jwt.InvalidTokenError):
        refused = True
    check(f"{label}: the other tenant's JWKS refuses it", refused)
    auth = (tenant["client_id"], tenant["client_secret"])
    active = requests.post(f"{issuer}/introspect", data={"token": access}, auth=auth, timeout=30)
    check(
        f"{label}: introspection says active",
        active.status_code == 200 and active.json().get("active") is True,
        active.text,
    )
    spent = requests.post(
        f"{issuer}/revoke", data={"token": token["refresh_token"]}, auth=auth, timeout=30
    )
    refresh = requests.post(
        f"{issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=auth,
        timeout=30,
    )
    check(
        f"{label}: a revoked refresh token is refused",
        spent.status_code == 200 and refresh.status_code == 400
        and refresh.json().get("error") == "invalid_grant",
        f"{spent.status_code} {refresh.status_code} {refresh.text}",
    )
    revoked = requests.post(f"{issuer}/revoke", data={"token": access}, auth=auth, timeout=30)
    after = requests.post(f"{issuer}/introspect", data={"token": access}, auth=auth, timeout=30)
    check(
        f"{label}: a revoked access token is inactive at once",
        revoked.status_code == 200 and after.json() == {"active": False},
        f"{revoked.status_code} {after.text}",
    )


def main():
    with open(sys.argv[1]) as f:
        config = json.load(f)
    tenants = config["tenants"]
    try:
        tokens = [sign_in(t, f"tenant {chr(65 + i)}") for i, t in enumerate(tenants)]
        for i, (tenant, token) in enumerate(zip(tenants, tokens)):
            other = tenants[(i + 1) % len(tenants)]
            resource_server(tenant, other, token, f"tenant {chr(65 + i)}")
        print(json.dumps({"ok": True, "checks": checks}))
    except Exception as e:  # noqa: BLE001 - reported to the Rust test
        print(json.dumps({"ok": False, "checks": checks, "error": f"{type(e).__name__}: {e}"}))
        sys.exit(1)


if __name__ == "__main__":
    main()
