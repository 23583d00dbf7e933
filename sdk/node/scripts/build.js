#!/usr/bin/env node
'use strict';
// `npm install` runs this: builds the addon from source with node-gyp, offline.
// node-gyp is npm's own copy (npm_config_node_gyp) or a local one; the Node
// headers come from the installed Node (<prefix>/include/node), so nothing is
// downloaded. Set LEVER_BUILD_DIR (or see scripts/lever-config.js) to say
// where liblever.so is.
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');

const pkgDir = path.resolve(__dirname, '..');

function nodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    path.join(pkgDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  for (const c of candidates) if (c && fs.existsSync(c)) return c;
  return null;
}

// Up to date: lever.node newer than its sources, lever.h and liblever.so
// (set LEVER_FORCE_BUILD=1 to rebuild anyway).
function upToDate() {
  const out = path.join(pkgDir, 'build', 'Release', 'lever.node');
  if (process.env.LEVER_FORCE_BUILD || !fs.existsSync(out)) return false;
  const config = (flag) =>
    spawnSync(process.execPath, [path.join(__dirname, 'lever-config.js'), flag], { encoding: 'utf8' }).stdout.trim();
  const inputs = [
    path.join(pkgDir, 'binding.gyp'),
    __filename,
    ...fs.readdirSync(path.join(pkgDir, 'src')).map((f) => path.join(pkgDir, 'src', f)),
    path.join(config('--include'), 'lever.h'),
    path.join(config('--libdir'), 'liblever.so'),
  ];
  const built = fs.statSync(out).mtimeMs;
  try {
    return inputs.every((f) => fs.statSync(f).mtimeMs < built);
  } catch {
    return false;
  }
}
if (upToDate()) {
  console.log('leveros: build/Release/lever.node is up to date');
  process.exit(0);
}

const gyp = nodeGyp();
if (!gyp) {
  console.error('leveros: node-gyp not found (it ships with npm); run the build through `npm install`.');
  process.exit(1);
}
const args = [gyp, 'rebuild'];
// The headers of the running Node: <prefix>/include/node (Debian: /usr).
const prefixes = [
  process.env.npm_config_nodedir,
  process.config.variables.node_prefix,
  path.join(path.dirname(process.execPath), '..'),
  '/usr',
  '/usr/local',
].filter(Boolean);
const nodedir = prefixes.find((p) => fs.existsSync(path.join(p, 'include', 'node', 'node_api.h')));
if (nodedir) args.push(`--nodedir=${path.resolve(nodedir)}`);
const jobs = process.env.JOBS || '2';
args.push(`--jobs=${jobs}`);
const r = spawnSync(process.execPath, args, { cwd: pkgDir, stdio: 'inherit' });
process.exit(r.status === null ? 1 : r.status);
