// A minimal, unmodified Backstage backend (from npm) whose discovery sends
// the `auth` plugin to spectroauthd. It runs the catalog (in-memory SQLite),
// Backstage's Kubernetes backend (its clusters from the `kubernetes` config)
// and one tiny plugin, `e2e`, that answers with what Backstage's own services
// make of the caller:
//   GET /api/e2e/whoami   httpAuth.credentials({allow: ['user']}) and
//                         userInfo.getUserInfo() (ownership from the auth
//                         plugin's /v1/userinfo when the token has no `ent`)
//   GET /api/e2e/cookie   httpAuth.issueUserCookie(): a limited user token
//                         rebuilt from the token's `uip`
//   GET /api/e2e/limited  the same principal, from that cookie alone
// Usage: node backend.cjs --config app-config.yaml [--config more.yaml]
// (backend-defaults reads --config itself.)
'use strict';

const { createBackend } = require('@backstage/backend-defaults');
const { coreServices, createBackendPlugin } = require('@backstage/backend-plugin-api');
const Router = require('express-promise-router');

const e2ePlugin = createBackendPlugin({
  pluginId: 'e2e',
  register(env) {
    env.registerInit({
      deps: {
        httpRouter: coreServices.httpRouter,
        httpAuth: coreServices.httpAuth,
        userInfo: coreServices.userInfo,
      },
      async init({ httpRouter, httpAuth, userInfo }) {
        const router = Router();
        router.get('/whoami', async (req, res) => {
          const credentials = await httpAuth.credentials(req, { allow: ['user'] });
          const info = await userInfo.getUserInfo(credentials);
          res.json({ principal: credentials.principal, userInfo: info });
        });
        router.get('/cookie', async (req, res) => {
          const { expiresAt } = await httpAuth.issueUserCookie(res);
          res.json({ expiresAt });
        });
        router.get('/limited', async (req, res) => {
          const credentials = await httpAuth.credentials(req, {
            allow: ['user'],
            allowLimitedAccess: true,
          });
          res.json({ principal: credentials.principal });
        });
        httpRouter.use(router);
        httpRouter.addAuthPolicy({ path: '/limited', allow: 'user-cookie' });
      },
    });
  },
});

const backend = createBackend();
backend.add(require('@backstage/plugin-catalog-backend'));
backend.add(require('@backstage/plugin-kubernetes-backend'));
backend.add(e2ePlugin);
backend.start().catch(err => {
  console.error('backend failed to start', err);
  process.exit(1);
});
// Exit with the parent: the driver closes our stdin when it is done.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
