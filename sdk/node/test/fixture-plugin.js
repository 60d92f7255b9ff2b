'use strict';
// A plugin for serve.test.js: one resolver and a configuration.
const { serve, notFound, configError, isEntityName } = require('..');

let suffix = '';
serve({
  name: 'fixture',
  version: '0.0.1',
  configure(config) {
    if (config.suffix !== undefined && typeof config.suffix !== 'string') throw configError('suffix', 'must be a string');
    suffix = config.suffix || '';
  },
  validateOptions({ name, options }) {
    if (name === 'slow' && typeof options.wait !== 'boolean') throw configError('wait', 'must be true or false');
  },
  resolvers: {
    // slow with the option wait answers only when the call ends: the
    // daemon's deadline stops it.
    slow: (req, ctx) => new Promise((resolve, reject) => {
      if (!req.options.wait && req.profile.emailVerified) return resolve({ userEntityRef: 'user:default/quick' });
      if (!req.options.wait) return reject(notFound('unverified'));
      ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
    }),
    byEmail(req) {
      const name = `${req.profile.email.split('@')[0]}${suffix}`;
      if (!req.profile.emailVerified || !isEntityName(name)) throw notFound('unverified, or no entity name');
      return { userEntityRef: `user:default/${name}` };
    },
  },
});
