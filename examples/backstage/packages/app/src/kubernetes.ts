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
// The second kind is fetched (spectroauthCredential.ts) in the user's browser, from the daemon's
// credential route exactly as the sign-in client calls /refresh: from the
// app's (allowed) origin, with the HttpOnly session cookie and
// X-Requested-With. The plugin then puts it into the body of its request to
// the kubernetes backend (auth.oidc[<provider>]), which forwards it to that
// cluster only: no other backend plugin ever sees it, and the user's
// Backstage token buys no credential at the daemon. Bearer-token credentials
// only: a strategy that issues client certificates cannot go this way.
import {
  type OpenIdConnectApi,
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
import { spectroCloudAuthApiRef } from './apis';
import { spectroauthClusterCredential } from './spectroauthCredential';

/**
 * The daemon's clusters whose credential the plugin fetches from spectroauthd
 * (GET <auth>/spectrocloud/kubernetes/clusters lists them). Kept in code: the
 * frontend sees only config keys a schema marks visible.
 */
export const SPECTROAUTH_CLUSTERS: string[] = ['staging'];

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
    const oidcProviders: Record<string, OpenIdConnectApi> = {
      spectrocloud: spectroCloudAuthApi,
    };
    for (const cluster of SPECTROAUTH_CLUSTERS) {
      oidcProviders[`spectroauth-${cluster}`] = spectroauthClusterCredential(discoveryApi, configApi, cluster);
    }
    return new KubernetesAuthProviders({ googleAuthApi, microsoftAuthApi, oidcProviders });
  },
});
