// Lever in a real headless Chromium: Debian's chromium driven by
// playwright-core (nothing downloads a browser), against a real leverd this
// test starts. A page script streams over a WebSocket (docs/http-api.md
// "WebSocket"); the status page (gateway/status_page.md) shows a deployed
// service, a new instance without a reload, and a line the service prints.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { Leverd } = require('./leverd');

// The browser example of docs/http-api.md ("WebSocket"), as written there.
function docsExample() {
  const doc = fs.readFileSync(path.join(__dirname, '../../docs/http-api.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## WebSocket'));
  const m = /```js\n([\s\S]*?)```/.exec(section);
  assert.ok(m, 'docs/http-api.md has a js example in its WebSocket section');
  return m[1];
}

// The flags this machine's Chromium needs (no sandbox as root, no network
// of its own: DESIGN.md's toolchain note).
const CHROMIUM = {
  executablePath: process.env.LEVER_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
};
const WAIT = 15000;  // every wait is bounded
const artifacts = process.env.LEVER_TEST_ARTIFACTS || path.join(__dirname, 'artifacts');

let leverd;
let browser;

before(async () => {
  // Services scale to zero 2 s after their last call (a deploy starts one
  // instance to check the version), so the status page test starts from none.
  leverd = new Leverd(['--idle-timeout', '2s']);
  await leverd.start();
  await leverd.deployTestService('wsbrowser');
  await leverd.deployTestService('pagesvc');
  browser = await chromium.launch(CHROMIUM);
});

after(async () => {
  if (browser) await browser.close();
  if (leverd) await leverd.stop();
});

test('a page script streams 100 messages each way over a WebSocket, in order, JSON and bytes', async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${leverd.url}/`);
    const result = await page.evaluate(async ({ url, n }) => {
      const ws = new WebSocket(url);
      ws.binaryType = 'arraybuffer';
      const got = [];
      const done = new Promise((resolve, reject) => {
        ws.onmessage = (ev) => {
          got.push(typeof ev.data === 'string' ? { text: ev.data } : { bytes: Array.from(new Uint8Array(ev.data)) });
          if (got.length === n) resolve();
        };
        ws.onerror = () => reject(new Error('WebSocket error'));
        ws.onclose = (ev) => reject(new Error(`closed early: ${ev.code} ${ev.reason}`));
      });
      await new Promise((resolve) => { ws.onopen = resolve; });
      ws.send('[]');  // the argument array
      for (let i = 0; i < n; i++) {
        if (i % 2 === 0) ws.send(JSON.stringify({ i, text: `message ${i} ✓` }));
        else ws.send(new Uint8Array([i, 255 - i, 0, 7]).buffer);
      }
      await done;
      ws.onclose = null;
      const closed = new Promise((resolve) => { ws.onclose = (ev) => resolve(ev.code); });
      ws.close(1000);
      return { got, closeCode: await closed };
    }, { url: `ws://127.0.0.1:${leverd.port}/wsbrowser/EchoChan?forceenv=dev.lever`, n: 100 });
    assert.equal(result.got.length, 100);
    for (let i = 0; i < 100; i++) {
      if (i % 2 === 0) {
        assert.deepEqual(JSON.parse(result.got[i].text), { i, text: `message ${i} ✓` }, `message ${i}`);
      } else {
        assert.deepEqual(result.got[i].bytes, [i, 255 - i, 0, 7], `message ${i}`);
      }
    }
    assert.equal(result.closeCode, 1000);
  } finally {
    await page.close();
  }
});

test('the end of a call is the close event: 1011 with the error text', async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${leverd.url}/`);
    const r = await page.evaluate((url) => new Promise((resolve) => {
      const ws = new WebSocket(url);
      const got = [];
      ws.onopen = () => ws.send('[2, "app"]');
      ws.onmessage = (ev) => got.push(JSON.parse(ev.data));
      ws.onclose = (ev) => resolve({ got, code: ev.code, reason: ev.reason, clean: ev.wasClean });
    }), `ws://127.0.0.1:${leverd.port}/wsbrowser/FailAfterChan?forceenv=dev.lever`);
    assert.deepEqual(r.got, ['m0', 'm1']);
    assert.equal(r.code, 1011);
    assert.equal(r.reason, 'failed after 2');
    assert.equal(r.clean, true);
  } finally {
    await page.close();
  }
});

test('the status page lists a deployed service, shows a new instance without a reload, and tails its log', async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  try {
    await page.goto(`${leverd.url}/`);
    const row = page.locator('tr.service[data-service="dev.lever/pagesvc"]');
    await row.waitFor({ timeout: WAIT });
    assert.match(await row.innerText(), /pagesvc\s+v1/);
    // The instance the deploy started goes away when idle: none is left.
    await page.locator('tr.service[data-service="dev.lever/pagesvc"] td[data-instances="0"]')
      .waitFor({ timeout: WAIT });
    const instances = page.locator('tr.instance[data-service="dev.lever/pagesvc"]');
    assert.equal(await instances.count(), 0, 'no instance before the call');

    // Follow its log (a WebSocket call to the admin service's LogsChan).
    await row.click();
    await page.locator('#log-state', { hasText: 'following dev.lever/pagesvc' }).waitFor({ timeout: WAIT });

    // The page must not reload: a mark on its window survives.
    await page.evaluate(() => { window.leverTestMark = 'same page'; });
    // A slow call keeps the new instance busy (and on the page) while we look.
    const slow = leverd.run('invoke', '/pagesvc/SleepMs', '6000');
    const marker = `printed from Chromium ${Date.now()}`;
    assert.equal((await leverd.run('invoke', '/pagesvc/Print', JSON.stringify(marker))).trim(), '"printed"');

    // The instance the call started appears, and becomes ready, on the same page.
    await page.locator('tr.instance[data-service="dev.lever/pagesvc"]', { hasText: 'ready' })
      .waitFor({ timeout: WAIT });
    assert.equal(await instances.count(), 1);
    await page.locator('tr.service[data-service="dev.lever/pagesvc"]', { hasText: '1/1 ready' })
      .waitFor({ timeout: WAIT });
    await page.locator('tr.instance[data-service="dev.lever/pagesvc"] td[data-in-flight="1"]')
      .waitFor({ timeout: WAIT });
    await page.locator('#log-lines .line', { hasText: marker }).waitFor({ timeout: WAIT });
    assert.equal(await page.evaluate(() => window.leverTestMark), 'same page');

    fs.mkdirSync(artifacts, { recursive: true });
    const shot = path.join(artifacts, 'status-page.png');
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(fs.statSync(shot).size > 10000, 'a real screenshot');
    assert.equal((await slow).trim(), '"slept"');
  } finally {
    await page.close();
  }
});

test('the browser example of docs/http-api.md runs as written', async () => {
  const page = await browser.newPage();
  try {
    await page.goto(`${leverd.url}/`);
    const logged = [];
    const twoLines = new Promise((resolve) => {
      page.on('console', (msg) => {
        if (msg.type() !== 'log') return;
        logged.push(msg.text());
        if (logged.length === 2) resolve();
      });
    });
    // The example's chat service is any streaming method that answers: here
    // the test service's echo, on this test's leverd.
    const code = docsExample()
      .replace('ws://127.0.0.1:8080/chat/room1/joinChan?forceenv=dev.lever',
        `ws://127.0.0.1:${leverd.port}/wsbrowser/EchoChan?forceenv=dev.lever`);
    assert.notEqual(code, docsExample(), 'the example names the URL this test replaces');
    await page.evaluate(code);
    let timer;
    await Promise.race([twoLines, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the example logged ${JSON.stringify(logged)}`)), WAIT);
    })]);
    clearTimeout(timer);
    assert.equal(logged[0], 'hello');
    assert.match(logged[1], /^Uint8Array\(3\)/);
  } finally {
    await page.close();
  }
});
