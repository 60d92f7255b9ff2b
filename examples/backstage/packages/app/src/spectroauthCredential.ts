// Goes with kubernetes.ts: one cluster's credential from spectroauthd,
// fetched in the user's browser with the session cookie. It depends on
// nothing but the app's discovery and config APIs, so the end-to-end tests
// run exactly this code in Chromium against the daemon.
import type { ConfigApi, DiscoveryApi } from '@backstage/core-plugin-api';
import { SPECTROCLOUD_PROVIDER_ID } from './apis';

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

