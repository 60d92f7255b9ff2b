// The test page: "the app". It wires Backstage's own auth client and
// Kubernetes plugin APIs exactly as examples/backstage tells an admin to (the
// factories in examples/backstage/packages/app/src/{apis,kubernetes}.ts,
// discovery from the app config in examples/backstage/app-config.yaml) and
// exposes them to the driver as window.e2e. The config comes from ./config.json, served by the Go test.
import {
  ApiProvider,
  ConfigReader,
  FetchMiddlewares,
  FrontendHostDiscovery,
  GitlabAuth,
  GoogleAuth,
  MicrosoftAuth,
  OAuthRequestManager,
  OktaAuth,
  OneLoginAuth,
  createFetchApi,
} from '@backstage/core-app-api';
import { UserIdentity } from '@backstage/core-components';
import {
  type KubernetesAuthProvidersApi,
  KubernetesBackendClient,
  KubernetesProxyClient,
  kubernetesApiRef,
  kubernetesAuthProvidersApiRef,
  useKubernetesObjects,
} from '@backstage/plugin-kubernetes-react';
import type { Entity } from '@backstage/catalog-model';
import type { FetchApi } from '@backstage/core-plugin-api';
import { createElement, useEffect } from 'react';
import { createRoot } from 'react-dom/client';
import { spectroCloudAuthApiFactory } from '../../../../../examples/backstage/packages/app/src/apis';
import { kubernetesAuthProvidersApiFactory } from '../../../../../examples/backstage/packages/app/src/kubernetes';
import { spectroauthClusterCredential } from '../../../../../examples/backstage/packages/app/src/spectroauthCredential';

declare global {
  interface Window {
    e2e: Promise<E2E>;
  }
}

type Outcome = { ok: true; value: unknown } | { ok: false; name: string; message: string };

type E2E = {
  config: unknown;
  // Calls a method of the auth API and returns a plain, JSON-safe result.
  call(method: string, ...args: unknown[]): Promise<Outcome>;
  // Starts a call without waiting for it (redirect flow navigates away).
  start(method: string, ...args: unknown[]): void;
  authRequests: number;
  // Fetches a cluster's credential as the Kubernetes plugin's auth provider
  // in examples/backstage does (getIdToken of spectroauth-<cluster>).
  kubeCredential(cluster: string): Promise<Outcome>;
  // Backstage's Kubernetes plugin as the app wires it: the real
  // KubernetesAuthProviders from the example's kubernetesAuthProvidersApiFactory,
  // and the real KubernetesBackendClient over the app's fetchApi (the
  // signed-in user's Backstage token for the Backstage backend). op is
  // getCredentials(authProvider), decorate(authProvider), getClusters(),
  // proxy({clusterName, path, init}), events({clusterName, involvedObjectName,
  // namespace}) (KubernetesProxyClient), fetch(url, init) (the fetchApi alone)
  // or objects(entity): what the plugin's useKubernetesObjects hook yields
  // for the entity, rendered with the app's APIs.
  kube(op: string, ...args: any[]): Promise<Outcome>;
};

// What the page did, on the page itself: it shows in failure screenshots.
function log(line: string) {
  const el = document.getElementById('log');
  if (el) el.textContent += `${new Date().toISOString().slice(11, 23)} ${line}\n`;
}

function plain(v: unknown): unknown {
  return v === undefined ? null : JSON.parse(JSON.stringify(v));
}

// attempt runs fn, logs how it went, and returns a JSON-safe outcome.
async function attempt(what: string, fn: () => Promise<unknown>): Promise<Outcome> {
  log(`${what} …`);
  try {
    const value = plain(await fn());
    log(`${what} → ok`);
    return { ok: true, value };
  } catch (e: any) {
    const name = String(e?.name ?? 'Error');
    const message = String(e?.message ?? e);
    log(`${what} → ${name}: ${message}`);
    return { ok: false, name, message };
  }
}

// kubernetesObjects renders a component using the Kubernetes plugin's own
// useKubernetesObjects hook (what the entity page's Kubernetes tab uses),
// with the app's Kubernetes APIs, and returns its first answer.
function kubernetesObjects(entity: Entity, client: KubernetesBackendClient, authProviders: KubernetesAuthProvidersApi): Promise<unknown> {
  const apis = new Map<string, unknown>([
    [kubernetesApiRef.id, client],
    [kubernetesAuthProvidersApiRef.id, authProviders],
  ]);
  const holder = { get: (ref: { id: string }) => apis.get(ref.id) as any };
  const el = document.createElement('div');
  document.body.appendChild(el);
  const root = createRoot(el);
  return new Promise<unknown>(resolve => {
    function Objects() {
      const { kubernetesObjects, loading, error } = useKubernetesObjects(entity, 60_000);
      useEffect(() => {
        if (!loading) resolve({ kubernetesObjects, error: error ?? null });
      }, [loading, kubernetesObjects, error]);
      return null;
    }
    root.render(createElement(ApiProvider, { apis: holder, children: createElement(Objects) }));
  }).finally(() => setTimeout(() => root.unmount(), 0));
}

async function setup(): Promise<E2E> {
  const res = await fetch('./config.json', { cache: 'no-store' });
  if (!res.ok) throw new Error(`config.json: ${res.status}`);
  const data = await res.json();
  const configApi = new ConfigReader(data, 'e2e');
  const discoveryApi = FrontendHostDiscovery.fromConfig(configApi);
  const oauthRequestApi = new OAuthRequestManager();
  // The Kubernetes plugin's APIs, built once the user is signed in, as the
  // app builds them from the identity its sign-in page yields.
  let kubeApis: Promise<{ authProviders: KubernetesAuthProvidersApi; client: KubernetesBackendClient; fetchApi: FetchApi }> | undefined;
  const kubernetes = () => {
    kubeApis ??= (async () => {
      const bi = await auth.getBackstageIdentity({ optional: true });
      if (!bi) throw new Error('not signed in');
      const identityApi = UserIdentity.create({ identity: bi.identity, authApi: auth });
      const fetchApi = createFetchApi({
        middleware: [
          FetchMiddlewares.resolvePluginProtocol({ discoveryApi }),
          FetchMiddlewares.injectIdentityAuth({ identityApi, config: configApi }),
        ],
      });
      // The app's other auth APIs, as Backstage's default app provides them.
      const authDeps = { configApi, discoveryApi, oauthRequestApi };
      const authProviders = kubernetesAuthProvidersApiFactory.factory({
        gitlabAuthApi: GitlabAuth.create(authDeps),
        googleAuthApi: GoogleAuth.create(authDeps),
        microsoftAuthApi: MicrosoftAuth.create(authDeps),
        oktaAuthApi: OktaAuth.create(authDeps),
        oneloginAuthApi: OneLoginAuth.create(authDeps),
        spectroCloudAuthApi: auth,
        discoveryApi,
        configApi,
      });
      const client = new KubernetesBackendClient({ discoveryApi, fetchApi, kubernetesAuthProvidersApi: authProviders });
      return { authProviders, client, fetchApi };
    })();
    kubeApis.catch(() => {
      kubeApis = undefined;
    });
    return kubeApis;
  };
  const response = async (r: Response) => ({ status: r.status, body: await r.text() });
  const e2e: E2E = {
    config: data,
    authRequests: 0,
    call(method, ...args) {
      return attempt(`${method}(${args.map(a => JSON.stringify(a)).join(', ')})`, () => (auth as any)[method](...args));
    },
    start(method, ...args) {
      void e2e.call(method, ...args);
    },
    kubeCredential(cluster) {
      return attempt(`kubeCredential(${cluster})`, () =>
        spectroauthClusterCredential(discoveryApi, configApi, cluster).getIdToken(),
      );
    },
    kube(op, ...args) {
      return attempt(`kube.${op}(${args.map(a => JSON.stringify(a)).join(', ')})`, async () => {
        const k = await kubernetes();
        switch (op) {
          case 'getCredentials':
            return k.authProviders.getCredentials(args[0]);
          case 'decorate':
            return k.authProviders.decorateRequestBodyForAuth(args[0], {
              entity: { apiVersion: 'backstage.io/v1alpha1', kind: 'Component', metadata: { name: 'e2e' } },
            });
          case 'getClusters':
            return k.client.getClusters();
          case 'proxy':
            return response(await k.client.proxy(args[0]));
          case 'events':
            return new KubernetesProxyClient({ kubernetesApi: k.client }).getEventsByInvolvedObjectName(args[0]);
          case 'fetch':
            return response(await k.fetchApi.fetch(args[0], args[1]));
          case 'objects':
            return kubernetesObjects(args[0], k.client, k.authProviders);
          default:
            throw new Error(`unknown op ${op}`);
        }
      });
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
