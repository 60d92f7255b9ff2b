'use strict';
// A spectroauth sign-in resolver in Node.js, on @spectroauth/plugin-sdk (sdk/node).
//
// emailDomainToUser is the resolver of examples/resolver-go: a verified e-mail
// address at the domain of the option "domain" signs in as the Backstage user
// named by the address's local part; anyone else is not found, and the daemon
// tries its next resolver. The configuration's `namespace` (default
// "default") is the users' entity namespace.
const { serve, notFound, configError, isEntityName, isEntityNamespace } = require('@spectroauth/plugin-sdk');
const { version } = require('./package.json');

// Refuses a key of block that is not one of known, as sdk.Options.RejectUnknown does.
function rejectUnknown(block, known) {
  const k = Object.keys(block).sort().find((key) => !known.includes(key));
  if (k !== undefined) throw configError(k, `unknown key: known keys here are ${known.join(', ')}`);
}

function domainOf(options) {
  rejectUnknown(options, ['domain']);
  if (options.domain === undefined || options.domain === null || options.domain === '') throw configError('domain', 'is required');
  if (typeof options.domain !== 'string') throw configError('domain', 'must be a string');
  return options.domain;
}

let namespace = 'default';

serve({
  name: 'email-domain-node',
  version,
  configure(config) {
    rejectUnknown(config, ['namespace']);
    const ns = config.namespace ?? 'default';
    if (typeof ns !== 'string' || !isEntityNamespace(ns)) throw configError('namespace', 'must be a Backstage namespace');
    namespace = ns;
  },
  validateOptions: ({ options }) => { domainOf(options); },
  resolvers: {
    emailDomainToUser({ options, profile: { email = '', emailVerified } }) {
      const domain = domainOf(options);
      const at = email.lastIndexOf('@');
      const local = email.slice(0, Math.max(at, 0));
      if (at < 0 || !emailVerified || email.slice(at + 1).toLowerCase() !== domain.toLowerCase() || !isEntityName(local)) {
        throw notFound(`no verified e-mail address at ${domain} naming a user`);
      }
      return { userEntityRef: `user:${namespace}/${local}` };
    },
  },
});
