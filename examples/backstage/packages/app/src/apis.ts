// Add to packages/app/src/apis.ts of a Backstage app (legacy frontend system):
// an OAuth2 auth API for the `spectrocloud` provider that spectroauthd
// serves, and its factory, to list in `apis` beside the app's others.
//
// It uses the app's discovery (discovery.endpoints sends `auth` to the
// daemon, see app-config.yaml), so nothing here names the daemon's URL.
import { OAuth2 } from '@backstage/core-app-api';
import {
  type ApiRef,
  type BackstageIdentityApi,
  type OAuthApi,
  type OpenIdConnectApi,
  type ProfileInfoApi,
  type SessionApi,
  configApiRef,
  createApiFactory,
  createApiRef,
  discoveryApiRef,
  oauthRequestApiRef,
} from '@backstage/core-plugin-api';

/** The provider id: the daemon's routes live under /api/auth/spectrocloud. */
export const SPECTROCLOUD_PROVIDER_ID = 'spectrocloud';

export const spectroCloudAuthApiRef: ApiRef<
  OAuthApi & OpenIdConnectApi & ProfileInfoApi & BackstageIdentityApi & SessionApi
> = createApiRef({ id: 'auth.spectrocloud' });

export const spectroCloudAuthApiFactory = createApiFactory({
  api: spectroCloudAuthApiRef,
  deps: {
    discoveryApi: discoveryApiRef,
    oauthRequestApi: oauthRequestApiRef,
    configApi: configApiRef,
  },
  factory: ({ discoveryApi, oauthRequestApi, configApi }) =>
    OAuth2.create({
      configApi,
      discoveryApi,
      oauthRequestApi,
      provider: {
        id: SPECTROCLOUD_PROVIDER_ID,
        title: 'SpectroCloud',
        icon: () => null,
      },
      environment: configApi.getOptionalString('auth.environment'),
      // The daemon always adds these (and any scopes it is configured with,
      // e.g. offline_access for silent refresh).
      defaultScopes: ['openid', 'profile', 'email'],
    }),
});

// export const apis: AnyApiFactory[] = [
//   ...,
//   spectroCloudAuthApiFactory,
//   kubernetesAuthProvidersApiFactory, // from ./kubernetes.ts
// ];
