// Drives the camera page in headless Chromium with a fake camera fed from a video file,
// on a desktop and on a phone viewport, and checks what people expect of it:
//   1. desktop: tabs and live regions carry their ARIA roles, the arrow keys move between
//      the tabs, password managers are not shut out (autocomplete), the front camera is
//      asked for once and mirrored in the preview only, it goes off while the page is
//      hidden and after a capture; registering needs the consent box; then log in;
//   2. phone (390x844, touch): the camera opens once on "Start camera", nothing overflows
//      the screen, an error lands in the alert region, then log in;
//   3. phone, camera denied: the upload fallback appears with a clear message, rejects a
//      file that is not a photo, and logs in with an uploaded photo;
//   4. no camera at all: the page starts on the upload fallback.
//   node e2e/browser/camera.cjs URL VIDEO.y4m SCREENSHOT_DIR USERNAME PHOTO
// Prints one JSON line: ok, the names of the checks that passed, the result texts.
// Needs CHROMIUM (path to the browser) and NODE_PATH (where playwright-core is installed);
// scripts/platform.sh browser provides both. playwright-core never downloads a browser.
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [url, video, shots, username, photo] = process.argv.slice(2);
if (!url || !video || !shots || !username || !photo) {
  console.error('usage: camera.cjs URL VIDEO.y4m SCREENSHOT_DIR USERNAME PHOTO');
  process.exit(2);
}

const passed = [];
function check(name, ok, detail) {
  if (!ok) throw new Error(`check "${name}" failed: ${JSON.stringify(detail)}`);
  passed.push(name);
}

// Counts the page's getUserMedia calls and keeps the streams, to see which tracks are live.
function recordCamera() {
  window.__violations = [];
  document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));
  window.__camera = { calls: [], streams: [] };
  const md = navigator.mediaDevices;
  const open = md.getUserMedia.bind(md);
  md.getUserMedia = async (constraints) => {
    window.__camera.calls.push(JSON.parse(JSON.stringify(constraints)));
    const stream = await open(constraints);
    window.__camera.streams.push(stream);
    return stream;
  };
}
function denyCamera() {
  window.__camera = { calls: [], streams: [] };
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    window.__camera.calls.push(constraints);
    throw new DOMException('Permission denied', 'NotAllowedError');
  };
}
// A first visit: the browser has not asked about the camera yet. (The fake media UI
// Chromium runs with answers "granted" to every permission query.)
function firstVisit() {
  const query = navigator.permissions.query.bind(navigator.permissions);
  navigator.permissions.query = (d) => (d && d.name === 'camera' ? Promise.resolve({ state: 'prompt' }) : query(d));
}
function noCamera() {
  Object.defineProperty(navigator, 'mediaDevices', { configurable: true, get: () => undefined });
}
const camera = (page) => page.evaluate(() => ({
  calls: window.__camera.calls.length,
  constraints: window.__camera.calls,
  live: window.__camera.streams.flatMap((s) => s.getTracks()).filter((t) => t.readyState === 'live').length,
}));

// Headless pages are never hidden: play the visibility change the way a tab switch does.
async function setHidden(page, hidden) {
  await page.evaluate((hidden) => {
    if (hidden) {
      Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
      Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    } else {
      delete document.visibilityState;
      delete document.hidden;
    }
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

const focused = (page) => page.evaluate(() => document.activeElement && document.activeElement.id);
const visible = (page, sel) => page.isVisible(sel);

async function waitLive(page) {
  try {
    await page.waitForSelector('#capture:not([disabled])', { timeout: 30000 });
  } catch (e) {
    const status = await page.$eval('#camera-status', (el) => el.innerText);
    const error = await page.$eval('#camera-error', (el) => el.innerText);
    throw new Error(`the camera did not start: ${status} ${error}`);
  }
  // Let a few frames arrive so the capture is of the photo, not a blank first frame.
  await page.waitForFunction(() => document.getElementById('video').readyState >= 2 && document.getElementById('video').videoWidth > 0);
  await page.waitForTimeout(300);
}

async function submitAndRead(page, expect, { tap = false, ok = true } = {}) {
  await page.waitForSelector('#submit:not([disabled])');
  await (tap ? page.tap('#submit') : page.click('#submit'));
  await page.waitForSelector('#result.ok, #result.bad', { timeout: 60000 });
  const isOk = await page.$eval('#result', (el) => el.classList.contains('ok'));
  const text = await page.$eval('#result', (el) => el.innerText);
  if (isOk !== ok || !text.includes(expect)) {
    throw new Error(`expected ${ok ? 'success' : 'an error'} with "${expect}", page shows: ${text}`);
  }
  return text;
}

async function desktop(browser, results) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
  await context.grantPermissions(['camera']);
  await context.addInitScript(recordCamera);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error('page:', m.text()); });
  const registers = [];
  page.on('request', (r) => { if (r.url().endsWith('/api/v1/auth/register')) registers.push(r); });
  await page.goto(url, { waitUntil: 'load' });

  // Screen readers: a tablist of two tabs, each naming its tabpanel; errors in alerts.
  const aria = await page.evaluate(() => {
    const list = document.querySelector('[role=tablist]');
    const tabs = [...list.querySelectorAll('[role=tab]')].map((t) => {
      const panel = document.getElementById(t.getAttribute('aria-controls'));
      return {
        id: t.id, selected: t.getAttribute('aria-selected'), tabIndex: t.tabIndex,
        panelRole: panel && panel.getAttribute('role'), panelHidden: panel && panel.hidden,
        panelLabel: panel && panel.getAttribute('aria-labelledby'),
      };
    });
    const role = (id) => document.getElementById(id).getAttribute('role');
    return {
      tabs, result: [role('result-status'), role('result-alert')],
      camera: [role('camera-status'), role('camera-error')],
      inResult: ['result-status', 'result-alert'].every((id) => document.getElementById('result').contains(document.getElementById(id))),
    };
  });
  check('tablist has two tabs', aria.tabs.length === 2, aria);
  check('login tab selected, its panel shown', aria.tabs[0].id === 'tab-login' && aria.tabs[0].selected === 'true'
    && aria.tabs[0].tabIndex === 0 && aria.tabs[0].panelRole === 'tabpanel' && !aria.tabs[0].panelHidden
    && aria.tabs[0].panelLabel === 'tab-login', aria);
  check('register tab not selected, its panel hidden', aria.tabs[1].selected === 'false' && aria.tabs[1].tabIndex === -1
    && aria.tabs[1].panelRole === 'tabpanel' && aria.tabs[1].panelHidden, aria);
  check('results and errors are live regions', aria.inResult && aria.result.join() === 'status,alert'
    && aria.camera.join() === 'status,alert', aria);

  await page.focus('#tab-login');
  await page.keyboard.press('ArrowRight');
  check('ArrowRight selects and focuses Register', await focused(page) === 'tab-register'
    && await page.getAttribute('#tab-register', 'aria-selected') === 'true'
    && await page.getAttribute('#tab-login', 'aria-selected') === 'false'
    && await visible(page, '#username') && !await visible(page, '#login-username'), await focused(page));
  await page.keyboard.press('ArrowRight');
  check('ArrowRight wraps to Log in', await focused(page) === 'tab-login' && await visible(page, '#login-username'), await focused(page));
  await page.keyboard.press('End');
  check('End selects Register', await focused(page) === 'tab-register', await focused(page));
  await page.keyboard.press('Home');
  check('Home selects Log in', await focused(page) === 'tab-login', await focused(page));

  // Password managers: named fields, nothing switched off.
  const autocomplete = await page.evaluate(() => ({
    off: document.querySelectorAll('[autocomplete=off]').length,
    ...Object.fromEntries(['username', 'email', 'password', 'login-username']
      .map((id) => [id, document.getElementById(id).getAttribute('autocomplete')])),
  }));
  check('autocomplete attributes for password managers', autocomplete.off === 0 && autocomplete.username === 'username'
    && autocomplete.email === 'email' && autocomplete.password === 'new-password'
    && autocomplete['login-username'] === 'username', autocomplete);

  // The camera is allowed already, so it opens by itself: the front one, once.
  await waitLive(page);
  let cam = await camera(page);
  check('front camera asked for', cam.calls === 1 && cam.constraints[0].video.facingMode === 'user', cam);
  await page.evaluate(() => { const b = document.getElementById('start'); b.click(); b.click(); });
  await page.waitForTimeout(300);
  cam = await camera(page);
  check('Start camera again does not open a second stream', cam.calls === 1 && cam.live === 1, cam);

  const transforms = await page.evaluate(() => ['video', 'snapshot'].map((id) => getComputedStyle(document.getElementById(id)).transform));
  check('preview mirrored, snapshot not', transforms[0] === 'matrix(-1, 0, 0, 1, 0, 0)' && transforms[1] === 'none', transforms);

  await setHidden(page, true);
  await page.waitForTimeout(200);
  cam = await camera(page);
  check('camera off while the page is hidden', cam.live === 0 && await page.isDisabled('#capture'), cam);
  await setHidden(page, false);
  await waitLive(page);
  cam = await camera(page);
  check('camera back when the page is shown', cam.calls === 2 && cam.live === 1, cam);

  // Register: the captured frame is the camera's, not the mirror image.
  await page.click('#tab-register');
  await page.fill('#username', username);
  await page.fill('#email', `${username}@example.com`);
  await page.fill('#password', 'correct horse battery');
  await page.evaluate(() => {
    const v = document.getElementById('video');
    const c = document.createElement('canvas');
    c.width = v.videoWidth;
    c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0);
    window.__reference = c;
  });
  await page.click('#capture');
  await page.waitForSelector('#submit:not([disabled])');
  cam = await camera(page);
  check('camera off after capture', cam.live === 0, cam);
  check('focus moves to the submit button after capture', await focused(page) === 'submit', await focused(page));
  const diff = await page.evaluate(() => {
    const small = (src, mirror) => {
      const c = document.createElement('canvas');
      c.width = 64;
      c.height = 48;
      const g = c.getContext('2d');
      if (mirror) { g.translate(64, 0); g.scale(-1, 1); }
      g.drawImage(src, 0, 0, 64, 48);
      return g.getImageData(0, 0, 64, 48).data;
    };
    const shot = small(document.getElementById('snapshot'), false);
    const mean = (other) => other.reduce((sum, v, i) => sum + Math.abs(v - shot[i]), 0) / other.length;
    return { same: mean(small(window.__reference, false)), mirrored: mean(small(window.__reference, true)) };
  });
  check('captured photo is not mirrored', diff.same < 6 && diff.mirrored > 2 * diff.same, diff);

  await page.screenshot({ path: path.join(shots, 'camera-desktop-register.png'), fullPage: true });
  await page.click('#submit');
  await page.waitForTimeout(300);
  check('no enrolment without consent', registers.length === 0 && await focused(page) === 'consent'
    && await page.$eval('#consent', (el) => el.matches(':invalid')), { sent: registers.length, focus: await focused(page) });
  const consent = await page.$eval('#consent', (el) => el.labels[0].innerText + ' ' + document.getElementById(el.getAttribute('aria-describedby')).innerText);
  check('consent explains the stored template', /face template/.test(consent) && /log in/.test(consent), consent);
  await page.check('#consent');
  results.register = await submitAndRead(page, `Registered as ${username}`);
  check('registration sent once', registers.length === 1, registers.length);

  await page.click('#retake');
  await waitLive(page);
  cam = await camera(page);
  check('Retake opens the camera again, once', cam.calls === 3 && cam.live === 1, cam);
  await page.click('#tab-login');
  await page.click('#capture');
  results.login = await submitAndRead(page, `Welcome back, ${username}`);
  check('login with the fake camera', results.login.includes('Confidence score'), results.login);
  await page.screenshot({ path: path.join(shots, 'camera-desktop.png'), fullPage: true });

  await page.click('#retake');
  await waitLive(page);
  await page.click('#use-upload');
  cam = await camera(page);
  check('camera off when switching to upload', cam.live === 0 && await visible(page, '#upload-fallback')
    && await focused(page) === 'upload', cam);
  const violations = await page.evaluate(() => window.__violations);
  check('the page runs within its Content-Security-Policy', violations.length === 0, violations);
  await context.close();
}

const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true,
  userAgent: 'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36',
};

async function phone(browser, results) {
  // Not granted beforehand: the camera waits for "Start camera" (the fake UI then allows it).
  const context = await browser.newContext(PHONE);
  await context.addInitScript(firstVisit);
  await context.addInitScript(recordCamera);
  const page = await context.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.error('page (phone):', m.text()); });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForTimeout(300);
  let cam = await camera(page);
  check('phone: camera waits for the user', cam.calls === 0 && await page.isEnabled('#start'), cam);
  await page.evaluate(() => { const b = document.getElementById('start'); b.click(); b.click(); });
  await waitLive(page);
  await page.waitForTimeout(300);
  cam = await camera(page);
  check('phone: one stream for repeated Start camera', cam.calls === 1 && cam.live === 1
    && cam.constraints[0].video.facingMode === 'user', cam);
  check('phone: focus moves to Capture', await focused(page) === 'capture', await focused(page));

  const layout = await page.evaluate(() => ({
    width: document.documentElement.scrollWidth, viewport: innerWidth,
    buttons: [...document.querySelectorAll('button, input')].filter((el) => el.offsetParent && !el.classList.contains('link'))
      .map((el) => [el.id, el.getBoundingClientRect().height]),
    inputFont: parseFloat(getComputedStyle(document.getElementById('login-username')).fontSize),
  }));
  check('phone: nothing wider than the screen', layout.width <= layout.viewport, layout);
  check('phone: touch-sized buttons, no zoom on focus', layout.buttons.length >= 5 && layout.buttons.every(([, h]) => h >= 44) && layout.inputFont >= 16, layout);

  // An error is announced (alert region), then the same photo logs in.
  await page.fill('#login-username', 'nobody_here');
  await page.tap('#capture');
  const refused = await submitAndRead(page, 'Status', { tap: true, ok: false });
  const regions = await page.evaluate(() => [document.getElementById('result-alert').innerText, document.getElementById('result-status').innerText]);
  check('phone: error in the alert region', regions[0].trim() === refused.trim() && regions[1] === '', regions);
  await page.fill('#login-username', '');
  results.phone_login = await submitAndRead(page, `Welcome back, ${username}`, { tap: true });
  check('phone: login with the fake camera', results.phone_login.includes('Confidence score'), results.phone_login);
  cam = await camera(page);
  check('phone: camera off after capture', cam.live === 0, cam);
  await page.screenshot({ path: path.join(shots, 'camera-phone.png'), fullPage: true, scale: 'css' });
  await context.close();
}

async function denied(browser, results) {
  const context = await browser.newContext(PHONE);
  await context.addInitScript(firstVisit);
  await context.addInitScript(denyCamera);
  const page = await context.newPage();
  await page.goto(url, { waitUntil: 'load' });
  await page.tap('#start');
  await page.waitForSelector('#upload-fallback', { state: 'visible' });
  const message = await page.$eval('#camera-error', (el) => el.innerText);
  check('denied: clear message in an alert', /denied/i.test(message) && /upload/i.test(message)
    && await page.getAttribute('#camera-error', 'role') === 'alert', message);
  const input = await page.evaluate(() => {
    const el = document.getElementById('upload');
    return [el.type, el.accept, el.getAttribute('capture'), document.activeElement === el];
  });
  check('denied: upload input for a front-camera photo, focused', input.join() === 'file,image/*,user,true', input);
  await page.screenshot({ path: path.join(shots, 'camera-phone-denied.png'), fullPage: true, scale: 'css' });

  await page.setInputFiles('#upload', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not a photo') });
  check('denied: a file that is not a photo is refused', /not a photo/.test(await page.$eval('#camera-error', (el) => el.innerText))
    && await page.isDisabled('#submit'), await page.$eval('#camera-error', (el) => el.innerText));
  await page.setInputFiles('#upload', photo);
  results.upload_login = await submitAndRead(page, `Welcome back, ${username}`, { tap: true });
  check('denied: login with an uploaded photo', results.upload_login.includes('Confidence score'), results.upload_login);
  await context.close();

  const bare = await browser.newContext(PHONE);
  await bare.addInitScript(noCamera);
  const plain = await bare.newPage();
  await plain.goto(url, { waitUntil: 'load' });
  check('no camera: the page starts on the upload fallback', await visible(plain, '#upload-fallback')
    && !await visible(plain, '#start') && (await plain.$eval('#camera-error', (el) => el.innerText)).length > 0,
  await plain.$eval('#camera-error', (el) => el.innerText));
  await bare.close();
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    chromiumSandbox: false,
    args: [
      '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
      `--use-file-for-fake-video-capture=${video}`,
    ],
  });
  const results = {};
  try {
    await desktop(browser, results);
    await phone(browser, results);
    await denied(browser, results);
    console.log(JSON.stringify({ ok: true, checks: passed, ...results }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e.message || e), checks: passed, ...results }));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
