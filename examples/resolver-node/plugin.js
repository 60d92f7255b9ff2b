'use strict';
// A spectroauth sign-in resolver written in Node.js, to show that the plugin
// protocol is language-neutral: it speaks go-plugin's handshake and
// spectroauth.plugin.v1 over @grpc/grpc-js, with no Go involved.
//
// Its resolver emailDomainToUser is the one of examples/resolver-go: a verified
// e-mail address at the domain of the option "domain" signs in as the Backstage
// user named by the address's local part; anyone else is not found, and the
// daemon tries its next resolver. Unlike the Go example it takes a
// configuration, to show Configure: `namespace`, the users' entity namespace
// (default "default").
//
// spectroauthd does not run this file directly but a wrapper that pins it:
// see make-wrapper.sh and README.md.

const { serve, Logger } = require('./lib/goplugin');
const proto = require('./lib/spectroauth');
const { version } = require('./package.json');

const NAME = 'email-domain-node';
const RESOLVER = 'emailDomainToUser';
const log = new Logger(NAME);

// The configuration, once Configure has succeeded; null before (and after a
// failed Configure), when calls other than Describe are refused.
let config = null;

// Checks the keys of a block against the known ones, as sdk.Options.RejectUnknown does.
function unknownKey(block, known) {
  const k = Object.keys(block).sort().find((key) => !known.includes(key));
  return k === undefined ? null : proto.invalidConfig(k, `unknown key: known keys here are ${known.join(', ')}`);
}

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return { string: 'a string', number: 'a number', boolean: 'a boolean', object: 'a map' }[typeof v] || typeof v;
}

// The resolver's options: { domain } or { error }.
function parseOptions(options) {
  const error = unknownKey(options, ['domain']);
  if (error) return { error };
  const { domain } = options;
  if (domain === undefined || domain === null || domain === '') {
    return { error: proto.invalidConfig('domain', 'is required') };
  }
  if (typeof domain !== 'string') {
    return { error: proto.invalidConfig('domain', `must be a string, not ${describe(domain)}`) };
  }
  return { domain };
}

const pluginService = {
  Describe(call, callback) {
    callback(null, {
      name: NAME,
      version,
      protocol_version: proto.PROTOCOL_VERSION,
      capabilities: ['CAPABILITY_RESOLVER', 'CAPABILITY_CONFIGURE', 'CAPABILITY_VALIDATE_OPTIONS'],
      resolvers: [RESOLVER],
    });
  },

  Configure(call, callback) {
    const values = proto.fromStruct(call.request.config);
    config = null;
    const error = unknownKey(values, ['namespace']);
    if (error) return callback(error);
    const namespace = values.namespace === undefined || values.namespace === null ? 'default' : values.namespace;
    if (typeof namespace !== 'string' || !proto.isEntityNamespace(namespace)) {
      return callback(proto.invalidConfig('namespace',
        "must be a Backstage namespace: lower-case letters and digits joined by '-', at most 63 characters"));
    }
    config = { namespace };
    log.info('configured', { instance: call.request.instance_name, namespace });
    callback(null, {});
  },

  ValidateOptions(call, callback) {
    if (!config) return callback(proto.notConfigured());
    const { role, name } = call.request;
    if (role !== 'CAPABILITY_RESOLVER') {
      return callback(proto.invalidInput('Role', `plugin ${NAME} has no ${role} role`));
    }
    if (name !== RESOLVER) {
      return callback(proto.invalidInput('Name', `${JSON.stringify(name)} is not offered by this plugin (it offers ${RESOLVER})`));
    }
    const { error } = parseOptions(proto.fromStruct(call.request.options));
    callback(error || null, error ? undefined : {});
  },
};

const resolverService = {
  Resolve(call, callback) {
    if (!config) return callback(proto.notConfigured());
    const req = call.request;
    if (req.resolver !== RESOLVER) {
      return callback(proto.invalidInput('Resolver', `${JSON.stringify(req.resolver)} is not offered by this plugin (it offers ${RESOLVER})`));
    }
    const { domain, error } = parseOptions(proto.fromStruct(req.options));
    if (error) return callback(error);

    const { email = '', email_verified: verified = false } = req.profile || {};
    const at = email.indexOf('@');
    const local = email.slice(0, Math.max(at, 0));
    const host = email.slice(at + 1);
    if (at < 0 || !verified || host.toLowerCase() !== domain.toLowerCase() || !proto.isEntityName(local)) {
      log.debug('not found', { resolver: RESOLVER, verified });
      return callback(proto.notFound(`no verified e-mail address at ${domain} naming a user: not found`));
    }
    const ref = `user:${config.namespace}/${local}`;
    callback(null, { identity: { user_entity_ref: ref, ownership_entity_refs: [ref] } });
  },
};

serve({
  name: NAME,
  versions: [proto.PROTOCOL_VERSION],
  services: [
    { service: proto.PluginService, impl: pluginService },
    { service: proto.ResolverService, impl: resolverService },
  ],
  logger: log,
});
