// Add to packages/app/src/apis.ts when you use the Kubernetes plugin
// (@backstage/plugin-kubernetes with @backstage/plugin-kubernetes-react
// 0.6, legacy frontend system). It replaces the plugin's own factory for
// kubernetesAuthProvidersApiRef (an app's APIs win over a plugin's) with the
// same thing plus spectroauth: Backstage's own KubernetesAuthProviders, with
// the plugin's default `oidc` providers (gitlab, google, microsoft, okta,
// onelogin) and two more kinds:
//
// - `spectrocloud`: the user's SpectroCloud ID token, for clusters that
//   trust it (`authProvider: oidc`, `oidcTokenProvider: spectrocloud`).
// - `spectroauth-<cluster>`, one per name in SPECTROAUTH_CLUSTERS below (the
//   daemon's cluster names, lower-cased in the provider name): the credential spectroauthd's strategy issues for
//   that cluster (token exchange, a service account token, ... whatever the
//   cluster's strategy is), for clusters with `authProvider: oidc` and
//   `oidcTokenProvider: spectroauth-<cluster>`.
//
// KubernetesAuthProviders files an `oidcProviders` entry under
// `oidc.<name>` and calls only its getIdToken(). The second kind is fetched
// (spectroauthCredential.ts) in the user's browser, from the daemon's
// credential route exactly as the sign-in client calls /refresh: from the
// app's (allowed) origin, with the HttpOnly session cookie and
// X-Requested-With. The plugin then sends it to the kubernetes backend only,
// in the request body (auth.oidc[<name>], entity pages) or in the header
// Backstage-Kubernetes-Authorization-oidc-<name> (the backend's proxy, which
// lower-cases <name>, hence lower-case provider names), and the backend hands
// it to that cluster: no other backend plugin ever sees it, and the user's
// Backstage token buys no credential at the daemon. Bearer-token
// credentials only: a strategy that issues client certificates cannot go
// this way.
import {
  type OpenIdConnectApi,
  configApiRef,
  createApiFactory,
  discoveryApiRef,
  gitlabAuthApiRef,
  googleAuthApiRef,
  microsoftAuthApiRef,
  oktaAuthApiRef,
  oneloginAuthApiRef,
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
    gitlabAuthApi: gitlabAuthApiRef,
    googleAuthApi: googleAuthApiRef,
    microsoftAuthApi: microsoftAuthApiRef,
    oktaAuthApi: oktaAuthApiRef,
    oneloginAuthApi: oneloginAuthApiRef,
    spectroCloudAuthApi: spectroCloudAuthApiRef,
    discoveryApi: discoveryApiRef,
    configApi: configApiRef,
  },
  factory: ({
    gitlabAuthApi,
    googleAuthApi,
    microsoftAuthApi,
    oktaAuthApi,
    oneloginAuthApi,
    spectroCloudAuthApi,
    discoveryApi,
    configApi,
  }) => {
    // The plugin's own defaults, kept so existing clusters still work.
    const oidcProviders: Record<string, OpenIdConnectApi> = {
      gitlab: gitlabAuthApi,
      google: googleAuthApi,
      microsoft: microsoftAuthApi,
      okta: oktaAuthApi,
      onelogin: oneloginAuthApi,
      spectrocloud: spectroCloudAuthApi,
    };
    for (const cluster of SPECTROAUTH_CLUSTERS) {
      // Lower-case: the backend's proxy reads the name lower-cased.
      oidcProviders[`spectroauth-${cluster.toLowerCase()}`] = spectroauthClusterCredential(discoveryApi, configApi, cluster);
    }
    return new KubernetesAuthProviders({ googleAuthApi, microsoftAuthApi, oidcProviders });
  },
});
