// The test page: "the app". It wires Backstage's own auth client exactly as
// examples/backstage tells an admin to (the factory in
// examples/backstage/packages/app/src/apis.ts, discovery from the app config
// in examples/backstage/app-config.yaml) and exposes it to the driver as
// window.e2e. The config comes from ./config.json, served by the Go test.
import {
  ConfigReader,
  FrontendHostDiscovery,
  OAuthRequestManager,
} from '@backstage/core-app-api';
import { spectroCloudAuthApiFactory } from '../../../../../examples/backstage/packages/app/src/apis';
import { spectroauthClusterCredential } from '../../../../../examples/backstage/packages/app/src/spectroauthCredential';

declare global {
  interface Window {
    e2e: Promise<E2E>;
  }
}

type E2E = {
  config: unknown;
  // Calls a method of the auth API and returns a plain, JSON-safe result.
  call(method: string, ...args: unknown[]): Promise<{ ok: true; value: unknown } | { ok: false; name: string; message: string }>;
  // Starts a call without waiting for it (redirect flow navigates away).
  start(method: string, ...args: unknown[]): void;
  authRequests: number;
  // Fetches a cluster's credential as the Kubernetes plugin's auth provider
  // in examples/backstage does (getIdToken of spectroauth-<cluster>).
  kubeCredential(cluster: string): Promise<{ ok: true; value: unknown } | { ok: false; name: string; message: string }>;
};

// What the page did, on the page itself: it shows in failure screenshots.
function log(line: string) {
  const el = document.getElementById('log');
  if (el) el.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
}

function plain(v: unknown): unknown {
  return v === undefined ? null : JSON.parse(JSON.stringify(v));
}

async function setup(): Promise<E2E> {
  const res = await fetch('./config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`config.json: ${res.status}`);
  const data = await res.json();
  const configApi = new ConfigReader(data, 'e2e');
  const discoveryApi = FrontendHostDiscovery.fromConfig(configApi);
  const oauthRequestApi = new OAuthRequestManager();
  const e2e: E2E = {
    config: data,
    authRequests: 0,
    async call(method, ...args) {
      const what = `${method}(${args.map(a => JSON.stringify(a)).join(', ')})`;
      log(`${what} …`);
      try {
        const value = await (auth as any)[method](...args);
        log(`${what} → ok`);
        return { ok: true, value: plain(value) };
      } catch (e: any) {
        const name = String(e?.name ?? 'Error');
        const message = String(e?.message ?? e);
        log(`${what} → ${name}: ${message}`);
        return { ok: false, name, message };
      }
    },
    start(method, ...args) {
      void e2e.call(method, ...args);
    },
    async kubeCredential(cluster) {
      try {
        const value = await spectroauthClusterCredential(discoveryApi, configApi, cluster).getIdToken();
        log(`kubeCredential(${cluster}) → ok`);
        return { ok: true, value };
      } catch (e: any) {
        log(`kubeCredential(${cluster}) → ${e?.name}: ${e?.message}`);
        return { ok: false, name: String(e?.name ?? 'Error'), message: String(e?.message ?? e) };
      }
    },
  };
  // No sign-in dialog here: approve every queued auth request at once, as a
  // user clicking "Sign in" in Backstage's OAuthRequestDialog would.
  oauthRequestApi.authRequest$().subscribe(requests => {
    for (const r of requests) {
      e2e.authRequests++;
      void r.trigger().catch(() => undefined);
    }
  });
  const auth = spectroCloudAuthApiFactory.factory({
    configApi,
    discoveryApi,
    oauthRequestApi,
  });
  document.getElementById('status')!.textContent = `ready: ${location.origin}`;
  return e2e;
}

window.e2e = setup();
window.e2e.catch(e => {
  document.getElementById('status')!.textContent = `setup failed: ${e}`;
});
