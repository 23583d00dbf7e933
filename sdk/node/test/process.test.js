'use strict';
// The runtime without leverd: lever-serve on a unix socket, process exit,
// exceptions from callbacks, worker threads, method resolution, URLs.
const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Worker } = require('worker_threads');
const { Client, Server, serve, parseLeverURL, formatLeverURL, isChanMethod } = require('..');
const { methodNames } = require('../lib/server');
const { within, pkgDir, fixtures, leverServe } = require('./helpers/leverd');

// Runs `node -e code` with a bounded wait; resolves {code, signal, stdout, stderr}.
function node(code, env = {}, ms = 20000) {
  const child = spawn(process.execPath, ['-e', code], {
    cwd: pkgDir,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise((resolve) => child.on('close', (c, signal) => resolve({ code: c, signal, stdout, stderr })));
  return within(done, ms, `node -e ${code.slice(0, 60)}`).catch((err) => {
    child.kill('SIGKILL');
    throw err;
  });
}

test('a process exits by itself once its calls are done', async () => {
  const r = await node(`
    const { Client, serve } = require('.');
    const s = serve({ hi(n, cb) { cb(null, 'hi ' + n); } }, { listenAddr: '127.0.0.1:0' });
    const c = new Client({ forceHost: '127.0.0.1:' + s.port, waitForReady: true, timeout: 10000 });
    c.service('dev.lever', 'x').invoke('hi', 'there', (err, r) => {
      console.log(err || r);
      s.stop(0); // the running server is what kept the process alive
    });
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout.trim(), 'hi there');
});

test('a failed call does not keep the process alive', async () => {
  const r = await node(`
    const { Client } = require('.');
    new Client({ forceHost: '127.0.0.1:1', timeout: 3000 }).service('dev.lever', 'x').invoke('m')
      .catch((e) => console.log(e.code));
  `);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout.trim(), /^(UNAVAILABLE|DEADLINE_EXCEEDED)$/);
});

test('an exception thrown in a callback is an uncaught exception', async () => {
  const r = await node(`
    const { Client, serve } = require('.');
    const s = serve({ hi(cb) { cb(null, 1); } }, { listenAddr: '127.0.0.1:0' });
    process.on('exit', () => s.stop(0));
    new Client({ forceHost: '127.0.0.1:' + s.port, waitForReady: true, timeout: 10000 }).service('dev.lever', 'x').invoke('hi', () => {
      throw new Error('boom from callback');
    });
  `);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /boom from callback/);
});

test('the addon works in worker threads, and a worker exits cleanly', async () => {
  const s = serve({ hi: (n, cb) => cb(null, `hi ${n}`) }, { listenAddr: '127.0.0.1:0' });
  try {
    const w = new Worker(
      `const { parentPort, workerData } = require('worker_threads');
       const { Client } = require(workerData.pkg);
       new Client({ forceHost: workerData.host, waitForReady: true, timeout: 10000 }).service('dev.lever', 'x').invoke('hi', 'worker')
         .then((r) => parentPort.postMessage(r), (e) => parentPort.postMessage('error ' + e.message));`,
      { eval: true, workerData: { pkg: pkgDir, host: `127.0.0.1:${s.port}` } });
    // Both listeners first: a worker that exits right after posting emits
    // 'message' and 'exit' in one go.
    const message = require('events').once(w, 'message');
    const exit = require('events').once(w, 'exit');
    const [msg] = await within(message, 10000, 'worker reply');
    assert.equal(msg, 'hi worker');
    const [code] = await within(exit, 10000, 'worker exit');
    assert.equal(code, 0);
  } finally {
    await s.stop(0);
  }
});

test('lever-serve: serves a jsEntry on LEVEROS_LISTEN_ADDR and stops on SIGTERM', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lvs-'));
  const sock = path.join(dir, 'svc.sock');
  const child = spawn(leverServe, ['server.js'], {
    cwd: path.join(fixtures, 'basic'),
    env: { PATH: process.env.PATH, LEVEROS_LISTEN_ADDR: `unix:${sock}`, LEVEROS_ENVIRONMENT: 'dev.lever' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  try {
    // Waits for the socket to appear and accept (bounded by the timeout).
    const c = new Client({ forceHost: `unix:${sock}`, timeout: 10000, waitForReady: true });
    const ep = c.service('dev.lever', 'basictestservice');
    const reply = await ep.invoke('BasicHello', 'unix');
    assert.equal(reply, 'hello unix');
    assert.equal(await ep.invoke('isThis'), true);
    c.close();
    child.kill('SIGTERM');
    const { code } = await within(exited, 10000, 'lever-serve exit');
    assert.equal(code, 0, stderr);
  } finally {
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('lever-serve without an entry prints its usage', async () => {
  const child = spawn(leverServe, [], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const [code] = await within(require('events').once(child, 'exit'), 10000, 'exit');
  assert.equal(code, 2);
  assert.match(stderr, /usage: lever-serve <jsEntry>/);
});

test('method resolution: own and inherited functions, not _private, not constructor', () => {
  class Base {
    inherited() {}
    _private() {}
  }
  class Svc extends Base {
    constructor() {
      super();
      this.own = () => {};
      this.data = 42;
    }
    protoMethod() {}
  }
  assert.deepEqual(methodNames(new Svc()).sort(), ['inherited', 'own', 'protoMethod']);
  assert.deepEqual(methodNames({ a() {}, _b() {}, c: 1, dChan() {} }).sort(), ['a', 'dChan']);
  assert.throws(() => new Server(null), TypeError);
});

test('URLs and the streaming-name rule', () => {
  assert.deepEqual(parseLeverURL('lever://Dev.Lever/svc//m'), {
    environment: 'dev.lever', service: 'svc', resource: '', method: 'm',
  });
  assert.deepEqual(parseLeverURL('lever://dev.lever/svc/a/b/m'), {
    environment: 'dev.lever', service: 'svc', resource: 'a/b', method: 'm',
  });
  assert.deepEqual(parseLeverURL('/svc/m'), { environment: '', service: 'svc', resource: '', method: 'm' });
  assert.equal(formatLeverURL({ environment: 'e.lever', service: 's', resource: '', method: 'm' }), 'lever://e.lever/s//m');
  assert.throws(() => parseLeverURL('http://x/y/z'), TypeError);
  assert.throws(() => parseLeverURL('/svc/'), TypeError);
  for (const n of ['chan', 'fooChan', 'foo_chan']) assert.ok(isChanMethod(n), n);
  for (const n of ['channel', 'Chan2', 'foochan', 'CHAN']) assert.ok(!isChanMethod(n), n);
});

test('in-process: values the wire cannot carry are rejected before sending', async () => {
  const s = serve({ echo: (v, cb) => cb(null, v) }, { listenAddr: '127.0.0.1:0' });
  try {
    const ep = new Client({ forceHost: `127.0.0.1:${s.port}`, waitForReady: true, timeout: 10000 }).service('dev.lever', 'x');
    await assert.rejects(ep.invoke('echo', 2n ** 70n), /64-bit/);
    assert.ok(Number.isNaN(await ep.invoke('echo', NaN)));
    assert.ok(Object.is(await ep.invoke('echo', -0), -0));
    assert.equal(await ep.invoke('echo', Infinity), Infinity);
    assert.equal(await ep.invoke('echo', 2 ** 53 + 2), 2 ** 53 + 2);
    assert.equal(await ep.invoke('echo', 9007199254740993n), 9007199254740993n);
    const proto = await ep.invoke('echo', JSON.parse('{"__proto__": {"polluted": true}}'));
    assert.equal(Object.getPrototypeOf(proto), Object.prototype);
    assert.deepEqual(Object.keys(proto), ['__proto__']);
    assert.equal({}.polluted, undefined);
  } finally {
    await s.stop(0);
  }
});

test('in-process: a stream to a reader in the same process never blocks the event loop', async () => {
  const big = 'x'.repeat(1000);
  const s = serve(
    {
      floodChan(stream, n) {
        for (let i = 0; i < n; i++) stream.write(big); // far beyond the flow-control windows
        stream.end();
      },
      ping: (cb) => cb(null, 'pong'),
    },
    { listenAddr: '127.0.0.1:0' });
  try {
    const c = new Client({ forceHost: `127.0.0.1:${s.port}`, waitForReady: true, timeout: 20000 });
    const ep = c.service('dev.lever', 'x');
    const stream = await ep.invokeChan('floodChan', 20000);
    // Not reading yet: the server's writes wait in its buffers, and the same
    // event loop still serves other calls.
    assert.equal(await within(ep.invoke('ping'), 10000, 'ping while flooded'), 'pong');
    let count = 0;
    for await (const m of stream) {
      assert.equal(m.length, 1000);
      count++;
    }
    assert.equal(count, 20000);
  } finally {
    await s.stop(0);
  }
});
