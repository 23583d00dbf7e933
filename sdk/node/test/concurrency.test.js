'use strict';
// Many calls and streams in flight at once through a real leverd.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { Client } = require('..');
const { startLeverd, within } = require('./helpers/leverd');

let leverd;
let ep;

before(async () => {
  leverd = await startLeverd();
  await leverd.deploy('basic');
  ep = new Client({ forceHost: leverd.address, timeout: 30000, waitForReady: true }).service('dev.lever', 'basictestservice');
  assert.equal(await ep.invoke('BasicHello', 'warm'), 'hello warm');
});

after(async () => {
  if (leverd) await leverd.stop();
});

test('1000 parallel invokes (Promise)', async () => {
  const n = 1000;
  const replies = await within(
    Promise.all(Array.from({ length: n }, (_, i) => ep.invoke('BasicHello', `n${i}`))),
    30000,
    '1000 invokes');
  replies.forEach((r, i) => assert.equal(r, `hello n${i}`));
});

test('1000 parallel invokes (callback)', async () => {
  const n = 1000;
  const replies = new Array(n);
  await within(
    new Promise((resolve, reject) => {
      let left = n;
      for (let i = 0; i < n; i++) {
        ep.invoke('add', i, 1, (err, r) => {
          if (err) return reject(err);
          replies[i] = r;
          if (--left === 0) resolve();
        });
      }
    }),
    30000,
    '1000 callbacks');
  replies.forEach((r, i) => assert.equal(r, i + 1));
});

test('a burst of 5000 calls after sequential ones (the instance stays within its memory)', async () => {
  for (let i = 0; i < 100; i++) assert.equal(await ep.invoke('add', i, 0), i);
  const n = 5000;
  const replies = await within(
    Promise.all(Array.from({ length: n }, (_, i) => ep.invoke('add', i, 0))),
    30000,
    '5000 invokes');
  replies.forEach((r, i) => assert.equal(r, i));
});

test('100 parallel streams', async () => {
  const one = async (k) => {
    const s = await ep.invokeChan('ReqReplyStreamChan', `s${k}`);
    for (let i = 0; i < 10; i++) s.write(i);
    s.end();
    const out = [];
    for await (const m of s) out.push(m);
    return out;
  };
  const all = await within(Promise.all(Array.from({ length: 100 }, (_, k) => one(k))), 30000, '100 streams');
  all.forEach((out, k) => assert.deepEqual(out, Array.from({ length: 10 }, (_, i) => `s${k}:${i} received`)));
});
