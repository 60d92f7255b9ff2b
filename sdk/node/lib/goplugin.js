'use strict';
// The plugin side of hashicorp/go-plugin's gRPC transport, for a plugin
// written in Node.js: what sdk.Serve does for a Go plugin.
//
// The host (spectroauthd) starts the plugin with a few environment variables
// and reads one line from its stdout, the handshake:
//
//   CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|NETWORK-TYPE|NETWORK-ADDR|PROTOCOL|SERVER-CERT
//   1|1|tcp|127.0.0.1:41234|grpc|MIIB...     (the certificate: base64 DER, no padding)
//
// then dials the address over gRPC, checks the standard health service for
// "plugin", and from then on calls the plugin's own services. It ends the
// plugin through GRPCController.Shutdown (or kills it). With AutoMTLS the host
// passes its client certificate in PLUGIN_CLIENT_CERT; the plugin must then
// serve TLS with a certificate of its own, which it announces in the sixth
// field, and accept only that client certificate.
//
// Everything a plugin prints on stdout after the handshake is lost, and before
// it breaks the handshake: so stdout gets exactly one line, and logs go to
// stderr as hclog JSON lines, which the host turns into its own log lines at
// their level.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { selfSignedCert } = require('./cert');

// go-plugin's own protocol version: the first handshake field.
const CORE_PROTOCOL_VERSION = 1;

// The handshake every spectroauth plugin shares (pluginclient.Handshake in Go). The
// cookie is no secret and no security measure: it only tells a plugin it was
// started by the daemon rather than by hand.
const MAGIC_COOKIE_KEY = 'SPECTROAUTH_PLUGIN_MAGIC_COOKIE';
const MAGIC_COOKIE_VALUE = '6f1d2c3b-spectroauth-plugin-d6a94e1c87b2';

// sdk.LogLevelEnv: trace, debug, info (the default), warn or error.
const LOG_LEVEL_ENV = 'SPECTROAUTH_PLUGIN_LOG_LEVEL';

// pluginclient.MaxMessageSize in Go: the largest message either end sends or accepts.
const MAX_MESSAGE_SIZE = 4 << 20;

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];

// Logger writes hclog's JSON format to stderr, one object a line:
// {"@level":"info","@message":"...","@module":"name","@timestamp":"...", key: value...}
class Logger {
  constructor(name, level = process.env[LOG_LEVEL_ENV]) {
    this.name = name;
    const l = LEVELS.indexOf(String(level || '').toLowerCase());
    this.min = l < 0 ? LEVELS.indexOf('info') : l;
  }

  log(level, message, fields = {}) {
    if (LEVELS.indexOf(level) < this.min) return;
    const entry = {
      '@level': level,
      '@message': String(message),
      '@module': this.name,
      // go-plugin parses this exact layout: microseconds, then the zone.
      '@timestamp': new Date().toISOString().replace(/Z$/, '000Z'),
    };
    for (const [k, v] of Object.entries(fields)) {
      if (!k.startsWith('@')) entry[k] = v instanceof Error ? v.message : v;
    }
    process.stderr.write(JSON.stringify(entry) + '\n');
  }

  trace(m, f) { this.log('trace', m, f); }
  debug(m, f) { this.log('debug', m, f); }
  info(m, f) { this.log('info', m, f); }
  warn(m, f) { this.log('warn', m, f); }
  error(m, f) { this.log('error', m, f); }
}

// Keeps stdout for the handshake alone: console output of this program or of a
// library becomes log lines on stderr.
function guardStdout(logger) {
  const to = (level) => (...args) => logger.log(level, args.map(String).join(' '));
  console.log = console.info = to('info');
  console.debug = console.trace = to('debug');
  console.warn = to('warn');
  console.error = to('error');
  grpc.setLogger({ error: (...args) => logger.debug(args.map(String).join(' '), { source: 'grpc-js' }) });
}

// The services go-plugin calls on every plugin, from wire/.
function loadGoPluginServices() {
  const def = protoLoader.loadSync(['grpc/health/v1/health.proto', 'goplugin/goplugin.proto'], {
    includeDirs: [path.join(__dirname, '..', 'wire')],
    keepCase: true,
    enums: String,
    defaults: true,
  });
  const pkg = grpc.loadPackageDefinition(def);
  return {
    Health: pkg.grpc.health.v1.Health.service,
    GRPCController: pkg.plugin.GRPCController.service,
    GRPCStdio: pkg.plugin.GRPCStdio.service,
  };
}

// Which app protocol version to speak: the highest the host offers in
// PLUGIN_PROTOCOL_VERSIONS that the plugin speaks. When there is none, the
// plugin announces its own highest version and the host reports the mismatch
// (go-plugin does the same), which is clearer than a plugin that just exits.
function negotiateVersion(supported, logger) {
  const offered = (process.env.PLUGIN_PROTOCOL_VERSIONS || '')
    .split(',').filter(Boolean).map(Number);
  const common = supported.filter((v) => offered.includes(v));
  if (offered.length > 0 && common.length === 0) {
    logger.error('the host speaks none of the plugin protocol versions of this plugin',
      { host: offered.join(','), plugin: supported.join(',') });
  }
  return Math.max(...(common.length > 0 ? common : supported));
}

// serve serves the given gRPC services as a go-plugin plugin and returns once
// the handshake line is out. The process exits when the host asks it to (or
// on SIGTERM).
//
//   name         the plugin's name, for logs
//   versions     the app protocol versions it speaks, e.g. [1]
//   services     [{ service, impl }]: a grpc-js service definition and its handlers
//   logger       a Logger
function serve({ name, versions, services, logger = new Logger(name) }) {
  guardStdout(logger);
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    process.stderr.write(`${name} is a spectroauth plugin: spectroauthd starts it, it is not run by hand.\n`);
    process.exit(1);
  }
  const version = negotiateVersion(versions, logger);

  // AutoMTLS: the host's certificate is the only client certificate accepted,
  // and ours is the only server certificate the host will trust.
  let credentials = grpc.ServerCredentials.createInsecure();
  let certField = '';
  const clientCert = process.env.PLUGIN_CLIENT_CERT;
  if (clientCert) {
    const cert = selfSignedCert();
    credentials = grpc.ServerCredentials.createSsl(
      Buffer.from(clientCert),
      [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certPem) }],
      true, // require and verify the client's certificate
    );
    // go-plugin decodes this field with Go's base64.RawStdEncoding.
    certField = cert.certDer.toString('base64').replace(/=+$/, '');
  } else {
    logger.warn('PLUGIN_CLIENT_CERT is not set: serving without TLS');
  }

  const server = new grpc.Server({
    'grpc.max_receive_message_length': MAX_MESSAGE_SIZE,
    'grpc.max_send_message_length': MAX_MESSAGE_SIZE,
  });
  for (const { service, impl } of services) server.addService(service, impl);

  const stdioStreams = new Set();
  let stopping = false;
  const stop = (why) => {
    if (stopping) return;
    stopping = true;
    logger.debug('plugin stopping', { reason: why });
    for (const s of stdioStreams) s.end();
    // Let calls in flight finish, but not forever.
    const force = setTimeout(() => { server.forceShutdown(); process.exit(0); }, 2000);
    force.unref();
    server.tryShutdown(() => process.exit(0));
  };

  const core = loadGoPluginServices();
  server.addService(core.Health, {
    Check(call, callback) {
      const svc = call.request.service;
      if (svc === '' || svc === 'plugin') {
        callback(null, { status: stopping ? 'NOT_SERVING' : 'SERVING' });
      } else {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(svc)}` });
      }
    },
  });
  server.addService(core.GRPCController, {
    Shutdown(call, callback) {
      callback(null, {});
      setImmediate(() => stop('the host asked the plugin to shut down'));
    },
  });
  server.addService(core.GRPCStdio, {
    StreamStdio(call) {
      // Nothing to mirror: logs already go to stderr, which the host reads.
      stdioStreams.add(call);
      const done = () => { stdioStreams.delete(call); };
      call.on('cancelled', done);
      call.on('close', done);
    },
  });

  // go-plugin's Go plugins ignore SIGINT: a Ctrl-C in the host's terminal
  // reaches the whole process group, and the host stops its plugins itself.
  process.on('SIGINT', () => logger.debug('ignoring SIGINT; the host stops this plugin'));
  process.on('SIGTERM', () => stop('SIGTERM'));

  server.bindAsync('127.0.0.1:0', credentials, (err, port) => {
    if (err) {
      logger.error('cannot listen', { error: err });
      process.exit(1);
    }
    const fields = [CORE_PROTOCOL_VERSION, version, 'tcp', `127.0.0.1:${port}`, 'grpc', certField];
    // Set by hosts that multiplex go-plugin's broker over the one connection,
    // a feature for bidirectional plugins that this one does not implement.
    if (process.env.PLUGIN_MULTIPLEX_GRPC) fields.push('false');
    process.stdout.write(fields.join('|') + '\n');
    logger.debug('plugin serving', { address: `127.0.0.1:${port}`, protocol: version, tls: Boolean(certField) });
  });
  return server;
}

module.exports = { serve, Logger, MAX_MESSAGE_SIZE };
