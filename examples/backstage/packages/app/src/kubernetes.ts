// Add to packages/app/src/apis.ts when you use the Kubernetes plugin: an
// oidc provider named `spectrocloud`, so clusters with
// `oidcTokenProvider: spectrocloud` receive the user's SpectroCloud ID token.
// This replaces the plugin's default kubernetesAuthProvidersApiRef factory.
import {
  createApiFactory,
  googleAuthApiRef,
  microsoftAuthApiRef,
} from '@backstage/core-plugin-api';
import {
  KubernetesAuthProviders,
  kubernetesAuthProvidersApiRef,
} from '@backstage/plugin-kubernetes-react';
import { spectroCloudAuthApiRef } from './apis';

export const kubernetesAuthProvidersApiFactory = createApiFactory({
  api: kubernetesAuthProvidersApiRef,
  deps: {
    googleAuthApi: googleAuthApiRef,
    microsoftAuthApi: microsoftAuthApiRef,
    spectroCloudAuthApi: spectroCloudAuthApiRef,
  },
  factory: ({ googleAuthApi, microsoftAuthApi, spectroCloudAuthApi }) =>
    new KubernetesAuthProviders({
      googleAuthApi,
      microsoftAuthApi,
      oidcProviders: { spectrocloud: spectroCloudAuthApi },
    }),
});
