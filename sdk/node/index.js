'use strict';
// @spectroauth/plugin-sdk: write a spectroauth plugin in Node.js.
//
// serve() does what sdk.Serve does for a Go plugin: go-plugin's handshake,
// AutoMTLS, the spectroauth.plugin.v1 services, Describe from what it is
// given, Configure before any other call, the check that a call names a
// resolver or strategy the plugin offers, and the protocol's error
// convention. A plugin supplies plain (sync or async) functions:
//
//   const { serve, notFound, configError } = require('@spectroauth/plugin-sdk');
//   serve({
//     name: 'by-email',
//     version: '1.0.0',
//     resolvers: { byEmail: async (req, ctx) => ({ userEntityRef: 'user:default/jdoe' }) },
//     configure: (config, { instanceName }) => {},          // optional
//     validateOptions: ({ role, name, options }) => {},      // optional
//   });
//
// Handlers throw (or reject with) the errors made by notFound, configError
// and invalidInput; any other error reaches the daemon as INTERNAL with its
// message. ctx.signal is aborted when the daemon cancels the call or its
// deadline passes.

const grpc = require('@grpc/grpc-js');
const { serve: serveGoPlugin, Logger } = require('./lib/goplugin');
// This SDK's version, reported in Describe (DescribeResponse.sdk_version).
const SDK_VERSION = require('./package.json').version;
const proto = require('./lib/protocol');

// The roles of ValidateOptions, as the Go SDK names them (sdk.Capability).
const ROLE_RESOLVER = 'RESOLVER';
const ROLE_CLUSTER_STRATEGY = 'CLUSTER_STRATEGY';
const ROLE_CLUSTER_SOURCE = 'CLUSTER_SOURCE';

// Errors a handler throws. Each carries its gRPC status in .grpc.
function sdkError(status) {
  const err = new Error(status.details);
  err.grpc = status;
  return err;
}

/** notFound: the plugin has no answer for this input (the daemon tries its next resolver). */
const notFound = (message = 'not found') => sdkError(proto.notFound(message));
/** configError: the configuration or options key (a dotted path) is not acceptable. */
const configError = (key, message) => sdkError(proto.invalidConfig(key, message));
/** invalidInput: a request field the plugin cannot use. */
const invalidInput = (field, message) => sdkError(proto.invalidInput(field, message));

// The status a thrown value is sent as.
function toStatus(err) {
  if (err && err.grpc) return err.grpc;
  return proto.statusError(grpc.status.INTERNAL, (err && err.message) || String(err));
}

// How much earlier than the daemon's deadline a handler's own runs out (as
// the Go SDK's deadlineMargin): a tenth of the time left, 10 to 250 ms, so
// that its answer, that it ran out of time, reaches the daemon in time.
const deadlineMargin = (left) => Math.max(Math.min(left / 10, 250), 10);

// A context for one call: an AbortSignal aborted when the daemon cancels the
// call or when the handler's own deadline, a margin before the daemon's,
// passes (then ranOutOfTime() is true).
function callContext(call) {
  const ac = new AbortController();
  let outOfTime = false;
  call.on('cancelled', () => ac.abort(new Error('the call was cancelled')));
  const deadline = call.getDeadline();
  const left = (deadline instanceof Date ? deadline.getTime() : Number(deadline)) - Date.now();
  let timer;
  if (Number.isFinite(left)) {
    timer = setTimeout(() => {
      outOfTime = true;
      ac.abort(new Error('the plugin\'s own work ran out of time'));
    }, Math.max(left - deadlineMargin(left), 0));
    timer.unref();
  }
  return {
    ctx: { signal: ac.signal, metadata: call.metadata },
    ranOutOfTime: () => outOfTime,
    done: () => clearTimeout(timer),
  };
}

// unary wraps an async handler as a grpc-js one. A handler that fails after
// its own deadline passed answers DEADLINE_EXCEEDED with the reason
// ERROR_REASON_RAN_OUT_OF_TIME, whatever it threw, as the Go SDK does.
function unary(fn) {
  return (call, callback) => {
    const { ctx, ranOutOfTime, done } = callContext(call);
    Promise.resolve()
      .then(() => fn(call.request, ctx))
      .then((res) => { done(); callback(null, res || {}); },
        (err) => {
          done();
          callback(ranOutOfTime()
            ? proto.statusError(grpc.status.DEADLINE_EXCEEDED, `the plugin's own work ran out of time: ${(err && err.message) || err}`,
              { reason: 'ERROR_REASON_RAN_OUT_OF_TIME' })
            : toStatus(err));
        });
  };
}

const names = (o) => Object.keys(o || {});

function checkPlugin(p) {
  if (!p || typeof p.name !== 'string' || p.name === '') throw new TypeError('serve: name is required');
  for (const [field, v] of Object.entries({ resolvers: p.resolvers, strategies: p.strategies })) {
    if (v === undefined) continue;
    if (typeof v !== 'object' || names(v).length === 0) throw new TypeError(`serve: ${field} must name at least one function`);
    for (const [n, f] of Object.entries(v)) {
      if (typeof f !== 'function') throw new TypeError(`serve: ${field}.${n} must be a function`);
    }
  }
  for (const f of ['configure', 'validateOptions', 'listClusters']) {
    if (p[f] !== undefined && typeof p[f] !== 'function') throw new TypeError(`serve: ${f} must be a function`);
  }
  if (!p.resolvers && !p.strategies && !p.listClusters) {
    throw new TypeError('serve: a plugin offers resolvers, strategies or listClusters');
  }
}

// The gRPC services of plugin p (see serve).
function services(p, logger) {
  checkPlugin(p);
  const offered = {
    [ROLE_RESOLVER]: names(p.resolvers),
    [ROLE_CLUSTER_STRATEGY]: names(p.strategies),
    [ROLE_CLUSTER_SOURCE]: p.listClusters ? [''] : [],
  };
  const capabilities = [];
  if (p.resolvers) capabilities.push('CAPABILITY_RESOLVER');
  if (p.strategies) capabilities.push('CAPABILITY_CLUSTER_STRATEGY');
  if (p.listClusters) capabilities.push('CAPABILITY_CLUSTER_SOURCE');
  if (p.configure) capabilities.push('CAPABILITY_CONFIGURE');
  if (p.validateOptions) capabilities.push('CAPABILITY_VALIDATE_OPTIONS');

  // Whether a Configure has succeeded: other calls are refused until then.
  let configured = false;
  const needConfig = (fn) => (req, ctx) => {
    if (!configured) throw sdkError(proto.notConfigured());
    return fn(req, ctx);
  };
  // Checks that name is one the plugin offers for role.
  const checkName = (role, field, name) => {
    const list = offered[role];
    if (role === ROLE_CLUSTER_SOURCE || list.includes(name)) return;
    throw invalidInput(field, `${JSON.stringify(name)} is not offered by this plugin (it offers ${list.join(', ')})`);
  };

  const pluginService = {
    Describe: unary(() => ({
      name: p.name,
      version: p.version || '',
      protocolVersion: proto.PROTOCOL_VERSION,
      sdkVersion: SDK_VERSION,
      capabilities,
      resolvers: offered[ROLE_RESOLVER],
      strategies: offered[ROLE_CLUSTER_STRATEGY],
    })),
    Configure: unary(async (req, ctx) => {
      configured = false;
      const config = proto.fromStruct(req.config);
      if (p.configure) {
        await p.configure(config, { instanceName: req.instanceName, ...ctx });
      } else {
        const k = names(config).sort()[0];
        if (k !== undefined) throw configError(k, `plugin ${p.name} takes no configuration`);
      }
      configured = true;
      logger.debug('configured', { instance: req.instanceName });
    }),
    ValidateOptions: unary(needConfig(async (req, ctx) => {
      const role = String(req.role).replace(/^CAPABILITY_/, '');
      if (!(role in offered) || offered[role].length === 0) {
        throw invalidInput('Role', `plugin ${p.name} has no ${role} role`);
      }
      checkName(role, 'Name', req.name);
      if (p.validateOptions) {
        await p.validateOptions({ role, name: req.name, options: proto.fromStruct(req.options) }, ctx);
      }
    })),
  };
  const out = [{ service: proto.PluginService, impl: pluginService }];

  if (p.resolvers) {
    out.push({
      service: proto.ResolverService,
      impl: {
        Resolve: unary(needConfig(async (req, ctx) => {
          checkName(ROLE_RESOLVER, 'Resolver', req.resolver);
          const identity = await p.resolvers[req.resolver]({
            ...req,
            options: proto.fromStruct(req.options),
            claims: proto.fromStruct(req.claims),
          }, ctx);
          return { identity: checkIdentity(identity) };
        })),
      },
    });
  }
  if (p.strategies) {
    out.push({
      service: proto.ClusterStrategyService,
      impl: {
        Credential: unary(needConfig(async (req, ctx) => {
          checkName(ROLE_CLUSTER_STRATEGY, 'Strategy', req.strategy);
          const credential = await p.strategies[req.strategy]({ ...req, options: proto.fromStruct(req.options) }, ctx);
          return { credential };
        })),
      },
    });
  }
  if (p.listClusters) {
    out.push({
      service: proto.ClusterSourceService,
      impl: {
        ListClusters: unary(needConfig(async (req, ctx) => ({
          clusters: await p.listClusters({ options: proto.fromStruct(req.options) }, ctx),
        }))),
      },
    });
  }
  return out;
}

// checkIdentity refuses an identity the daemon could not use, as
// sdk.Identity.Validate does, and defaults its ownership to the user.
function checkIdentity(id) {
  if (!id || !isEntityRef(id.userEntityRef, 'user')) {
    throw sdkError(proto.statusError(grpc.status.INTERNAL,
      `the resolver returned no valid userEntityRef (want user:namespace/name): ${JSON.stringify(id && id.userEntityRef)}`));
  }
  const own = id.ownershipEntityRefs && id.ownershipEntityRefs.length ? id.ownershipEntityRefs : [id.userEntityRef];
  const bad = own.find((r) => !isEntityRef(r));
  if (bad !== undefined) {
    throw sdkError(proto.statusError(grpc.status.INTERNAL, `the resolver returned an invalid ownership entity ref ${JSON.stringify(bad)}`));
  }
  const { extraClaims, ...rest } = id;
  const out = { ...rest, ownershipEntityRefs: own };
  if (extraClaims) out.extraClaims = proto.toStruct(extraClaims);
  return out;
}

// isEntityRef: kind:namespace/name, with kind when given.
function isEntityRef(ref, kind) {
  const m = /^([A-Za-z0-9-]+):([^/]+)\/(.+)$/.exec(String(ref || ''));
  if (!m) return false;
  if (kind && m[1].toLowerCase() !== kind) return false;
  return proto.isEntityNamespace(m[2]) && proto.isEntityName(m[3]);
}

// serve serves plugin p and returns the grpc-js server once it is listening;
// the process exits when the daemon stops the plugin. p:
//
//   name             the plugin's name (required)
//   version          its own version, reported by Describe
//   resolvers        { name: (req, ctx) => identity }: sign-in resolvers.
//                    req: { resolver, options, claims, profile: { email,
//                    emailVerified, displayName, picture }, subject, issuer,
//                    preferredUsername, groups }; identity: { userEntityRef,
//                    ownershipEntityRefs?, extraClaims? }
//   strategies       { name: (req, ctx) => credential }: cluster credential strategies
//   listClusters     (req, ctx) => [cluster]: cluster discovery
//   configure        (config, ctx) => void: takes the plugin's `config:`;
//                    without it, a non-empty configuration is refused
//   validateOptions  ({ role, name, options }, ctx) => void: checks the
//                    `options:` of a use at the daemon's start
//   logger           a Logger (default: new Logger(name))
function serve(p) {
  const logger = (p && p.logger) || new Logger(p && p.name);
  return serveGoPlugin({
    name: p && p.name,
    versions: [proto.PROTOCOL_VERSION],
    services: services(p, logger),
    logger,
  });
}

module.exports = {
  serve,
  services,
  Logger,
  notFound,
  configError,
  invalidInput,
  isEntityName: proto.isEntityName,
  isEntityNamespace: proto.isEntityNamespace,
  PROTOCOL_VERSION: proto.PROTOCOL_VERSION,
  ROLE_RESOLVER,
  ROLE_CLUSTER_STRATEGY,
  ROLE_CLUSTER_SOURCE,
};
