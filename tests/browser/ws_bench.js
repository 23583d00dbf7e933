// Chromium's side of the WebSocket benchmark (tests/bench/websocket/run.sh): a
// page script does the same round trips as ws_bench.cc on one WebSocket to
// EchoChan: sequential (p50/p99), then 64 in flight.
//   node tests/browser/ws_bench.js <leverd host:port> <service> <messages>
'use strict';

const { chromium } = require('playwright-core');

async function main() {
  const [addr, service, count] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.LEVER_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`http://${addr}/`);
    const r = await page.evaluate(async ({ url, n, window }) => {
      const msg = JSON.stringify({ seq: 12345, text: 'a message of about sixty-four bytes!' });
      const ws = new WebSocket(url);
      await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
      let waiter = null;
      const queue = [];
      ws.onmessage = (ev) => { if (waiter) { const w = waiter; waiter = null; w(ev.data); } else queue.push(ev.data); };
      const next = () => (queue.length ? Promise.resolve(queue.shift()) : new Promise((resolve) => { waiter = resolve; }));
      ws.send('[]');
      for (let i = 0; i < 200; i++) { ws.send(msg); await next(); }
      const us = [];
      for (let i = 0; i < n; i++) {
        const t0 = performance.now();
        ws.send(msg);
        await next();
        us.push((performance.now() - t0) * 1000);
      }
      us.sort((a, b) => a - b);
      const t0 = performance.now();
      let sent = 0;
      for (; sent < Math.min(window, n); sent++) ws.send(msg);
      for (let got = 0; got < n; got++) {
        await next();
        if (sent < n) { ws.send(msg); sent++; }
      }
      const secs = (performance.now() - t0) / 1000;
      ws.close();
      return { p50: us[Math.floor(n / 2)], p99: us[Math.floor(n * 0.99)], rate: n / secs };
    }, { url: `ws://${addr}/${service}/EchoChan?forceenv=dev.lever`, n: Number(count), window: 64 });
    const pad = 'WebSocket (Chromium page)'.padEnd(26);
    console.log(`${pad} sequential p50 ${r.p50.toFixed(0).padStart(4)} us p99 ${r.p99.toFixed(0).padStart(4)} us | ` +
      `64 in flight ${r.rate.toFixed(0).padStart(6)} msgs/s`);
  } finally {
    await browser.close();
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
