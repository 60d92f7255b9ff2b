'use strict';
// The spectroauth plugin protocol, version 1, for Node.js: its services loaded
// at run time from the repository's own .proto files (so that this plugin
// cannot drift from the protocol), the error convention of plugin.proto, and
// helpers for google.protobuf.Struct and Backstage entity refs.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const protobuf = require('protobufjs');

// Where proto/spectroauth/plugin/v1/*.proto live: SPECTROAUTH_PROTO_DIR when
// set; else this package's proto/ folder, which `npm pack` fills (prepack)
// for a published copy; else, inside the repository (this package is
// sdk/node), the repository's proto/ folder. Loading the protocol's own files
// keeps this package from drifting from it.
const bundled = path.resolve(__dirname, '..', 'proto');
const PROTO_ROOT = process.env.SPECTROAUTH_PROTO_DIR ||
  (fs.existsSync(path.join(bundled, 'spectroauth')) ? bundled : path.resolve(__dirname, '..', '..', '..', 'proto'));
const PROTO_FILES = ['plugin.proto', 'resolver.proto', 'cluster.proto']
  .map((f) => `spectroauth/plugin/v1/${f}`);

// The protocol version of package spectroauth.plugin.v1, negotiated in the
// go-plugin handshake and repeated in DescribeResponse.protocol_version.
const PROTOCOL_VERSION = 1;

// Bounds the error messages sent, in bytes (as the Go SDK does).
const MAX_ERROR_MESSAGE = 4 << 10;

const definition = protoLoader.loadSync(PROTO_FILES, {
  includeDirs: [PROTO_ROOT],
  keepCase: false, // JavaScript's spelling: userEntityRef, emailVerified
  enums: String, // 'CAPABILITY_RESOLVER'
  defaults: true,
  oneofs: true, // google.protobuf.Value says which kind it holds
});
const v1 = grpc.loadPackageDefinition(definition).spectroauth.plugin.v1;

// ErrorDetail and google.rpc.Status, for the "grpc-status-details-bin"
// trailer that carries the detail of a failed call.
const types = new protobuf.Root().loadSync([
  path.join(PROTO_ROOT, 'spectroauth/plugin/v1/plugin.proto'),
  path.join(__dirname, '..', 'wire', 'google/rpc/status.proto'),
], { keepCase: true });
const ErrorDetail = types.lookupType('spectroauth.plugin.v1.ErrorDetail');
const Status = types.lookupType('google.rpc.Status');

function truncate(msg) {
  const b = Buffer.from(String(msg));
  if (b.length <= MAX_ERROR_MESSAGE) return String(msg);
  return b.subarray(0, MAX_ERROR_MESSAGE).toString().replace(/\uFFFD$/, '') + '… (truncated)';
}

// A failed call: the grpc-js error object, with the ErrorDetail attached as
// gRPC's rich status.
function statusError(code, message, detail) {
  message = truncate(message);
  const metadata = new grpc.Metadata();
  if (detail) {
    const value = ErrorDetail.encode(ErrorDetail.fromObject({ ...detail, message: truncate(detail.message || '') })).finish();
    const st = Status.encode(Status.fromObject({
      code,
      message,
      details: [{ type_url: 'type.googleapis.com/spectroauth.plugin.v1.ErrorDetail', value }],
    })).finish();
    metadata.set('grpc-status-details-bin', Buffer.from(st));
  }
  return { code, details: message, metadata };
}

// The statuses with a fixed meaning (see the header of plugin.proto). The
// messages follow the Go SDK's, so that the daemon's log reads the same
// whatever the plugin's language.

// NOT_FOUND: no answer for this input; the daemon tries its next resolver.
const notFound = (message) =>
  statusError(grpc.status.NOT_FOUND, message, { reason: 'ERROR_REASON_NOT_FOUND' });

// INVALID_ARGUMENT for a bad configuration or options key (a dotted path).
const invalidConfig = (key, message) =>
  statusError(grpc.status.INVALID_ARGUMENT, `config key ${JSON.stringify(key)}: ${message}`,
    { reason: 'ERROR_REASON_INVALID_CONFIG', key, message });

// INVALID_ARGUMENT for a request field the plugin cannot use.
const invalidInput = (field, message) =>
  statusError(grpc.status.INVALID_ARGUMENT, `invalid input ${field}: ${message}`,
    { reason: 'ERROR_REASON_INVALID_INPUT', key: field, message });

// FAILED_PRECONDITION: a call before Configure succeeded.
const notConfigured = () =>
  statusError(grpc.status.FAILED_PRECONDITION, 'plugin is not configured: no Configure call has succeeded');

// A google.protobuf.Struct (as proto-loader decodes it) as a plain object.
function fromStruct(s) {
  const out = {};
  for (const [k, v] of Object.entries((s && s.fields) || {})) out[k] = fromValue(v);
  return out;
}

// proto-loader names the kind in the spelling of the loaded definition:
// "string_value" or "stringValue" (the bundled well-known types).
// A Value built by hand (toValue) names no kind: its one field says it.
function fromValue(v) {
  const kind = v && (v.kind || Object.keys(v).find((k) => /value$/i.test(k) && v[k] !== undefined));
  if (!kind) return null;
  const value = v[kind];
  switch (kind.replace(/_/g, '').toLowerCase()) {
    case 'stringvalue':
    case 'numbervalue':
    case 'boolvalue':
      return value;
    case 'structvalue':
      return fromStruct(value);
    case 'listvalue':
      return ((value && value.values) || []).map(fromValue);
    default:
      return null;
  }
}

// A plain value as a google.protobuf.Value (for proto-loader's encoder).
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  switch (typeof v) {
    case 'string': return { stringValue: v };
    case 'number': return { numberValue: v };
    case 'boolean': return { boolValue: v };
    case 'object': return { structValue: toStruct(v) };
    default: return { stringValue: String(v) };
  }
}

// A plain object as a google.protobuf.Struct.
function toStruct(o) {
  const fields = {};
  for (const [k, v] of Object.entries(o || {})) fields[k] = toValue(v);
  return { fields };
}

// Backstage's default naming rules for entity ref parts (sdk.EntityRef).
const ENTITY_NAME = /^[A-Za-z0-9]+(?:[-_.][A-Za-z0-9]+)*$/;
const ENTITY_NAMESPACE = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;
const isEntityName = (s) => s.length <= 63 && ENTITY_NAME.test(s);
const isEntityNamespace = (s) => s.length <= 63 && ENTITY_NAMESPACE.test(s);

module.exports = {
  PROTOCOL_VERSION,
  PluginService: v1.PluginService.service,
  ResolverService: v1.ResolverService.service,
  ClusterStrategyService: v1.ClusterStrategyService.service,
  ClusterSourceService: v1.ClusterSourceService.service,
  PROTO_ROOT,
  statusError,
  notFound,
  invalidConfig,
  invalidInput,
  notConfigured,
  fromStruct,
  toStruct,
  isEntityName,
  isEntityNamespace,
};
