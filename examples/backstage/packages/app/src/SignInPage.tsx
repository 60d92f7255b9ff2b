// In packages/app/src/App.tsx, give createApp this sign-in page:
//
//   const app = createApp({
//     apis,
//     components: { SignInPage: SpectroCloudSignInPage },
//     ...
//   });
import React from 'react';
import { SignInPage } from '@backstage/core-components';
import type { SignInPageProps } from '@backstage/core-plugin-api';
import { spectroCloudAuthApiRef } from './apis';

export const SpectroCloudSignInPage = (props: SignInPageProps) => (
  <SignInPage
    {...props}
    auto
    provider={{
      id: 'spectrocloud-auth-provider',
      title: 'SpectroCloud',
      message: 'Sign in with your SpectroCloud account',
      apiRef: spectroCloudAuthApiRef,
    }}
  />
);
