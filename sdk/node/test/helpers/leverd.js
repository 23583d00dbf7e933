'use strict';
// Starts a real leverd (port 0, temp data dir) whose jsEntry services run
// through this package's lever-serve, and drives it with the real `lever` CLI.
// Binaries come from $LEVER_BUILD_DIR/cli (default <repo>/build/main).
const { spawn, execFile } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const pkgDir = path.resolve(__dirname, '..', '..');
const repoDir = path.resolve(pkgDir, '..', '..');
// A relative LEVER_BUILD_DIR: from where npm was started, here, or the repo root.
function buildDirFromEnv() {
  const dir = process.env.LEVER_BUILD_DIR;
  if (!dir) return path.join(repoDir, 'build', 'main');
  if (path.isAbsolute(dir)) return dir;
  const bases = [process.env.INIT_CWD, process.cwd(), repoDir].filter(Boolean);
  return bases.map((b) => path.resolve(b, dir)).find((p) => fs.existsSync(p)) || path.resolve(dir);
}
const buildDir = buildDirFromEnv();
const leverdPath = process.env.LEVERD || path.join(buildDir, 'cli', 'leverd');
const leverPath = process.env.LEVER_CLI || path.join(buildDir, 'cli', 'lever');
const leverServe = path.join(pkgDir, 'bin', 'lever-serve');
const fixtures = path.join(pkgDir, 'test', 'fixtures');

// Rejects if `p` has not settled within `ms` (bounded waits, no sleeps).
function within(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function run(file, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 60000, maxBuffer: 16 << 20, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

class Leverd {
  constructor(flags = []) {
    this.flags = flags;  // more leverd flags
    for (const p of [leverdPath, leverPath]) {
      if (!fs.existsSync(p)) throw new Error(`${p} not found: build leverd and lever, and set LEVER_BUILD_DIR`);
    }
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'lvn-'));
    this.log = '';
    this.address = '';
  }

  async start() {
    this.proc = spawn(
      leverdPath,
      ['--listen', '127.0.0.1:0', '--data-dir', this.dataDir, '--js-runner', leverServe, ...this.flags],
      { stdio: ['ignore', 'ignore', 'pipe'] });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => resolve({ code, signal })));
    const listening = new Promise((resolve, reject) => {
      this.proc.stderr.setEncoding('utf8');
      this.proc.stderr.on('data', (chunk) => {
        this.log += chunk;
        const m = /listening on (127\.0\.0\.1:\d+)/.exec(this.log);
        if (m && !this.address) {
          this.address = m[1];
          resolve();
        }
      });
      this.exited.then(({ code }) => reject(new Error(`leverd exited (${code}):\n${this.log}`)));
    });
    await within(listening, 15000, 'leverd to listen');
    return this;
  }

  // `lever -H <address> ...args`; rejects on a non-zero exit.
  async lever(...args) {
    const r = await run(leverPath, ['-H', this.address, ...args]);
    if (r.code !== 0) throw new Error(`lever ${args.join(' ')} failed (${r.code}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  // Deploys test/fixtures/<name> (or an absolute dir) to dev.lever.
  deploy(dir, env = 'dev.lever') {
    return this.lever('--env', env, 'deploy', path.isAbsolute(dir) ? dir : path.join(fixtures, dir));
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      try {
        await within(this.exited, 20000, 'leverd to stop');
      } catch {
        this.proc.kill('SIGKILL');
        await this.exited;
      }
    }
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

async function startLeverd(flags = []) {
  const d = new Leverd(flags);
  try {
    await d.start();
  } catch (err) {
    await d.stop();
    throw err;
  }
  return d;
}

module.exports = { startLeverd, within, run, repoDir, pkgDir, fixtures, leverServe };
