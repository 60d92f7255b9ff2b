'use strict';
// A self-signed TLS certificate for go-plugin's AutoMTLS, made with Node's own
// crypto.
//
// Node can make keys and signatures but not X.509 certificates. Rather than
// pull in a certificate library for one fixed certificate, this file writes
// the certificate's DER structure (RFC 5280) itself: about sixty lines, no
// dependency, and fast (an ECDSA P-256 key and one signature take about a
// millisecond, where the libraries tried took 400 ms or more to load or to
// sign; see README.md). The cryptography is all Node's (OpenSSL): key
// generation, the public key encoding and the signature. The result is checked
// before use by parsing it back with crypto.X509Certificate and verifying its
// signature, and the Go test parses it with crypto/x509 through the real
// go-plugin handshake.

const crypto = require('node:crypto');

// DER encoding: tag, length, value.
function der(tag, ...values) {
  const body = Buffer.concat(values);
  let len;
  if (body.length < 0x80) {
    len = Buffer.from([body.length]);
  } else {
    const bytes = [];
    for (let n = body.length; n > 0; n = Math.floor(n / 256)) bytes.unshift(n % 256);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, body]);
}

const seq = (...v) => der(0x30, ...v);
const set = (...v) => der(0x31, ...v);
const octets = (b) => der(0x04, b);
const bits = (b) => der(0x03, Buffer.from([0]), b); // no unused bits
const utf8 = (s) => der(0x0c, Buffer.from(s, 'utf8'));

function oid(dotted) {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (let v of rest) {
    const group = [v & 0x7f];
    for (v = Math.floor(v / 128); v > 0; v = Math.floor(v / 128)) group.unshift(0x80 | (v & 0x7f));
    out.push(...group);
  }
  return der(0x06, Buffer.from(out));
}

// A non-negative INTEGER from big-endian bytes.
function uint(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = bytes.subarray(i);
  return der(0x02, b[0] & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

// UTCTime up to 2049, GeneralizedTime after, as RFC 5280 4.1.2.5 requires.
function time(d) {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  const y = d.getUTCFullYear();
  return y >= 1950 && y < 2050 ? der(0x17, Buffer.from(s.slice(2))) : der(0x18, Buffer.from(s));
}

const extension = (id, critical, value) =>
  seq(oid(id), ...(critical ? [der(0x01, Buffer.from([0xff]))] : []), octets(value));

// selfSignedCert returns a new ECDSA P-256 key and a certificate for it, valid
// for "localhost" and 127.0.0.1, for serving and as a client: what go-plugin's
// host expects of a plugin's certificate (it pins exactly this certificate as
// its only root, and checks the name "localhost"). { keyPem, certPem, certDer }.
function selfSignedCert({ commonName = 'localhost', years = 30 } = {}) {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaWithSHA256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(set(seq(oid('2.5.4.3'), utf8(commonName)))); // CN=...
  const now = Date.now();
  const notAfter = new Date(now);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + years);
  const serial = crypto.randomBytes(16);
  serial[0] = (serial[0] & 0x7f) | 0x01; // positive and 16 bytes long

  const tbs = seq(
    der(0xa0, uint(Buffer.from([2]))), // version: v3
    uint(serial),
    ecdsaWithSHA256,
    name, // issuer: itself
    seq(time(new Date(now - 60_000)), time(notAfter)),
    name, // subject
    publicKey.export({ type: 'spki', format: 'der' }),
    der(0xa3, seq(
      extension('2.5.29.19', true, seq()), // basicConstraints: not a CA
      extension('2.5.29.15', true, der(0x03, Buffer.from([7, 0x80]))), // keyUsage: digitalSignature
      extension('2.5.29.37', false, seq(oid('1.3.6.1.5.5.7.3.1'), oid('1.3.6.1.5.5.7.3.2'))), // serverAuth, clientAuth
      extension('2.5.29.17', false, seq( // subjectAltName
        der(0x82, Buffer.from('localhost')), // dNSName
        der(0x87, Buffer.from([127, 0, 0, 1])), // iPAddress
      )),
    )),
  );
  const signature = crypto.sign('sha256', tbs, privateKey); // ECDSA-Sig-Value, DER
  const certDer = seq(tbs, ecdsaWithSHA256, bits(signature));

  const x509 = new crypto.X509Certificate(certDer);
  if (!x509.verify(publicKey) || !x509.checkHost('localhost') || !x509.checkIP('127.0.0.1')) {
    throw new Error('generated certificate does not check out');
  }
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }),
    certPem: x509.toString(),
    certDer,
  };
}

module.exports = { selfSignedCert };
