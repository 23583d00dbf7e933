'use strict';
// The original system test (reference §11.1) against a real leverd, in the
// original callback style and with Promises; and the hello-js example.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');
const { Client, LeverError } = require('..');
const { startLeverd, within, repoDir } = require('./helpers/leverd');

let leverd;
let client;
let ep;

before(async () => {
  leverd = await startLeverd();
  await leverd.deploy('basic');
  client = new Client();
  client.forceHost = leverd.address; // as the original: a property set after construction
  client.waitForReady = true; // a busy machine may take a while to accept
  client.timeout = 20000;
  ep = client.service('dev.lever', 'basictestservice');
});

after(async () => {
  if (leverd) await leverd.stop();
});

test('BasicHello (callback)', async () => {
  const reply = await within(
    new Promise((resolve, reject) => {
      ep.invoke('BasicHello', 'name', (err, r) => (err ? reject(err) : resolve(r)));
    }),
    20000,
    'BasicHello');
  assert.equal(reply, 'hello name');
});

test('BasicHello (Promise)', async () => {
  assert.equal(await ep.invoke('BasicHello', 'name'), 'hello name');
});

test('ReqReplyStream', async () => {
  const stream = await ep.invokeChan('ReqReplyStreamChan', 'some test');
  const received = [];
  stream.on('data', (m) => received.push(m));
  const ended = new Promise((resolve, reject) => {
    stream.on('end', resolve);
    stream.on('error', reject);
  });
  const msgs = [1, 2, 'hello', 'world', 'test', 123];
  for (const m of msgs) stream.write(m);
  stream.end();
  await within(ended, 10000, 'stream end');
  assert.deepEqual(
    received,
    msgs.map((m) => `some test:${m} received`));
});

test('ReqReplyStream (callback, one message at a time)', async () => {
  const stream = await new Promise((resolve, reject) => {
    ep.invokeChan('ReqReplyStreamChan', 'some test', (err, s) => (err ? reject(err) : resolve(s)));
  });
  const it = stream[Symbol.asyncIterator]();
  for (const m of [1, 2, 'hello', 'world', 'test', 123]) {
    stream.write(m);
    const { value } = await within(it.next(), 10000, 'reply');
    assert.equal(value, `some test:${m} received`);
  }
  stream.end();
  assert.equal((await within(it.next(), 10000, 'end')).done, true);
});

test('BasicError', async () => {
  const err = await new Promise((resolve) => ep.invoke('BasicError', 'some test', resolve));
  assert.ok(err instanceof LeverError);
  assert.ok(err instanceof Error);
  assert.equal(err.message, 'error sent: some test');
  assert.equal(err.code, 'REMOTE');
  assert.equal(err.remote, 'error sent: some test');
  await assert.rejects(ep.invoke('BasicError', 'x'), { code: 'REMOTE', message: 'error sent: x' });
});

test('the error stack is the caller\'s', async () => {
  const err = await ep.invoke('BasicError', 'x').catch((e) => e);
  assert.match(err.stack, /^LeverError: error sent: x\n/);
  assert.match(err.stack, /basic\.test\.js/);
});

test('hello-js example: deploy with the CLI, call from the CLI and the client', async () => {
  await leverd.deploy(path.join(repoDir, 'examples', 'hello-js'));
  const out = await leverd.lever('invoke', '/helloService/sayHello', '"world"');
  assert.equal(out.trim(), '"Hello, world!"');
  const c = new Client({ forceHost: leverd.address, waitForReady: true, timeout: 20000 });
  assert.equal(await c.service('dev.lever', 'helloService').invoke('sayHello', 'world'), 'Hello, world!');
  assert.equal(await c.invokeURL('lever://dev.lever/helloService/sayHello', 'url'), 'Hello, url!');
});
