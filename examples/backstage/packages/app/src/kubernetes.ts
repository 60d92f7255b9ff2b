// Add to packages/app/src/apis.ts when you use the Kubernetes plugin. It
// replaces the plugin's default kubernetesAuthProvidersApiRef factory with
// Backstage's own KubernetesAuthProviders, given two kinds of `oidc`
// providers:
//
// - `spectrocloud`: the user's SpectroCloud ID token, for clusters that
//   trust it (`authProvider: oidc`, `oidcTokenProvider: spectrocloud`).
// - `spectroauth-<cluster>`, one per name in SPECTROAUTH_CLUSTERS below (the
//   daemon's cluster names): the credential spectroauthd's strategy issues for
//   that cluster (token exchange, a service account token, ... whatever the
//   cluster's strategy is), for clusters with `authProvider: oidc` and
//   `oidcTokenProvider: spectroauth-<cluster>`.
//
// The second kind is fetched here, in the user's browser, from the daemon's
// credential route exactly as the sign-in client calls /refresh: from the
// app's (allowed) origin, with the HttpOnly session cookie and
// X-Requested-With. The plugin then puts it into the body of its request to
// the kubernetes backend (auth.oidc[<provider>]), which forwards it to that
// cluster only: no other backend plugin ever sees it, and the user's
// Backstage token buys no credential at the daemon. Bearer-token credentials
// only: a strategy that issues client certificates cannot go this way.
import {
  type ConfigApi,
  type DiscoveryApi,
  configApiRef,
  createApiFactory,
  discoveryApiRef,
  googleAuthApiRef,
  microsoftAuthApiRef,
} from '@backstage/core-plugin-api';
import {
  KubernetesAuthProviders,
  kubernetesAuthProvidersApiRef,
} from '@backstage/plugin-kubernetes-react';
import { SPECTROCLOUD_PROVIDER_ID, spectroCloudAuthApiRef } from './apis';

/**
 * The daemon's clusters whose credential the plugin fetches from spectroauthd
 * (GET <auth>/spectrocloud/kubernetes/clusters lists them). Kept in code: the
 * frontend sees only config keys a schema marks visible.
 */
export const SPECTROAUTH_CLUSTERS: string[] = ['staging'];

/** Refetch a cached credential this long before it expires. */
const MARGIN_MS = 60_000;

/**
 * An OpenIdConnectApi-shaped source (getIdToken) of one cluster's
 * credential from spectroauthd, cached until shortly before it expires.
 */
export function spectroauthClusterCredential(
  discoveryApi: DiscoveryApi,
  configApi: ConfigApi,
  cluster: string,
) {
  let cached: { token: string; expiresAt: number } | undefined;
  return {
    async getIdToken(): Promise<string> {
      if (cached && cached.expiresAt - MARGIN_MS > Date.now()) {
        return cached.token;
      }
      const base = await discoveryApi.getBaseUrl('auth');
      const env = configApi.getOptionalString('auth.environment') ?? 'development';
      const res = await fetch(
        `${base}/${SPECTROCLOUD_PROVIDER_ID}/kubernetes/credential?env=${encodeURIComponent(env)}`,
        {
          method: 'POST',
          credentials: 'include',
          headers: {
            'Content-Type': 'application/json',
            'X-Requested-With': 'XMLHttpRequest',
          },
          body: JSON.stringify({ cluster }),
        },
      );
      if (!res.ok) {
        let message = res.statusText;
        try {
          message = (await res.json()).error?.message ?? message;
        } catch {
          // not Backstage's error body
        }
        throw new Error(`spectroauth refused a credential for cluster ${cluster}: ${message}`);
      }
      const body = await res.json();
      if (!body.token) {
        throw new Error(`cluster ${cluster} issues client certificates, which the Kubernetes plugin's oidc path cannot carry`);
      }
      cached = {
        token: body.token,
        expiresAt: body.expiresAt ? Date.parse(body.expiresAt) : Date.now() + MARGIN_MS,
      };
      return cached.token;
    },
  };
}

export const kubernetesAuthProvidersApiFactory = createApiFactory({
  api: kubernetesAuthProvidersApiRef,
  deps: {
    googleAuthApi: googleAuthApiRef,
    microsoftAuthApi: microsoftAuthApiRef,
    spectroCloudAuthApi: spectroCloudAuthApiRef,
    discoveryApi: discoveryApiRef,
    configApi: configApiRef,
  },
  factory: ({ googleAuthApi, microsoftAuthApi, spectroCloudAuthApi, discoveryApi, configApi }) => {
    const oidcProviders: Record<string, { getIdToken(): Promise<string> }> = {
      spectrocloud: spectroCloudAuthApi,
    };
    for (const cluster of SPECTROAUTH_CLUSTERS) {
      oidcProviders[`spectroauth-${cluster}`] = spectroauthClusterCredential(discoveryApi, configApi, cluster);
    }
    return new KubernetesAuthProviders({ googleAuthApi, microsoftAuthApi, oidcProviders });
  },
});
