// Clicks through the page `make run` sends a newcomer to: the daemon on its
// embedded development defaults, its demo page at /, the "Sign in with
// SpectroCloud" button, the development provider's login page in the popup,
// a user, and back. Started by host/e2e/demo_test.go:
//
//   node demo.mjs <chromium> <daemon base URL> <artifacts dir>
//
// Prints one JSON line with what the page showed; exits non-zero on failure
// (after saving screenshots to the artifacts dir).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [executablePath, base, artifacts] = process.argv.slice(2);
const hardStop = setTimeout(() => { console.error('demo: hard timeout'); process.exit(3); }, 60000);
hardStop.unref();

const profile = mkdtempSync(path.join(os.tmpdir(), 'spectroauth-demo-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const page = await ctx.newPage();
let popup;
try {
  page.setDefaultTimeout(15000);
  await page.goto(base + '/');
  [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#sign-in')]);
  await popup.waitForLoadState();
  const warning = await popup.textContent('body');
  if (!/not for production/i.test(warning)) throw new Error('the login page does not say it is for development only');
  await popup.click('button[value="alice"]');
  await page.waitForSelector('#signed-in:not([hidden])');
  const shown = {
    displayName: await page.textContent('#display-name'),
    email: await page.textContent('#email'),
    identity: JSON.parse(await page.textContent('#identity')),
    idClaims: JSON.parse(await page.textContent('#id-claims')),
  };
  // A reload gets the session back through /refresh.
  await page.reload();
  await page.waitForSelector('#signed-in:not([hidden])');
  shown.afterReload = await page.textContent('#display-name');
  await page.click('#sign-out');
  await page.waitForSelector('#signed-out:not([hidden])');
  await page.reload();
  await page.waitForSelector('#signed-out:not([hidden])');
  shown.signedOut = true;
  console.log(JSON.stringify(shown));
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  console.error('demo:', e.message);
  await page.screenshot({ path: path.join(artifacts, 'demo-page.png') }).catch(() => {});
  if (popup && !popup.isClosed()) await popup.screenshot({ path: path.join(artifacts, 'demo-popup.png') }).catch(() => {});
  await ctx.close().catch(() => {});
  process.exit(1);
}
