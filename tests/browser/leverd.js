// A real leverd for the browser tests: a free port, a private data dir, the
// real `lever` CLI; everything is removed again by stop().
'use strict';

const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run these tests through CTest: ctest -R browser)`);
  return v;
}

class Leverd {
  constructor(extraFlags = []) {
    this.leverd = need('LEVER_E2E_LEVERD');
    this.lever = need('LEVER_E2E_LEVER');
    this.testService = need('LEVER_E2E_TESTSERVICE');
    this.extraFlags = extraFlags;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lvb-'));
    fs.chmodSync(this.dir, 0o755);  // a root leverd's instances run as another user (docs/security.md)
    this.log = '';
  }

  // Starts leverd and waits (bounded) for its "listening on" line.
  start() {
    const data = path.join(this.dir, 'data');
    this.proc = spawn(this.leverd, ['--listen', '127.0.0.1:0', '--data-dir', data, '--workers', '2',
      ...this.extraFlags], { stdio: ['ignore', 'ignore', 'pipe'] });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`leverd did not start:\n${this.log}`)), 30000);
      this.proc.stderr.on('data', (chunk) => {
        this.log += chunk;
        const m = /listening on 127\.0\.0\.1:(\d+)/.exec(this.log);
        if (m && !this.port) {
          this.port = Number(m[1]);
          clearTimeout(timer);
          resolve();
        }
      });
      this.proc.on('exit', (code) => reject(new Error(`leverd exited (${code}):\n${this.log}`)));
    });
  }

  get url() { return `http://127.0.0.1:${this.port}`; }

  // `lever -H <leverd> args...`, resolving to stdout; rejects on a non-zero exit.
  run(...args) {
    return new Promise((resolve, reject) => {
      execFile(this.lever, ['-H', `127.0.0.1:${this.port}`, ...args], { timeout: 60000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`lever ${args.join(' ')}: ${err.message}\n${stderr}`));
        else resolve(stdout);
      });
    });
  }

  // Deploys the C++ test service (tests/e2e/testservice) as `name`.
  async deployTestService(name) {
    const dir = fs.mkdtempSync(path.join(this.dir, 'svc-'));
    fs.writeFileSync(path.join(dir, 'lever.json'), JSON.stringify({ name, entry: ['./serve'] }));
    fs.copyFileSync(this.testService, path.join(dir, 'serve'));
    fs.chmodSync(path.join(dir, 'serve'), 0o755);
    return this.run('deploy', dir);
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((resolve) => this.proc.once('exit', resolve));
      this.proc.kill('SIGTERM');
      const timer = setTimeout(() => this.proc.kill('SIGKILL'), 30000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Leverd };
