// A @grpc/grpc-js load generator for tests/bench/foreign/run.sh: one channel
// (one HTTP/2 connection), `inflight` unary calls kept going for `seconds`,
// each a core.LeverRPC/HandleRPC whose request bytes come from a file (the
// protobuf message, without the 5-byte gRPC frame prefix: grpc-js adds it).
// No .proto loading: the bytes go out as they are and replies are counted,
// not decoded. Prints one JSON line: {"rps", "p50_us", "p99_us", "ok", "errors", "warm"}
// (warm: the calls of the 0.3 s warm-up before the measured run).
//   NODE_PATH=<dir with @grpc/grpc-js> node grpcjs_load.js <host:port> <inflight> <seconds> <request file> <lever-url>
'use strict';
const fs = require('fs');
const grpc = require('@grpc/grpc-js');

const [target, inflightArg, secondsArg, requestFile, url] = process.argv.slice(2);
const inflight = Number(inflightArg);
const seconds = Number(secondsArg);
if (!target || !(inflight > 0) || !(seconds > 0) || !requestFile || !url) {
  console.error('usage: grpcjs_load.js <host:port> <inflight> <seconds> <request file> <lever-url>');
  process.exit(2);
}
const request = fs.readFileSync(requestFile);
const client = new grpc.Client(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set('lever-url', url);
const identity = (b) => b;

function call(done) {
  client.makeUnaryRequest('/core.LeverRPC/HandleRPC', identity, identity, request, metadata, done);
}

// Keeps `n` calls in flight until `until` (ms since epoch); resolves with the
// latencies (µs) of the calls that succeeded and the error count.
function run(n, until) {
  return new Promise((resolve) => {
    const lat = [];
    let errors = 0;
    let outstanding = 0;
    const start = () => {
      const t0 = process.hrtime.bigint();
      outstanding++;
      call((err) => {
        outstanding--;
        if (err) {
          errors++;
        } else {
          lat.push(Number(process.hrtime.bigint() - t0) / 1e3);
        }
        if (Date.now() < until) {
          start();
        } else if (outstanding === 0) {
          resolve({ lat, errors });
        }
      });
    };
    for (let i = 0; i < n; i++) start();
  });
}

function percentile(sorted, p) {
  if (sorted.length === 0) return 0;
  return sorted[Math.floor(p * (sorted.length - 1))];
}

(async () => {
  const warm = await run(8, Date.now() + 300);  // connect and warm up (JIT, HPACK tables)
  const t0 = process.hrtime.bigint();
  const { lat, errors } = await run(inflight, Date.now() + seconds * 1000);
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort((a, b) => a - b);
  console.log(JSON.stringify({
    rps: lat.length / elapsed,
    p50_us: percentile(lat, 0.5),
    p99_us: percentile(lat, 0.99),
    ok: lat.length,
    errors,
    warm: warm.lat.length + warm.errors,
  }));
  client.close();
})();
