// The Node client's side of the SDK round-trip benchmark (tests/bench/sdk/run.sh).
//   node invoke_bench.js <leverd host:port> <calls>
'use strict';
const { Client } = require('../../../sdk/node');

(async () => {
  const [addr, callsText] = process.argv.slice(2);
  const n = Number(callsText);
  const client = new Client({ forceHost: addr });
  const ep = client.service('dev.lever', 'helloService');
  for (let i = 0; i < 200; i++) await ep.invoke('sayHello', 'warm');
  const us = [];
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await ep.invoke('sayHello', 'world');
    us.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  us.sort((a, b) => a - b);
  let started = 0;
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (started < n) {
      started++;
      await ep.invoke('sayHello', 'world');
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`node  sequential p50 ${us[us.length >> 1].toFixed(0)} us p99 ${us[Math.floor(us.length * 0.99)].toFixed(0)} us | 64 in flight ${(n / secs).toFixed(0)} calls/s`);
  client.close && client.close();
})();
