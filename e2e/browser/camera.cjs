// Drives the camera page in headless Chromium with a fake camera fed from a video file:
// registers, then logs in, and checks that the page shows success each time.
//   node e2e/browser/camera.cjs URL VIDEO.y4m SCREENSHOT.png USERNAME
// Needs CHROMIUM (path to the browser) and NODE_PATH (where playwright-core is installed);
// scripts/platform.sh browser provides both. playwright-core never downloads a browser.
'use strict';
const { chromium } = require('playwright-core');

const [url, video, screenshot, username] = process.argv.slice(2);
if (!url || !video || !screenshot || !username) {
  console.error('usage: camera.cjs URL VIDEO.y4m SCREENSHOT.png USERNAME');
  process.exit(2);
}

async function submitAndRead(page, expect) {
  try {
    await page.waitForSelector('#capture:not([disabled])', { timeout: 30000 });
  } catch (e) {
    const status = await page.$eval('#camera-status', (el) => el.innerText);
    throw new Error(`the camera did not start: ${status}`);
  }
  // Let a few frames arrive so the capture is of the photo, not a blank first frame.
  await page.waitForFunction(() => document.getElementById('video').readyState >= 2 && document.getElementById('video').videoWidth > 0);
  await page.waitForTimeout(300);
  await page.click('#capture');
  await page.waitForSelector('#submit:not([disabled])');
  await page.click('#submit');
  await page.waitForSelector('#result.ok, #result.bad', { timeout: 60000 });
  const ok = await page.$eval('#result', (el) => el.classList.contains('ok'));
  const text = await page.$eval('#result', (el) => el.innerText);
  if (!ok || !text.includes(expect)) {
    throw new Error(`expected "${expect}", page shows: ${text}`);
  }
  return text;
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
    const context = await browser.newContext({ viewport: { width: 1100, height: 760 } });
    await context.grantPermissions(['camera']);
    const page = await context.newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.error('page:', m.text()); });
    await page.goto(url, { waitUntil: 'load' });

    await page.click('#tab-register');
    await page.fill('#username', username);
    await page.fill('#email', `${username}@example.com`);
    await page.fill('#password', 'correct horse battery');
    results.register = await submitAndRead(page, `Registered as ${username}`);

    await page.click('#retake');
    await page.click('#tab-login');
    results.login = await submitAndRead(page, `Welcome back, ${username}`);
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(JSON.stringify({ ok: true, ...results }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e.message || e), ...results }));
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
