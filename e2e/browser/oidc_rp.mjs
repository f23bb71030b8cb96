// A relying party built on a certified OpenID Connect client library (npm `openid-client`,
// by the author of the certified `oauth4webapi`), signing a user in to two tenants through
// their face-login pages in headless Chromium with a fake camera, then checking what a
// real app and a resource server would check, and what they must refuse.
//
//   node e2e/browser/oidc_rp.mjs <config.json>
//
// config.json: { video, tenants: [{ issuer, client_id, client_secret, redirect_uri,
// post_logout_redirect_uri, id_token_alg }, ...] } (written by e2e/tests/openid_rp.rs).
// Prints one JSON line per check, then a summary line { ok, checks, failures }; exits 1
// on any failure. Modules come from NODE_PATH (.dev/node/node_modules, installed by
// `scripts/platform.sh browser`).

import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const modules = process.env.NODE_PATH;
const load = (rel) => import(pathToFileURL(path.join(modules, rel)).href);
const client = await load('openid-client/build/index.js');
const jose = await load('jose/dist/webapi/index.js');
const { chromium } = await load('playwright-core/index.mjs');

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const checks = [];
const failures = [];
function check(name, ok, detail) {
  (ok ? checks : failures).push(name);
  console.log(JSON.stringify({ check: name, ok: !!ok, detail: ok ? undefined : String(detail) }));
}
async function refused(name, promise, expect) {
  try {
    await promise;
    check(name, false, 'accepted');
  } catch (e) {
    const text = `${e && e.code} ${e && e.error} ${e && e.message}`;
    check(name, !expect || text.includes(expect), text);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-video-capture=${config.video}`,
  ],
});

// The app's side of one sign-in: discovery, PKCE, state and nonce, the browser at the
// authorization URL, the face login, and the callback URL the browser was sent to.
async function signIn(t, label, tweak = {}) {
  const rp = await client.discovery(
    new URL(t.issuer), t.client_id,
    { client_secret: t.client_secret, id_token_signed_response_alg: t.id_token_alg },
    client.ClientSecretBasic(t.client_secret),
    { execute: [client.allowInsecureRequests] },
  );
  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const url = client.buildAuthorizationUrl(rp, {
    redirect_uri: tweak.redirect_uri || t.redirect_uri,
    scope: 'openid profile email',
    code_challenge: await client.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state, nonce,
  });
  const context = await browser.newContext({ viewport: tweak.phone ? { width: 390, height: 844 } : { width: 1000, height: 800 } });
  await context.grantPermissions(['camera'], { origin: new URL(t.issuer).origin });
  const page = await context.newPage();
  let callback = null;
  // The app's callback is not served: the URL the provider sent the browser to is all
  // the app needs.
  await page.route((u) => u.href.startsWith(t.redirect_uri), async (route) => {
    callback = route.request().url();
    await route.fulfill({ status: 200, contentType: 'text/plain', body: 'callback received' });
  });
  const shown = await page.goto(url.href);
  if (tweak.redirect_uri) {
    const answer = { status: shown.status(), text: await shown.text() };
    await context.close();
    return answer;
  }
  await page.waitForFunction(() => !document.getElementById('go').disabled, null, { timeout: 20000 });
  if (tweak.screenshot && config.artifacts) {
    await page.screenshot({ path: path.join(config.artifacts, tweak.screenshot) });
  }
  if (tweak.keyboard) {
    await page.focus('#go');
    await page.keyboard.press('Enter');
  } else {
    await page.click('#go');
  }
  await page.waitForFunction(() => document.body.innerText.includes('callback received'), null, { timeout: 30000 })
    .catch(async () => { throw new Error(`${label}: no callback; page says: ${await page.innerText('main').catch(() => '?')}`); });
  await context.close();
  return { rp, verifier, state, nonce, callback: new URL(callback) };
}

async function flow(t, label, other) {
  // One sign-in, exchanged with every check the library makes (state, iss, PKCE, ID
  // token signature against the JWKS, iss, aud, nonce, exp).
  const s = await signIn(t, label, { screenshot: label === 'tenant A' ? 'oidc-login-desktop.png' : undefined });
  check(`${label}: redirected back with code, state and iss`, s.callback.searchParams.get('code') && s.callback.searchParams.get('iss') === t.issuer, s.callback);
  const tokens = await client.authorizationCodeGrant(s.rp, s.callback, {
    pkceCodeVerifier: s.verifier, expectedState: s.state, expectedNonce: s.nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  check(`${label}: ID token validated by openid-client (signature via JWKS, iss, aud, nonce)`, claims && claims.iss === t.issuer && claims.aud === t.client_id, JSON.stringify(claims));
  check(`${label}: amr face, auth_time, liveness claim`, JSON.stringify(claims.amr) === '["face"]' && typeof claims.auth_time === 'number' && claims.liveness && claims.liveness.passed === true, JSON.stringify(claims));
  const header = JSON.parse(Buffer.from(tokens.id_token.split('.')[0], 'base64url'));
  check(`${label}: ID token signed ${t.id_token_alg}`, header.alg === t.id_token_alg, JSON.stringify(header));

  const info = await client.fetchUserInfo(s.rp, tokens.access_token, claims.sub);
  check(`${label}: userinfo for the same subject`, info.sub === claims.sub && info.preferred_username === t.username, JSON.stringify(info));

  // A resource server verifying the access token against the issuer's JWKS (jose).
  const jwks = jose.createRemoteJWKSet(new URL(`${t.issuer}/.well-known/jwks.json`));
  const { payload } = await jose.jwtVerify(tokens.access_token, jwks, { issuer: t.issuer, algorithms: ['EdDSA', 'ES256'] });
  check(`${label}: access token verifies at a resource server with the JWKS`, payload.sub === claims.sub && payload.client_id === t.client_id, JSON.stringify(payload));
  let introspected = await client.tokenIntrospection(s.rp, tokens.access_token);
  check(`${label}: introspection says active`, introspected.active === true && introspected.client_id === t.client_id, JSON.stringify(introspected));

  // Negative cases on the same grant.
  await refused(`${label}: replayed code refused`, client.authorizationCodeGrant(s.rp, s.callback, {
    pkceCodeVerifier: s.verifier, expectedState: s.state, expectedNonce: s.nonce,
  }), 'invalid_grant');
  check(`${label}: a replayed code revokes what it bought`, (await client.tokenIntrospection(s.rp, tokens.access_token)).active === false, 'still active');

  const s2 = await signIn(t, `${label} (2nd)`, { keyboard: true, phone: true, screenshot: label === 'tenant A' ? 'oidc-login-phone.png' : undefined });
  check(`${label}: signed in by keyboard on a phone viewport`, !!s2.callback.searchParams.get('code'), s2.callback);
  await refused(`${label}: wrong state refused by the client`, client.authorizationCodeGrant(s2.rp, s2.callback, {
    pkceCodeVerifier: s2.verifier, expectedState: 'not-the-state', expectedNonce: s2.nonce,
  }));
  await refused(`${label}: wrong PKCE verifier refused`, client.authorizationCodeGrant(s2.rp, s2.callback, {
    pkceCodeVerifier: client.randomPKCECodeVerifier(), expectedState: s2.state, expectedNonce: s2.nonce,
  }), 'invalid_grant');
  const s3 = await signIn(t, `${label} (3rd)`);
  await refused(`${label}: wrong nonce refused by the client`, client.authorizationCodeGrant(s3.rp, s3.callback, {
    pkceCodeVerifier: s3.verifier, expectedState: s3.state, expectedNonce: 'not-the-nonce',
  }));
  const s4 = await signIn(t, `${label} (4th)`);
  const wrongAud = await client.discovery(new URL(t.issuer), 'someone-else', { client_secret: t.client_secret, id_token_signed_response_alg: t.id_token_alg },
    client.ClientSecretBasic(t.client_secret), { execute: [client.allowInsecureRequests] });
  await refused(`${label}: a code for another client refused`, client.authorizationCodeGrant(wrongAud, s4.callback, {
    pkceCodeVerifier: s4.verifier, expectedState: s4.state, expectedNonce: s4.nonce,
  }));

  const bad = await signIn(t, `${label} (bad redirect)`, { redirect_uri: `${t.redirect_uri}/elsewhere` });
  check(`${label}: unregistered redirect URI shown an error, not redirected`, bad.status === 400 && bad.text.includes('not valid'), bad.status);

  // Refresh (rotated), then logout: introspection inactive at once, JWT still expires later.
  const s5 = await signIn(t, `${label} (5th)`);
  const t5 = await client.authorizationCodeGrant(s5.rp, s5.callback, {
    pkceCodeVerifier: s5.verifier, expectedState: s5.state, expectedNonce: s5.nonce,
  });
  const refreshed = await client.refreshTokenGrant(s5.rp, t5.refresh_token);
  check(`${label}: refresh rotates the refresh token and returns an ID token`, refreshed.refresh_token && refreshed.refresh_token !== t5.refresh_token && refreshed.claims().sub === t5.claims().sub, 'no rotation');
  await refused(`${label}: the spent refresh token is refused`, client.refreshTokenGrant(s5.rp, t5.refresh_token), 'invalid_grant');
  const logout = client.buildEndSessionUrl(s5.rp, {
    id_token_hint: refreshed.id_token, post_logout_redirect_uri: t.post_logout_redirect_uri, state: 'bye',
  });
  const res = await fetch(logout, { redirect: 'manual' });
  check(`${label}: RP-initiated logout returns to the app with its state`, res.status === 303 && res.headers.get('location') === `${t.post_logout_redirect_uri}?state=bye`, `${res.status} ${res.headers.get('location')}`);
  introspected = await client.tokenIntrospection(s5.rp, refreshed.access_token);
  check(`${label}: after logout introspection says inactive`, introspected.active === false, JSON.stringify(introspected));
  await refused(`${label}: after logout userinfo refuses the access token`, client.fetchUserInfo(s5.rp, refreshed.access_token, claims.sub));
  await refused(`${label}: after logout the refresh token is refused`, client.refreshTokenGrant(s5.rp, refreshed.refresh_token), 'invalid_grant');

  // Forgeries against the asymmetric keys: alg none, and HS256 keyed with a public key.
  const body = Buffer.from(JSON.stringify({ ...payload, exp: Math.floor(Date.now() / 1000) + 600 })).toString('base64url');
  const none = `${Buffer.from('{"alg":"none","typ":"at+jwt"}').toString('base64url')}.${body}.`;
  await refused(`${label}: alg none refused at userinfo`, client.fetchUserInfo(s5.rp, none, claims.sub));
  const { keys } = await (await fetch(`${t.issuer}/.well-known/jwks.json`)).json();
  const hs = await new jose.SignJWT({ ...payload, exp: Math.floor(Date.now() / 1000) + 600 })
    .setProtectedHeader({ alg: 'HS256', kid: keys[0].kid })
    .sign(Buffer.from(keys[0].x, 'base64url'));
  await refused(`${label}: HS256 keyed with the public key refused at userinfo`, client.fetchUserInfo(s5.rp, hs, claims.sub));
  check(`${label}: HS256 forgery inactive at introspection`, (await client.tokenIntrospection(s5.rp, hs)).active === false, 'active');
  return { access: t5.access_token, id: t5.id_token, sub: claims.sub };
}

try {
  const [a, b] = config.tenants;
  const fromA = await flow(a, 'tenant A');
  const fromB = await flow(b, 'tenant B');
  // Each tenant's tokens are refused by the other's keys.
  const jwksB = jose.createRemoteJWKSet(new URL(`${b.issuer}/.well-known/jwks.json`));
  const jwksA = jose.createRemoteJWKSet(new URL(`${a.issuer}/.well-known/jwks.json`));
  await refused("tenant A's access token refused by tenant B's JWKS", jose.jwtVerify(fromA.access, jwksB));
  await refused("tenant B's ID token refused by tenant A's JWKS", jose.jwtVerify(fromB.id, jwksA));
  // An app validating with the wrong issuer or audience refuses a genuine ID token.
  await refused("an ID token checked against another issuer is refused", jose.jwtVerify(fromA.id, jwksA, { issuer: b.issuer }));
  await refused("an ID token checked for another audience is refused", jose.jwtVerify(fromA.id, jwksA, { issuer: a.issuer, audience: 'another-app' }));
  const genuine = await jose.jwtVerify(fromA.id, jwksA, { issuer: a.issuer, audience: a.client_id, clockTolerance: 5 });
  check('the same ID token verifies for its own issuer and audience', genuine.payload.sub === fromA.sub, JSON.stringify(genuine.payload));
  const kidsA = (await (await fetch(`${a.issuer}/.well-known/jwks.json`)).json()).keys.map((k) => k.kid);
  const kidsB = (await (await fetch(`${b.issuer}/.well-known/jwks.json`)).json()).keys.map((k) => k.kid);
  check('the two tenants publish different keys', kidsA.every((k) => !kidsB.includes(k)), `${kidsA} / ${kidsB}`);
} catch (e) {
  check('the flow ran to its end', false, e && e.stack);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: failures.length === 0, checks, failures }));
process.exit(failures.length === 0 ? 0 : 1);
