'use strict';
// Starts test/fixture-plugin.js as the daemon would (the handshake's
// environment, without TLS) and calls it over gRPC.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');
const proto = require('../lib/protocol');
const { selfSignedCert } = require('../lib/cert');
const { services } = require('..');

const COOKIE = { SPECTROAUTH_PLUGIN_MAGIC_COOKIE: '6f1d2c3b-spectroauth-plugin-d6a94e1c87b2' };

function start(t) {
  const child = spawn(process.execPath, [path.join(__dirname, 'fixture-plugin.js')], {
    env: { ...process.env, ...COOKIE, PLUGIN_PROTOCOL_VERSIONS: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.kill());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no handshake within 10s')), 10000);
    readline.createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve(line.split('|'));
    });
    child.once('exit', (code) => reject(new Error(`plugin exited with ${code}`)));
  });
}

const call = (client, method, req) => new Promise((resolve, reject) => {
  client[method](req, { deadline: Date.now() + 5000 }, (err, res) => (err ? reject(err) : resolve(res)));
});

test('the handshake line and the calls of a resolver', async (t) => {
  const fields = await start(t);
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
  assert.deepEqual(info.resolvers, ['byEmail']);
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
  await assert.rejects(call(plugin, 'ValidateOptions', { role: 'CAPABILITY_RESOLVER', name: 'byEmail', options: proto.toStruct({}) }),
    { code: grpc.status.INVALID_ARGUMENT, details: /domain/ });
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
