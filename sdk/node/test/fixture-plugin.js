'use strict';
// A plugin for serve.test.js: one resolver and a configuration.
const { serve, notFound, configError } = require('..');

let suffix = '';
serve({
  name: 'fixture',
  version: '0.0.1',
  configure(config) {
    if (config.suffix !== undefined && typeof config.suffix !== 'string') throw configError('suffix', 'must be a string');
    suffix = config.suffix || '';
  },
  validateOptions({ options }) {
    if (!options.domain) throw configError('domain', 'is required');
  },
  resolvers: {
    byEmail(req) {
      if (!req.profile.emailVerified) throw notFound('unverified');
      return { userEntityRef: `user:default/${req.profile.email.split('@')[0]}${suffix}` };
    },
  },
});
