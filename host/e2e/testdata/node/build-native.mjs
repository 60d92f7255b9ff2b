// Builds better-sqlite3's native module, which `npm ci --ignore-scripts`
// leaves unbuilt (its install script would fetch a prebuilt binary from the
// internet). Compiles from the package's bundled sources with npm's own
// node-gyp against the headers installed with Node (no download). Idempotent:
// does nothing when the module already loads.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);

function loads() {
  try {
    const Database = require('better-sqlite3');
    new Database(':memory:').prepare('select 1 as x').get();
    return true;
  } catch (e) {
    return e;
  }
}

const before = loads();
if (before === true) {
  console.log('better-sqlite3: native module already built');
  process.exit(0);
}

const pkgDir = path.dirname(require.resolve('better-sqlite3/package.json'));
// npm exports its bundled node-gyp to scripts; fall back to npm's install dir.
const npmDir = path.resolve(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm');
const gyp = process.env.npm_config_node_gyp || path.join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
if (!existsSync(gyp)) {
  console.error(`better-sqlite3: node-gyp not found at ${gyp}`);
  process.exit(1);
}
const args = [gyp, 'rebuild', '--release', `--jobs=${process.env.JOBS || 'max'}`];
// Headers shipped with Node (Debian and NodeSource packages have them):
// with --nodedir node-gyp does not try to download them.
const nodeDir = path.resolve(path.dirname(process.execPath), '..');
if (existsSync(path.join(nodeDir, 'include', 'node', 'node.h'))) {
  args.push(`--nodedir=${nodeDir}`);
}
console.log(`better-sqlite3: building (${before.message.split('\n')[0]})`);
const t0 = Date.now();
const r = spawnSync(process.execPath, args, { cwd: pkgDir, stdio: 'inherit' });
if (r.status !== 0) {
  console.error(`better-sqlite3: node-gyp failed (exit ${r.status}); it needs python3, make and a C++ compiler`);
  process.exit(1);
}
delete require.cache[require.resolve('better-sqlite3')];
const after = loads();
if (after !== true) {
  console.error(`better-sqlite3: built but does not load: ${after.message}`);
  process.exit(1);
}
console.log(`better-sqlite3: built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
