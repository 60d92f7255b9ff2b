'use strict';
// Starts test/fixture-plugin.js as the daemon would (the handshake's
// environment, without TLS) and calls it over gRPC.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn, spawnSync } = require('node:child_process');
const grpc = require('@grpc/grpc-js');
const proto = require('../lib/protocol');
const { selfSignedCert } = require('../lib/cert');
const { services } = require('..');

const COOKIE = { SPECTROAUTH_PLUGIN_MAGIC_COOKIE: '6f1d2c3b-spectroauth-plugin-d6a94e1c87b2' };

// start runs the fixture with the handshake's environment and extra env; it
// resolves to the handshake's fields and the child, whose stdout and stderr
// are collected in child.out and child.err.
function start(t, env = {}) {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixture-plugin.js')], {
    env: { ...process.env, ...COOKIE, PLUGIN_PROTOCOL_VERSIONS: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.out = '';
  child.err = '';
  child.stderr.on('data', (b) => { child.err += b; });
  t.after(() => child.kill());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no handshake within 10s')), 10000);
    child.stdout.on('data', (b) => {
      child.out += b;
      if (!child.out.includes('\n')) return;
      clearTimeout(timer);
      resolve({ fields: child.out.split('\n')[0].split('|'), child });
    });
    child.once('exit', (code) => reject(new Error(`plugin exited with ${code}: ${child.err}`)));
  });
}

const call = (client, method, req, ms = 5000) => new Promise((resolve, reject) => {
  client[method](req, { deadline: Date.now() + ms }, (err, res) => (err ? reject(err) : resolve(res)));
});

test('the handshake line and the calls of a resolver', async (t) => {
  const { fields } = await start(t);
  assert.deepEqual(fields.slice(0, 3), ['1', '1', 'tcp']);
  assert.equal(fields[4], 'grpc');
  const creds = grpc.credentials.createInsecure();
  const Plugin = grpc.makeGenericClientConstructor(proto.PluginService);
  const Resolver = grpc.makeGenericClientConstructor(proto.ResolverService);
  const plugin = new Plugin(fields[3], creds);
  const resolver = new Resolver(fields[3], creds);
  t.after(() => { plugin.close(); resolver.close(); });

  const info = await call(plugin, 'Describe', {});
  assert.equal(info.name, 'fixture');
  assert.deepEqual(info.resolvers, ['slow', 'byEmail']);
  assert.deepEqual(info.capabilities, ['CAPABILITY_RESOLVER', 'CAPABILITY_CONFIGURE', 'CAPABILITY_VALIDATE_OPTIONS']);

  const req = { resolver: 'byEmail', profile: { email: 'jdoe@example.com', emailVerified: true } };
  await assert.rejects(call(resolver, 'Resolve', req), { code: grpc.status.FAILED_PRECONDITION });
  await assert.rejects(call(plugin, 'Configure', { config: proto.toStruct({ suffix: 1 }) }),
    { code: grpc.status.INVALID_ARGUMENT, details: /suffix/ });
  await call(plugin, 'Configure', { config: proto.toStruct({ suffix: '-x' }) });

  const res = await call(resolver, 'Resolve', req);
  assert.equal(res.identity.userEntityRef, 'user:default/jdoe-x');
  assert.deepEqual(res.identity.ownershipEntityRefs, ['user:default/jdoe-x']);
  await assert.rejects(call(resolver, 'Resolve', { ...req, profile: { email: 'a@b', emailVerified: false } }),
    { code: grpc.status.NOT_FOUND });
  await assert.rejects(call(resolver, 'Resolve', { ...req, resolver: 'other' }),
    { code: grpc.status.INVALID_ARGUMENT, details: /Resolver/ });
  await assert.rejects(call(plugin, 'ValidateOptions', { role: 'CAPABILITY_RESOLVER', name: 'slow', options: proto.toStruct({}) }),
    { code: grpc.status.INVALID_ARGUMENT, details: /wait/ });
  await call(plugin, 'ValidateOptions', { role: 'CAPABILITY_RESOLVER', name: 'byEmail', options: proto.toStruct({}) });
  await assert.rejects(call(resolver, 'Resolve', { resolver: 'slow', options: proto.toStruct({ wait: true }) }, 300),
    (err) => err.code === grpc.status.DEADLINE_EXCEEDED);
  await assert.rejects(call(plugin, 'ValidateOptions', { role: 'CAPABILITY_CLUSTER_SOURCE', name: '' }),
    { code: grpc.status.INVALID_ARGUMENT, details: /no CLUSTER_SOURCE role/ });
});

test('serve refuses a plugin with nothing to offer or a handler that is no function', () => {
  const log = { debug() {} };
  assert.throws(() => services({ name: 'x' }, log), /resolvers, strategies or listClusters/);
  assert.throws(() => services({ name: 'x', resolvers: { a: 1 } }, log), /resolvers\.a must be a function/);
  assert.throws(() => services({ resolvers: { a() {} } }, log), /name is required/);
});

test('the AutoMTLS certificate parses and is self-signed', () => {
  const cert = selfSignedCert();
  const x = new crypto.X509Certificate(cert.certDer);
  assert.ok(x.verify(x.publicKey));
});

test('with AutoMTLS: the announced certificate, the client certificate required', async (t) => {
  const client = selfSignedCert();
  const { fields, child } = await start(t, { PLUGIN_CLIENT_CERT: client.certPem, SPECTROAUTH_PLUGIN_LOG_LEVEL: 'trace' });
  assert.equal(fields.length, 6);
  // go-plugin decodes the sixth field with base64.RawStdEncoding: no padding.
  assert.doesNotMatch(fields[5], /=/);
  const server = new crypto.X509Certificate(Buffer.from(fields[5], 'base64'));
  assert.ok(server.checkHost('localhost'));

  const Plugin = grpc.makeGenericClientConstructor(proto.PluginService);
  const mtls = new Plugin(fields[3], grpc.credentials.createSsl(
    Buffer.from(server.toString()), Buffer.from(client.keyPem), Buffer.from(client.certPem)),
  { 'grpc.ssl_target_name_override': 'localhost' });
  const other = selfSignedCert();
  const stranger = new Plugin(fields[3], grpc.credentials.createSsl(
    Buffer.from(server.toString()), Buffer.from(other.keyPem), Buffer.from(other.certPem)),
  { 'grpc.ssl_target_name_override': 'localhost' });
  t.after(() => { mtls.close(); stranger.close(); });
  assert.equal((await call(mtls, 'Describe', {})).name, 'fixture');
  await assert.rejects(call(stranger, 'Describe', {}));

  // stdout carries the handshake alone; stderr hclog JSON lines.
  assert.equal(child.out.split('\n').filter(Boolean).length, 1);
  const lines = child.err.split('\n').filter(Boolean);
  assert.ok(lines.length > 0, 'no log line at trace level');
  for (const line of lines) {
    const entry = JSON.parse(line);
    assert.ok(entry['@level'] && entry['@message'], line);
    assert.match(entry['@timestamp'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  }
});

test('a host offering only another protocol version hears the plugin\'s own', async (t) => {
  const { fields, child } = await start(t, { PLUGIN_PROTOCOL_VERSIONS: '2' });
  assert.equal(fields[1], '1');
  assert.match(child.err, /none of the plugin protocol versions/);
});

test('run by hand, without the handshake, the plugin says what it is and exits 1', () => {
  const env = { ...process.env };
  delete env.SPECTROAUTH_PLUGIN_MAGIC_COOKIE;
  const r = spawnSync(process.execPath, [path.join(__dirname, 'fixture-plugin.js')], { env, encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /is a spectroauth plugin/);
});

// invoke calls the grpc-js handler of method in svcs as grpc-js would.
function invoke(svcs, method, request) {
  const impl = svcs.map((s) => s.impl).find((i) => i[method]);
  const call = { request, metadata: new grpc.Metadata(), on() {}, getDeadline: () => Infinity };
  return new Promise((resolve, reject) => impl[method](call, (err, res) => (err ? reject(err) : resolve(res))));
}

test('strategies and listClusters: described, named, configured first', async () => {
  const svcs = services({
    name: 'clusters',
    strategies: { oidc: async (req) => ({ token: `t-${req.options.audience}` }) },
    listClusters: () => [{ name: 'one', server: 'https://one.example.com' }],
  }, { debug() {} });
  const info = await invoke(svcs, 'Describe', {});
  assert.deepEqual(info.capabilities, ['CAPABILITY_CLUSTER_STRATEGY', 'CAPABILITY_CLUSTER_SOURCE']);
  assert.deepEqual(info.strategies, ['oidc']);
  await assert.rejects(invoke(svcs, 'ListClusters', {}), { code: grpc.status.FAILED_PRECONDITION });
  await assert.rejects(invoke(svcs, 'Configure', { config: proto.toStruct({ x: 1 }) }), { details: /takes no configuration/ });
  await invoke(svcs, 'Configure', { config: proto.toStruct({}) });
  assert.deepEqual(await invoke(svcs, 'Credential', { strategy: 'oidc', options: proto.toStruct({ audience: 'k8s' }) }),
    { credential: { token: 't-k8s' } });
  await assert.rejects(invoke(svcs, 'Credential', { strategy: 'other' }), { code: grpc.status.INVALID_ARGUMENT });
  assert.equal((await invoke(svcs, 'ListClusters', {})).clusters[0].name, 'one');
});
