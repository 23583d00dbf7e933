// A Lever client we did not write: @grpc/grpc-js with the original proto,
// loaded at run time. It makes the original system test's calls (reference
// §11.1) against the leverd at argv[2], with service argv[3], and prints what
// it saw as one JSON object for the C++ test to check.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [addr, svc] = process.argv.slice(2);
const def = loader.loadSync(path.join(__dirname, '../../../sdk/cpp/proto/leverrpc.proto'), {
  keepCase: true, defaults: false, oneofs: true,
});
const core = grpc.loadPackageDefinition(def).core;
const client = new core.LeverRPC(addr, grpc.credentials.createInsecure());
const url = (m) => `lever://dev.lever/${svc}//${m}`;
const meta = (m) => { const md = new grpc.Metadata(); md.set('lever-url', url(m)); return md; };
const str = (s) => ({ json_string: s });
const deadline = () => Date.now() + 30000;

function unary(method, args) {
  return new Promise((resolve) => {
    client.HandleRPC({ args: { element: args } }, meta(method), { deadline: deadline() }, (err, reply) => {
      resolve(err ? { code: err.code, details: err.details } : reply);
    });
  });
}

function stream() {
  return new Promise((resolve) => {
    const call = client.HandleStreamingRPC(meta('ReqReplyStreamChan'), { deadline: deadline() });
    const seen = [];
    const out = ['1', '2', 'hello'];
    call.on('data', (m) => {
      seen.push(m);
      if (seen.length === 1) {
        for (const o of out) call.write({ message: str(o) });
        call.end();
      }
    });
    call.on('error', (e) => resolve({ error: e.code, seen }));
    call.on('end', () => resolve({ seen }));
    call.write({ rpc: { args: { element: [str('some test')] } } });
  });
}

(async () => {
  const hello = await unary('BasicHello', [str('node')]);
  const error = await unary('BasicError', [str('some test')]);
  const missing = await new Promise((resolve) => {
    const md = new grpc.Metadata();
    md.set('lever-url', 'lever://dev.lever/nosuchservice//x');
    client.HandleRPC({ args: {} }, md, { deadline: deadline() }, (err) => resolve(err ? err.code : 0));
  });
  const s = await stream();
  console.log(JSON.stringify({
    hello: hello.result_oneof === 'result' ? hello.result.json_string : hello,
    error: error.result_oneof === 'error' ? error.error.json_string : error,
    notFoundCode: missing,
    firstMessageEmpty: s.seen.length > 0 && !s.seen[0].message_oneof,
    replies: s.seen.slice(1).map((m) => (m.message_oneof === 'message' ? m.message.json_string : m)),
    streamError: s.error === undefined ? null : s.error,
  }));
  client.close();
})();
