// Drives Backstage's own auth client (the bundled test page, dist/) in
// headless Chromium against spectroauthd. Started by host/e2e/e2e_test.go:
//
//   node browser.mjs <spec.json> <results.json>
//
// The spec says where the daemon, the app origins and Chromium are, what the
// signed-in user must look like, and where failure artefacts go. Each
// scenario is recorded in the results as {name, ok, skipped, ms, error,
// details, artifacts}; the Go test turns them into subtests. On a failure the
// scenario's last screenshots of the app page and of the popup, and the
// requests the browser made, are written under <artifacts>/<scenario>/.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const [specPath, resultsPath] = process.argv.slice(2);
if (!specPath || !resultsPath) {
  console.error('usage: node browser.mjs <spec.json> <results.json>');
  process.exit(2);
}
const spec = JSON.parse(readFileSync(specPath, 'utf8'));
const STEP_MS = spec.stepTimeoutMs ?? 15000;
const SCENARIO_MS = spec.scenarioTimeoutMs ?? 30000;
const results = [];

function writeResults() {
  writeFileSync(resultsPath, JSON.stringify(results, null, 2));
}

// The driver must end even if Chromium or playwright hangs.
const hardStop = setTimeout(() => {
  console.error(`browser: hard timeout after ${spec.totalTimeoutMs} ms`);
  results.push({ name: 'driver', ok: false, error: `hard timeout after ${spec.totalTimeoutMs} ms` });
  writeResults();
  process.exit(3);
}, spec.totalTimeoutMs ?? 120000);
hardStop.unref();

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}
// JSON with sorted keys, so that key order never matters.
function canon(v) {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v).sort().map(k => `${JSON.stringify(k)}:${canon(v[k])}`).join(',')}}`;
  }
  return JSON.stringify(v ?? null);
}
function same(actual, expected, what) {
  const a = canon(actual);
  const e = canon(expected);
  check(a === e, `${what}: got ${a}, want ${e}`);
}
function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      t = setTimeout(() => reject(new Failure(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}
function decodeJwt(token) {
  check(typeof token === 'string' && token.split('.').length === 3, `not a JWT: ${JSON.stringify(token)}`);
  const [h, p] = token.split('.');
  const dec = s => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));
  return { header: dec(h), payload: dec(p) };
}

// A browser session: one fresh Chromium profile, its pages, and what to
// save if the scenario fails.
class Session {
  static async open(name) {
    const s = new Session(name);
    s.dir = mkdtempSync(path.join(os.tmpdir(), 'spectroauth-e2e-chromium-'));
    s.context = await chromium.launchPersistentContext(s.dir, {
      executablePath: spec.chromium,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: STEP_MS,
    });
    s.context.setDefaultTimeout(STEP_MS);
    s.context.on('page', p => s.watch(p, 'page'));
    // The sign-in result page closes itself at once: keep its HTML (the
    // script that posts the result) from the response.
    let frames = 0;
    s.context.on('response', r => {
      if (!r.url().startsWith(`${spec.daemon}/api/auth/spectrocloud/handler/frame`)) return;
      const name = `handler-frame-${++frames}.html`;
      r.text()
        .then(body => s.shots.set(name, `<!-- ${r.status()} ${r.url()} -->\n${body}`))
        .catch(() => undefined);
    });
    s.page = s.context.pages()[0] ?? (await s.context.newPage());
    s.page.on('popup', p => {
      s.popups.push(p);
      s.watch(p, 'popup');
    });
    s.watch(s.page, 'app');
    return s;
  }

  constructor(name) {
    this.name = name;
    this.popups = [];
    this.log = [];
    this.shots = new Map(); // file name -> last screenshot (PNG) or HTML
    this.watched = new Set();
  }

  watch(p, label) {
    if (this.watched.has(p)) return;
    this.watched.add(p);
    const t0 = Date.now();
    const stamp = () => `${String(Date.now() - t0).padStart(6)} ms ${label}`;
    p.on('request', r => this.log.push(`${stamp()} > ${r.method()} ${r.url()}`));
    p.on('response', r => this.log.push(`${stamp()} < ${r.status()} ${r.url()}`));
    p.on('requestfailed', r => this.log.push(`${stamp()} ! ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    p.on('console', m => this.log.push(`${stamp()} console.${m.type()}: ${m.text()}`));
    p.on('pageerror', e => this.log.push(`${stamp()} pageerror: ${e}`));
    p.on('framenavigated', f => {
      if (f === p.mainFrame()) this.log.push(`${stamp()} navigated ${f.url()}`);
    });
    // Popups close themselves ~100 ms after posting their result: keep
    // their HTML and, if still possible, a picture as soon as they load.
    if (label === 'popup') {
      p.on('domcontentloaded', () => this.shoot(p, `popup-${this.popups.indexOf(p) + 1}`));
    }
  }

  async shoot(p, label) {
    try {
      if (!p.isClosed()) this.shots.set(`${label}.html`, `<!-- ${p.url()} -->\n${await p.content()}`);
      if (!p.isClosed()) this.shots.set(`${label}.png`, await p.screenshot({ timeout: 3000 }));
    } catch {
      // closed meanwhile: keep what we have
    }
  }

  async openApp(url) {
    const res = await this.page.goto(url, { waitUntil: 'load' });
    check(res && res.ok(), `app page ${url}: HTTP ${res && res.status()}`);
    await this.ready();
  }

  async ready() {
    await withTimeout(this.page.evaluate(() => window.e2e.then(() => true)), STEP_MS, 'test page setup');
  }

  async call(method, ...args) {
    return withTimeout(
      this.page.evaluate(([m, a]) => window.e2e.then(e => e.call(m, ...a)), [method, args]),
      STEP_MS,
      `${method}()`,
    );
  }

  async mustCall(method, ...args) {
    const r = await this.call(method, ...args);
    check(r.ok, `${method}() failed: ${r.name}: ${r.message}`);
    return r.value;
  }

  async saveFailure() {
    const dir = path.join(spec.artifacts, this.name.replace(/[^a-zA-Z0-9_.-]+/g, '-'));
    mkdirSync(dir, { recursive: true });
    await this.shoot(this.page, 'app');
    for (const [i, p] of this.popups.entries()) await this.shoot(p, `popup-${i + 1}`);
    const files = [];
    for (const [name, data] of this.shots) {
      const f = path.join(dir, name);
      writeFileSync(f, data);
      files.push(f);
    }
    const f = path.join(dir, 'browser.log');
    writeFileSync(f, this.log.join('\n') + '\n');
    files.push(f);
    return files;
  }

  async close() {
    await withTimeout(this.context.close(), 5000, 'closing Chromium').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

// Runs steps (name -> async fn(details)) in one browser session; a step
// after a failed one is reported as skipped.
async function scenarioGroup(group, steps) {
  // spec.groups picks the groups to run (default: all but kubernetes).
  if (!(spec.groups ?? ['session', 'origins', 'redirect']).includes(group)) return;
  let session;
  let failed = false;
  const t0 = Date.now();
  try {
    session = await Session.open(group);
    console.error(`browser: Chromium for "${group}" launched in ${Date.now() - t0} ms`);
  } catch (e) {
    for (const [name] of steps) results.push({ name, ok: false, error: `launching Chromium: ${e.message}` });
    writeResults();
    return;
  }
  for (const [name, fn] of steps) {
    if (failed) {
      results.push({ name, ok: false, skipped: true, error: 'an earlier step of this browser session failed' });
      continue;
    }
    if (spec.only && !spec.only.includes(name)) {
      results.push({ name, ok: false, skipped: true, error: 'not selected' });
      continue;
    }
    const details = {};
    const t0 = Date.now();
    const r = { name, ok: true, ms: 0, details };
    try {
      session.name = name;
      await withTimeout(fn(session, details), SCENARIO_MS, name);
    } catch (e) {
      failed = true;
      r.ok = false;
      r.error = e instanceof Failure ? e.message : String(e?.stack ?? e);
      r.artifacts = await session.saveFailure().catch(err => [`saving artefacts failed: ${err}`]);
    }
    r.ms = Date.now() - t0;
    results.push(r);
    writeResults();
    console.error(`browser: ${r.ok ? 'ok  ' : 'FAIL'} ${name} (${r.ms} ms)${r.ok ? '' : `: ${r.error}`}`);
  }
  const t1 = Date.now();
  await session.close();
  console.error(`browser: Chromium for "${group}" closed in ${Date.now() - t1} ms`);
}

const exp = spec.expect;
const startPrefix = `${spec.daemon}/api/auth/spectrocloud/start?`;

function checkIdentity(bi, details) {
  check(bi && typeof bi === 'object', `no Backstage identity: ${JSON.stringify(bi)}`);
  same(bi.identity?.type, 'user', 'identity.type');
  same(bi.identity?.userEntityRef, exp.userEntityRef, 'identity.userEntityRef');
  same(bi.identity?.ownershipEntityRefs, exp.ownershipEntityRefs, 'identity.ownershipEntityRefs');
  const { header, payload } = decodeJwt(bi.token);
  same(header.typ, 'vnd.backstage.user', 'Backstage token typ');
  same(header.alg, 'ES256', 'Backstage token alg');
  same(payload.sub, exp.userEntityRef, 'Backstage token sub');
  same(payload.iss, `${spec.daemon}/api/auth`, 'Backstage token iss');
  same(payload.aud, 'backstage', 'Backstage token aud');
  check(typeof payload.uip === 'string' && payload.uip.length > 0, 'Backstage token has no uip');
  check(payload.exp > Date.now() / 1000, `Backstage token already expired (exp ${payload.exp})`);
  details.backstageToken = { header, payload };
  return bi.token;
}

async function signInWithPopup(s, details) {
  const before = s.popups.length;
  const bi = await s.mustCall('getBackstageIdentity', { instantPopup: true });
  check(s.popups.length === before + 1, `expected one popup, saw ${s.popups.length - before}`);
  const popupUrl = s.popups[before].url();
  details.popupUrl = popupUrl;
  details.identity = bi.identity;
  return checkIdentity(bi, details);
}

const appPopup = `${spec.apps.allowed}/popup/`;

await scenarioGroup('session', [
  ['popup sign-in', async (s, d) => {
    await s.openApp(appPopup);
    await signInWithPopup(s, d);
    const profile = await s.mustCall('getProfile');
    d.profile = profile;
    same(profile, exp.profile, 'getProfile()');
    const idToken = await s.mustCall('getIdToken');
    const { payload } = decodeJwt(idToken);
    d.idTokenClaims = payload;
    same(payload.iss, exp.idToken.iss, 'ID token iss');
    check([].concat(payload.aud).includes(exp.idToken.aud), `ID token aud ${JSON.stringify(payload.aud)} lacks ${exp.idToken.aud}`);
    same(payload.sub, exp.idToken.sub, 'ID token sub');
    same(payload.email, exp.idToken.email, 'ID token email');
    const accessToken = await s.mustCall('getAccessToken');
    check(typeof accessToken === 'string' && accessToken.length > 0, 'getAccessToken() is empty');
  }],
  ['reload restores the session via /refresh', async (s, d) => {
    const popupsBefore = s.popups.length;
    await s.page.reload({ waitUntil: 'load' });
    await s.ready();
    const bi = await s.mustCall('getBackstageIdentity', { optional: true });
    checkIdentity(bi, d);
    same(await s.mustCall('getProfile', { optional: true }), exp.profile, 'getProfile() after reload');
    const idToken = await s.mustCall('getIdToken', { optional: true });
    same(decodeJwt(idToken).payload.email, exp.idToken.email, 'ID token email after reload');
    check(s.popups.length === popupsBefore, 'a popup opened although the session should come from /refresh');
    const refreshes = s.log.filter(l => l.includes('< 200 ') && l.includes('/api/auth/spectrocloud/refresh'));
    check(refreshes.length > 0, 'no successful /refresh seen');
  }],
  ['Kubernetes credential in the browser with the session cookie', async (s, d) => {
    const r = await s.page.evaluate(() => window.e2e.then(e => e.kubeCredential('prod')));
    d.result = r;
    check(r.ok, `the example's Kubernetes auth provider got no credential: ${JSON.stringify(r)}`);
    same(r.value, exp.kubeCredential, 'credential of cluster prod');
    // The user's Backstage token alone buys nothing.
    const bi = await s.mustCall('getBackstageIdentity', { optional: true });
    const res = await s.page.evaluate(async ([url, token]) => {
      const r = await fetch(url, { method: 'POST', headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, body: '{"cluster":"prod"}' });
      return { status: r.status, body: await r.text() };
    }, [`${spec.daemon}/api/auth/spectrocloud/kubernetes/credential`, bi.token]);
    d.withBackstageToken = res;
    same(res.status, 401, 'credential with the Backstage token');
  }],
  ['sign out ends the session', async (s, d) => {
    const mark = s.log.length;
    await s.mustCall('signOut');
    same(await s.mustCall('getBackstageIdentity', { optional: true }), null, 'identity right after signOut()');
    const after = s.log.slice(mark);
    check(after.some(l => / < 200 \S+\/api\/auth\/spectrocloud\/logout/.test(l)), `no successful /logout:\n${after.join('\n')}`);
    check(after.some(l => / < 401 \S+\/api\/auth\/spectrocloud\/refresh/.test(l)), `/refresh did not answer 401 after sign-out:\n${after.join('\n')}`);
    const cookies = await s.context.cookies(spec.daemon);
    d.cookiesLeft = cookies.map(c => c.name);
    check(!cookies.some(c => c.name.startsWith('spectrocloud-refresh-token')), `refresh cookie left after sign-out: ${d.cookiesLeft}`);
    await s.page.reload({ waitUntil: 'load' });
    await s.ready();
    same(await s.mustCall('getBackstageIdentity', { optional: true }), null, 'identity after sign-out and reload');
  }],
]);

await scenarioGroup('origins', [
  ['extra allowed origin (glob) signs in', async (s, d) => {
    await s.openApp(`${spec.apps.extra}/popup/`);
    await signInWithPopup(s, d);
  }],
  ['disallowed app origin is refused', async (s, d) => {
    await s.openApp(`${spec.apps.disallowed}/popup/`);
    const popupsBefore = s.popups.length;
    const r = await s.call('getBackstageIdentity', { instantPopup: true });
    d.result = r;
    check(!r.ok, `sign-in from a disallowed origin succeeded: ${JSON.stringify(r.value)}`);
    // /refresh carries no CORS grant for this origin, so Backstage's client
    // fails before it opens a popup.
    same(r.name, 'AuthConnectionError', 'error name');
    check(s.popups.length === popupsBefore, 'a popup opened for a disallowed origin');
    // Nor does it get a cluster credential (no CORS grant, no cookie use).
    const k = await s.page.evaluate(() => window.e2e.then(e => e.kubeCredential('prod')));
    d.kubeCredential = k;
    check(!k.ok, `a disallowed origin got a cluster credential: ${JSON.stringify(k)}`);
    // And the daemon refuses to start a sign-in for it.
    const origin = new URL(spec.apps.disallowed).origin;
    const res = await s.page.goto(`${startPrefix}scope=openid&origin=${encodeURIComponent(origin)}&flow=popup&env=development`);
    d.startStatus = res.status();
    same(res.status(), 403, '/start status for a disallowed origin');
  }],
]);

await scenarioGroup('redirect', [
  ['redirect flow', async (s, d) => {
    const appUrl = `${spec.apps.allowed}/redirect/?case=redirect`;
    await s.openApp(appUrl);
    // Every hop is a redirect, so only the requests show the round trip.
    const navs = [];
    let loads = 0;
    s.page.on('request', r => {
      if (r.isNavigationRequest() && r.frame() === s.page.mainFrame()) navs.push(r.url());
    });
    s.page.on('load', () => loads++);
    await s.page.evaluate(() => window.e2e.then(e => e.start('getBackstageIdentity', { instantPopup: true })));
    // The page leaves for the daemon and comes back to the same URL.
    const deadline = Date.now() + STEP_MS;
    const back = () => {
      const i = navs.findIndex(u => u.startsWith(startPrefix));
      return i >= 0 && navs.slice(i + 1).some(u => u.startsWith(spec.apps.allowed)) && loads > 0;
    };
    while (!back()) {
      check(Date.now() < deadline, `no round trip through the daemon: ${JSON.stringify(navs)}, ${loads} page loads`);
      await new Promise(r => setTimeout(r, 50));
    }
    d.navigations = navs;
    const start = new URL(navs.find(u => u.startsWith(startPrefix)));
    same(start.searchParams.get('flow'), 'redirect', 'flow of /start');
    same(start.searchParams.get('redirectUrl'), appUrl, 'redirectUrl of /start');
    same(navs.at(-1), appUrl, 'last navigation of the redirect flow');
    same(s.page.url(), appUrl, 'URL after the redirect flow');
    await s.ready();
    const bi = await s.mustCall('getBackstageIdentity', { optional: true });
    checkIdentity(bi, d);
    check(s.popups.length === 0, 'a popup opened in the redirect flow');
  }],
]);

// Backstage's Kubernetes plugin packages, wired as examples/backstage says:
// the real KubernetesAuthProviders (kubernetes-react) get the credential of a
// token-exchange cluster from the daemon in the browser, the real
// KubernetesBackendClient sends it to the real kubernetes backend, which
// forwards it to the cluster (kube-apiserver's authenticator, in the Go test).
const kube = spec.kubernetes;
async function kubeOp(s, op, ...args) {
  return withTimeout(
    s.page.evaluate(([o, a]) => window.e2e.then(e => e.kube(o, ...a)), [op, args]),
    STEP_MS,
    `kube.${op}()`,
  );
}
async function mustKube(s, op, ...args) {
  const r = await kubeOp(s, op, ...args);
  check(r.ok, `kube.${op}() failed: ${r.name}: ${r.message}`);
  return r.value;
}
const reviewInit = {
  method: 'POST',
  headers: { 'Content-Type': 'application/json' },
  body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }),
};
let kubeToken;
let backstageToken;

await scenarioGroup('kubernetes', [
  ['kubernetes: the auth provider gets the cluster credential', async (s, d) => {
    await s.openApp(appPopup);
    backstageToken = await signInWithPopup(s, d);
    const creds = await mustKube(s, 'getCredentials', kube.authProvider);
    kubeToken = creds.token;
    const { payload } = decodeJwt(kubeToken);
    d.credentialClaims = payload;
    same(payload.iss, kube.issuer, 'credential iss (the STS)');
    same(payload.aud, kube.audience, 'credential aud');
    same(payload.sub, kube.subject, 'credential sub');
    check(kubeToken !== backstageToken, 'the credential is the Backstage token');
    // The body form the plugin posts to /services and /resources.
    const body = await mustKube(s, 'decorate', kube.authProvider);
    same(body.auth?.oidc?.[kube.oidcTokenProvider], kubeToken, `auth.oidc.${kube.oidcTokenProvider} of the request body`);
  }],
  ['kubernetes: the backend proxies to the cluster as the user', async (s, d) => {
    const clusters = await mustKube(s, 'getClusters');
    d.clusters = clusters;
    const c = clusters.find(c => c.name === kube.cluster);
    check(c, `cluster ${kube.cluster} not among ${JSON.stringify(clusters)}`);
    same([c.authProvider, c.oidcTokenProvider], ['oidc', kube.oidcTokenProvider], 'cluster auth as the backend announces it');
    const r = await mustKube(s, 'proxy', { clusterName: kube.cluster, path: '/apis/authentication.k8s.io/v1/selfsubjectreviews', init: reviewInit });
    d.review = r;
    same(r.status, 201, `SelfSubjectReview through the kubernetes backend (${r.body})`);
    same(JSON.parse(r.body).status?.userInfo?.username, kube.subject, 'user the cluster authenticated');
    // KubernetesProxyClient (the pod drawer's events) goes the same way.
    const events = await mustKube(s, 'events', { clusterName: kube.cluster, involvedObjectName: 'e2e', namespace: 'default' });
    same(events, [], 'events of pod e2e');
  }],
  ['kubernetes: the plugin reads the entity\'s objects as the user', async (s, d) => {
    // useKubernetesObjects, as the entity page's Kubernetes tab: the auth
    // in the request body (auth.oidc), the backend's fan-out to the cluster.
    const entity = {
      apiVersion: 'backstage.io/v1alpha1',
      kind: 'Component',
      metadata: { name: 'e2e', namespace: 'default', annotations: { 'backstage.io/kubernetes-id': 'e2e' } },
      spec: { type: 'service', owner: 'user:default/alice', lifecycle: 'production' },
    };
    const r = await mustKube(s, 'objects', entity);
    d.objects = r;
    same(r.error, null, 'useKubernetesObjects error');
    const items = r.kubernetesObjects?.items ?? [];
    same(items.map(i => i.cluster?.name), [kube.cluster], 'clusters answering');
    same(items[0].errors, [], `errors fetching from ${kube.cluster}`);
    const pods = items[0].resources.find(r => r.type === 'pods')?.resources ?? [];
    same(pods.map(p => p.metadata?.annotations?.['e2e/authenticated-as']), [kube.subject], 'pods, each annotated by the cluster with whom it authenticated');
  }],
  ['kubernetes: the cluster refuses other credentials', async (s, d) => {
    const url = `${kube.backend}/api/kubernetes/proxy/apis/authentication.k8s.io/v1/selfsubjectreviews`;
    const header = `Backstage-Kubernetes-Authorization-oidc-${kube.oidcTokenProvider}`;
    const cases = {
      'the Backstage user token': backstageToken,
      'a forged credential': kube.forged,
      'an expired credential': kube.expired,
    };
    for (const [what, token] of Object.entries(cases)) {
      const r = await mustKube(s, 'fetch', url, { ...reviewInit, headers: { ...reviewInit.headers, 'Backstage-Kubernetes-Cluster': kube.cluster, [header]: token } });
      d[what] = r;
      same(r.status, 401, `the cluster's answer to ${what} (${r.body})`);
    }
    const r = await mustKube(s, 'fetch', url, { ...reviewInit, headers: { ...reviewInit.headers, 'Backstage-Kubernetes-Cluster': kube.cluster } });
    d.noCredential = r;
    check(r.status >= 400, `the kubernetes backend forwarded a request without a credential: ${r.status} ${r.body}`);
  }],
  ['kubernetes: another origin gets no credential with the same cookie', async (s, d) => {
    await s.openApp(`${spec.apps.disallowed}/popup/`);
    const k = await s.page.evaluate(c => window.e2e.then(e => e.kubeCredential(c)), kube.cluster);
    d.kubeCredential = k;
    check(!k.ok, `a disallowed origin got a cluster credential: ${JSON.stringify(k)}`);
    // The cookie is still there: the app's origin still gets one.
    await s.openApp(appPopup);
    const again = await s.page.evaluate(c => window.e2e.then(e => e.kubeCredential(c)), kube.cluster);
    check(again.ok, `the app lost its credential: ${JSON.stringify(again)}`);
  }],
  ['kubernetes: no credential after sign-out', async (s, d) => {
    await s.mustCall('signOut');
    await s.page.reload({ waitUntil: 'load' });
    await s.ready();
    const k = await s.page.evaluate(c => window.e2e.then(e => e.kubeCredential(c)), kube.cluster);
    d.kubeCredential = k;
    check(!k.ok && /refused/.test(k.message), `a credential after sign-out: ${JSON.stringify(k)}`);
  }],
]);

writeResults();
const failed = results.filter(r => !r.ok && !r.skipped).length;
console.error(`browser: ${results.length - failed} ok or skipped, ${failed} failed`);
// playwright can keep the event loop alive for a while after closing.
process.exit(0);
