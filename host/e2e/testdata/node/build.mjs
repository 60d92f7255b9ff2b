// Bundles the test page (app/main.ts, which imports the example wiring from
// examples/backstage) into dist/: app.js and index.html.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'dist');
mkdirSync(out, { recursive: true });
const t0 = Date.now();
await build({
  entryPoints: [path.join(here, 'app', 'main.ts')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome120',
  // global: Node's name for globalThis, which some of Backstage's
  // dependencies use (Backstage's CLI bundler provides it too).
  define: { 'process.env.NODE_ENV': '"production"', global: 'globalThis' },
  // Backstage's components import images and fonts as URLs (as its CLI's
  // bundler does); the test page shows none of them.
  loader: { '.svg': 'dataurl', '.png': 'dataurl', '.woff': 'dataurl', '.woff2': 'dataurl' },
  // The example lives outside this folder: resolve its imports here.
  nodePaths: [path.join(here, 'node_modules')],
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
});
copyFileSync(path.join(here, 'app', 'index.html'), path.join(out, 'index.html'));
console.log(`bundled dist/app.js in ${Date.now() - t0} ms`);
