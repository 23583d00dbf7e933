#!/usr/bin/env node
'use strict';
// Where the addon build finds lever.h and liblever.so (used by binding.gyp).
//
//   node scripts/lever-config.js --include   the directory holding lever.h
//   node scripts/lever-config.js --libdir    the directory holding liblever.so
//   node scripts/lever-config.js --libs      linker flags, with an rpath
//
// Looked up in this order:
//   1. LEVER_INCLUDE_DIR / LEVER_LIB_DIR, when set;
//   2. LEVER_BUILD_DIR (a CMake build dir of this repository; default
//      <repo>/build/main; a relative path is looked up from INIT_CWD, the
//      current dir, then the repository root): liblever.so below it (sdk/c/ first),
//      lever.h from <repo>/sdk/c/include;
//   3. pkg-config lever (set PKG_CONFIG_PATH to the dir with lever.pc).
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const pkgDir = path.resolve(__dirname, '..');
const repoDir = path.resolve(pkgDir, '..', '..');

function fail(msg) {
  process.stderr.write(
    `leveros: ${msg}\n` +
      'Build liblever first (cmake --build <build-dir> --target lever) and point the\n' +
      'addon build at it: LEVER_BUILD_DIR=<build-dir> npm install, or set\n' +
      'LEVER_LIB_DIR and LEVER_INCLUDE_DIR, or PKG_CONFIG_PATH to the dir of lever.pc.\n');
  process.exit(1);
}

// A relative LEVER_BUILD_DIR is taken from where npm was started (INIT_CWD),
// the current directory, or the repository root, whichever has it.
function buildDirFromEnv() {
  const dir = process.env.LEVER_BUILD_DIR;
  if (!dir) return path.join(repoDir, 'build', 'main');
  if (path.isAbsolute(dir)) return dir;
  const bases = [process.env.INIT_CWD, process.cwd(), repoDir].filter(Boolean);
  const found = bases.map((b) => path.resolve(b, dir)).find((p) => fs.existsSync(p));
  return found || path.resolve(dir);
}

function pkgConfig(flag) {
  try {
    return execFileSync('pkg-config', [flag, 'lever'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function findLib(dir, depth) {
  const direct = path.join(dir, 'liblever.so');
  if (fs.existsSync(direct)) return dir;
  if (depth === 0) return null;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return null;
  }
  // sdk/ first: that is where the repository's CMake puts it.
  entries.sort((a, b) => (b.name === 'sdk' || b.name === 'c') - (a.name === 'sdk' || a.name === 'c'));
  for (const e of entries) {
    if (!e.isDirectory() || e.name === 'CMakeFiles' || e.name.startsWith('.')) continue;
    const found = findLib(path.join(dir, e.name), depth - 1);
    if (found) return found;
  }
  return null;
}

function includeDir() {
  if (process.env.LEVER_INCLUDE_DIR) return path.resolve(process.env.LEVER_INCLUDE_DIR);
  const inRepo = path.join(repoDir, 'sdk', 'c', 'include');
  if (fs.existsSync(path.join(inRepo, 'lever.h'))) return inRepo;
  const pc = pkgConfig('--variable=includedir');
  if (pc) return pc;
  fail('cannot find lever.h');
}

function libDir() {
  if (process.env.LEVER_LIB_DIR) return path.resolve(process.env.LEVER_LIB_DIR);
  const buildDir = buildDirFromEnv();
  const found = fs.existsSync(buildDir) ? findLib(buildDir, 3) : null;
  if (found) return found;
  const pc = pkgConfig('--variable=libdir');
  if (pc && fs.existsSync(path.join(pc, 'liblever.so'))) return pc;
  fail(`cannot find liblever.so under ${buildDir}`);
}

const what = process.argv[2];
if (what === '--include') {
  process.stdout.write(includeDir() + '\n');
} else if (what === '--libdir') {
  process.stdout.write(libDir() + '\n');
} else if (what === '--libs') {
  const dir = libDir();
  process.stdout.write(`-L${dir} -llever -Wl,-rpath,${dir}\n`);
} else {
  fail(`usage: lever-config.js --include|--libdir|--libs`);
}
