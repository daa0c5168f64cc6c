// A real proxyless gRPC peer for tests/tests/proxyless_grpc.rs: Node grpc-js with the @grpc/grpc-js-xds resolver.
//
//   NODE_PATH=<.peers/node/node_modules> GRPC_XDS_BOOTSTRAP=<file> node grpc_echo.js xds:///HOST:PORT
//
// Calls /echo.Echo/Call with raw bytes (no protobuf). Reads commands from stdin, one per line: a number N makes
// N calls on the same channel and prints one JSON line {"counts": {NAME: n}, "errors": {CODE: n}, "first_error"}.
// A round stops early after MAX_ERRORS failed calls. Ends at EOF.
'use strict';

const grpc = require('@grpc/grpc-js');
const readline = require('readline');
require('@grpc/grpc-js-xds').register();

const CALL_TIMEOUT_MS = 5000;
const MAX_ERRORS = 3;
const raw = (b) => b;
const Echo = grpc.makeGenericClientConstructor(
  {
    Call: {
      path: '/echo.Echo/Call',
      requestStream: false,
      responseStream: false,
      requestSerialize: raw,
      requestDeserialize: raw,
      responseSerialize: raw,
      responseDeserialize: raw,
    },
  },
  'Echo',
);

const target = process.argv[2];
if (!target) {
  console.error('usage: grpc_echo.js TARGET');
  process.exit(2);
}
const client = new Echo(target, grpc.credentials.createInsecure());

function call() {
  return new Promise((resolve) => {
    const deadline = new Date(Date.now() + CALL_TIMEOUT_MS);
    client.Call(Buffer.from('hi'), { deadline, waitForReady: true }, (err, reply) => resolve({ err, reply }));
  });
}

async function round(n) {
  const counts = {};
  const errors = {};
  let firstError = null;
  for (let i = 0; i < n; i++) {
    const { err, reply } = await call();
    if (err) {
      const code = grpc.status[err.code] || String(err.code);
      errors[code] = (errors[code] || 0) + 1;
      firstError = firstError || `${code}: ${err.details}`;
      if (Object.values(errors).reduce((a, b) => a + b, 0) >= MAX_ERRORS) {
        break;
      }
    } else {
      const name = reply.toString();
      counts[name] = (counts[name] || 0) + 1;
    }
  }
  console.log(JSON.stringify({ counts, errors, first_error: firstError }));
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() !== '') {
      await round(parseInt(line, 10));
    }
  }
  client.close();
  process.exit(0);
}

main();
