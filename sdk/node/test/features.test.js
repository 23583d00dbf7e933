'use strict';
// Bytes, resources, handler shapes, stream forms, errors and calls between
// services, against a real leverd.
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
  await leverd.deploy('resources');
  await leverd.deploy(path.join(repoDir, 'examples', 'hello-js'));
  client = new Client({ forceHost: leverd.address, timeout: 20000, waitForReady: true });
  ep = client.service('dev.lever', 'basictestservice');
});

after(async () => {
  if (leverd) await leverd.stop();
});

async function collect(stream) {
  const out = [];
  for await (const m of stream) out.push(m);
  return out;
}

test('handler shapes: async, sync return, this, varargs, no result', async () => {
  assert.equal(await ep.invoke('add', 2, 3), 5);
  assert.equal(await ep.invoke('double', 21), 42);
  assert.equal(await ep.invoke('isThis'), true);
  assert.deepEqual(await ep.invoke('echo', 1, 'two', null, { three: [3] }), [1, 'two', null, { three: [3] }]);
  assert.deepEqual(await ep.invoke('echo'), []);
  assert.equal(await ep.invoke('nothing'), null);
  assert.equal(await ep.invoke('later', 1), 'later 1');
  assert.equal(await ep.invoke('asyncWithCallback', 2), 'cb 2');
});

test('values round trip', async () => {
  const v = {
    s: 'héllo ✓',
    i: -12,
    f: 1.5,
    big: 2n ** 60n,
    t: true,
    n: null,
    a: [1, [2, [3]], {}],
    o: { nested: { deep: 'x' } },
    date: new Date(0),
  };
  const [back] = await ep.invoke('echo', v);
  assert.deepEqual(back, { ...v, date: '1970-01-01T00:00:00.000Z' });
  assert.equal(typeof back.big, 'bigint');
  const [u] = await ep.invoke('echo', 2n ** 64n - 1n);
  assert.equal(u, 2n ** 64n - 1n);
  await assert.rejects(ep.invoke('echo', () => 1, 'not last'), TypeError);
  await assert.rejects(ep.invoke('echo', Symbol('s'), 'x'), TypeError);
  const cyclic = {};
  cyclic.self = cyclic;
  await assert.rejects(ep.invoke('echo', cyclic), /nested too deeply/);
});

test('private and unknown methods are not found', async () => {
  await assert.rejects(ep.invoke('_hidden'), { code: 'NOT_FOUND' });
  await assert.rejects(ep.invoke('noSuchMethod'), { code: 'NOT_FOUND' });
  await assert.rejects(client.service('dev.lever', 'nosuchservice').invoke('x'), (err) => {
    assert.ok(err instanceof LeverError);
    assert.equal(err.code, 'NOT_FOUND');
    assert.equal(err.status, 5);
    return true;
  });
});

test('application errors carry the remote value', async () => {
  await assert.rejects(ep.invoke('asyncFail', 'v'), { code: 'REMOTE', message: 'async v', remote: 'async v' });
  const err = await ep.invoke('objectError').catch((e) => e);
  assert.equal(err.code, 'REMOTE');
  assert.deepEqual(err.remote, { reason: 'bad', n: 7 });
  assert.equal(err.message, '{"reason":"bad","n":7}');
  const be = await ep.invoke('byteError').catch((e) => e);
  assert.ok(Buffer.isBuffer(be.remote));
  assert.deepEqual([...be.remote], [1, 2, 3]);
});

test('wrong call style and missing environment', async () => {
  await assert.rejects(ep.invoke('sumChan', 1), { message: 'Use invokeChan for streaming methods' });
  await assert.rejects(ep.invokeChan('add', 1), { message: 'Use invoke for non-streaming methods' });
  const err = await new Promise((resolve) => ep.invoke('ReqReplyStreamChan', resolve));
  assert.equal(err.message, 'Use invokeChan for streaming methods');
  const saved = process.env.LEVEROS_ENVIRONMENT;
  delete process.env.LEVEROS_ENVIRONMENT;
  try {
    await assert.rejects(client.service('', 'basictestservice').invoke('add', 1, 2), {
      message: 'Environment not specified and cannot be deduced',
    });
    process.env.LEVEROS_ENVIRONMENT = 'dev.lever';
    assert.equal(await client.service('', 'basictestservice').invoke('add', 1, 2), 3);
    assert.equal(await client.invokeURL('/basictestservice/add', 2, 2), 4);
  } finally {
    if (saved === undefined) delete process.env.LEVEROS_ENVIRONMENT;
    else process.env.LEVEROS_ENVIRONMENT = saved;
  }
});

test('deadlines: a call past its timeout fails DEADLINE_EXCEEDED', async () => {
  const c = new Client({ forceHost: leverd.address, timeout: 300, waitForReady: true });
  const e = c.service('dev.lever', 'basictestservice');
  await assert.rejects(e.invoke('slow', 5000), { code: 'DEADLINE_EXCEEDED', status: 4 });
  c.timeout = 10000;
  assert.equal(await e.invoke('slow', 1), 'slow');
});

test('an AbortSignal as the last argument cancels invoke', async () => {
  const ac = new AbortController();
  const p = ep.invoke('slow', 5000, ac.signal);
  setImmediate(() => ac.abort(new Error('enough')));
  await assert.rejects(p, (err) => {
    assert.equal(err.name, 'AbortError');
    assert.equal(err.code, 'ABORT_ERR');
    assert.equal(err.cause.message, 'enough');
    assert.match(err.stack, /features\.test\.js/); // the caller's stack
    return true;
  });
  // Already aborted: nothing is sent.
  await assert.rejects(ep.invoke('add', 1, 2, ac.signal), { name: 'AbortError' });
  // A signal that does not fire changes nothing, and is not an argument.
  const quiet = new AbortController();
  assert.equal(await ep.invoke('add', 1, 2, quiet.signal), 3);
  assert.deepEqual(await ep.invoke('echo', 'a', quiet.signal), ['a']);
  // The callback form, and invokeURL.
  const late = new AbortController();
  const err = await new Promise((resolve) => {
    client.invokeURL('lever://dev.lever/basictestservice/slow', 5000, late.signal, resolve);
    late.abort();
  });
  assert.equal(err.name, 'AbortError');
  // The client still works after aborted calls.
  assert.equal(await ep.invoke('add', 2, 2), 4);
});

test('bytes are Buffers both ways (unary, errors, streams)', async () => {
  const r = await ep.invoke('reverseBytes', Buffer.from([1, 2, 3, 0, 255]));
  assert.ok(Buffer.isBuffer(r));
  assert.deepEqual([...r], [255, 0, 3, 2, 1]);
  const empty = await ep.invoke('reverseBytes', Buffer.alloc(0));
  assert.ok(Buffer.isBuffer(empty));
  assert.equal(empty.length, 0);
  const u8 = await ep.invoke('reverseBytes', new Uint8Array([7, 8]));
  assert.deepEqual([...u8], [8, 7]);

  const s = await ep.invokeChan('bytesChan');
  s.write(Buffer.from('ab'));
  s.write(Buffer.from([0, 1]));
  s.write('text');
  s.end();
  const got = await within(collect(s), 10000, 'bytes stream');
  assert.ok(Buffer.isBuffer(got[0]));
  assert.equal(got[0].toString(), 'abab');
  assert.deepEqual([...got[1]], [0, 1, 0, 1]);
  assert.equal(got[2], 'not bytes: string');
});

test('streams: async handler, async iteration, end with a message', async () => {
  const s = await ep.invokeChan('sumChan', 10);
  s.write(1);
  s.write(2);
  s.end(3);
  assert.deepEqual(await within(collect(s), 10000, 'sum'), [11, 13, 16, 'total 16']);

  const c = await ep.invokeChan('countChan', 100);
  const nums = await within(collect(c), 10000, 'count');
  assert.deepEqual(nums, Array.from({ length: 100 }, (_, i) => i));
});

test('streams: server errors reach the client as LeverError', async () => {
  const s = await ep.invokeChan('failChan', 'went wrong');
  const got = [];
  const err = await within(
    (async () => {
      try {
        for await (const m of s) got.push(m);
      } catch (e) {
        return e;
      }
      return null;
    })(),
    10000,
    'failChan');
  assert.deepEqual(got, ['first']);
  assert.ok(err instanceof LeverError);
  assert.equal(err.code, 'REMOTE');
  assert.equal(err.message, 'went wrong');

  const a = await ep.invokeChan('asyncFailChan');
  a.write('go');
  a.resume(); // errors surface on the reading side
  const aerr = await within(
    new Promise((resolve) => a.on('error', resolve)),
    10000,
    'asyncFailChan');
  assert.equal(aerr.message, 'stream failed');
});

test('streams: the client can cancel', async () => {
  const s = await ep.invokeChan('ReqReplyStreamChan', 'p');
  s.write('x');
  const it = s[Symbol.asyncIterator]();
  assert.equal((await within(it.next(), 10000, 'reply')).value, 'p:x received');
  s.destroy();
  await within(new Promise((resolve) => s.on('close', resolve)), 10000, 'close');
  // The service is still fine.
  assert.equal(await ep.invoke('add', 1, 1), 2);
});

test('resources: the resource comes first and calls stick to one instance', async () => {
  const counters = client.service('dev.lever', 'counters');
  const a = client.resource('dev.lever', 'counters', 'alpha');
  const b = client.resource('dev.lever', 'counters', 'beta');
  assert.equal(await a.invoke('incr', 1), 1);
  assert.equal(await a.invoke('incr', 2), 3);
  assert.equal(await b.invoke('incr', 10), 10);
  assert.equal(await a.invoke('incr', 0), 3);
  assert.equal(await counters.invoke('plain', 'x'), 'plain x');
  assert.equal(await client.invokeURL('lever://dev.lever/counters/alpha/incr', 1), 4);
  const created = await a.invoke('created');
  assert.ok(created.includes('alpha'), `NewResource saw ${JSON.stringify(created)}`);
  const s = await b.invokeChan('infoChan', 'arg');
  assert.deepEqual(await within(collect(s), 10000, 'infoChan'), [['beta', 'arg', 'beta', 'counters', 'infoChan']]);
});

test('services call services through the internal gateway', async () => {
  const id = await ep.invoke('identity');
  assert.equal(id.environment, 'dev.lever');
  assert.equal(id.service, 'basictestservice');
  assert.match(id.gateway, /^unix:/);
  assert.equal(await ep.invoke('callHello', 'inside'), 'Hello, inside!');
  assert.deepEqual(await ep.invoke('callStream', 'in'), ['in:inner received']);
});

test('proto-JSON mode talks to the same services', async () => {
  const c = new Client({ forceHost: leverd.address, protoJson: true, timeout: 20000, waitForReady: true });
  const e = c.service('dev.lever', 'basictestservice');
  assert.equal(await e.invoke('BasicHello', 'json'), 'hello json');
  assert.deepEqual([...(await e.invoke('reverseBytes', Buffer.from([1, 2])))], [2, 1]);
  await assert.rejects(e.invoke('BasicError', 'j'), { code: 'REMOTE', message: 'error sent: j' });
  c.close();
});
