// A @grpc/grpc-js client of leaklab's toy server, with the same modes as the Go and Python peers.
//
//   reused         one client for every request
//   leak           a new client per request, never closed; each is kept in a list, as a
//                  per-request cache would keep it
//   close          a new client per request, close()d after its call
//   stream-leak    one client; each request opens the endless Echo/ServerStream, reads its
//                  first message and keeps the call, neither cancelled nor read to its end
//   stream-cancel  the same, cancelling each call after its first message
//   buffer-leak    one client; each reply's arrival is kept in a 64 KiB Buffer, never released:
//                  a leak outside V8's heap, which holds only a small object for each
//
// It prints `leaklab-progress ok=N failed=M handles=H` once a second on stdout, which
// `loadgen watch` reads to count requests: H is the event loop's active handles and
// requests (process.getActiveResourcesInfo()), and the stream modes add `streams=N`,
// the calls held open. It never collects its own garbage: leaklab reads what V8 keeps alive
// through its inspector. With --report-live-heap (under `node --expose-gc`) it collects before
// each line and adds `live_heap_bytes=BYTES`, V8's used heap then, and `native_bytes=BYTES`, its
// external memory: the process's own view, for the tests that compare it with leaklab's. The proto is loaded at run time by
// @grpc/proto-loader. With --channelz-listen it serves gRPC's channelz service (grpc-js's own)
// on a side port, so that leaklab counts its channels, subchannels and sockets as grpc-js does;
// grpc-js keeps that bookkeeping whether or not it is served.
'use strict';

const path = require('node:path');
const v8 = require('node:v8');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const MODES = ['reused', 'leak', 'close', 'stream-leak', 'stream-cancel', 'buffer-leak'];
// What buffer-leak keeps per request, outside V8's heap (a Buffer this large is not pooled).
const BUFFER_BYTES = 64 * 1024;

function options() {
  const { values } = parseArgs({
    options: {
      addr: { type: 'string', default: '127.0.0.1:50051' },
      mode: { type: 'string', default: 'reused' },
      requests: { type: 'string', default: '1000' },
      rate: { type: 'string', default: '100' },
      hold: { type: 'string', default: '3' },
      'stream-interval': { type: 'string', default: '30' },
      proto: { type: 'string', default: path.join(__dirname, 'echo.proto') },
      'channelz-listen': { type: 'string' },
      'report-live-heap': { type: 'boolean', default: false },
    },
  });
  const numbers = { requests: Number(values.requests), rate: Number(values.rate), hold: Number(values.hold) };
  numbers.streamInterval = Number(values['stream-interval']);
  if (!MODES.includes(values.mode)) {
    throw new Error(`--mode: ${values.mode} is not one of ${MODES.join(', ')}`);
  }
  if (!Number.isInteger(numbers.requests) || numbers.requests < 1) {
    throw new Error(`--requests: ${values.requests} is not a positive whole number`);
  }
  for (const [flag, value] of [['rate', numbers.rate], ['hold', numbers.hold], ['stream-interval', numbers.streamInterval]]) {
    if (!Number.isFinite(value) || value < 0 || (flag === 'rate' && value === 0)) {
      throw new Error(`--${flag}: ${values[flag]} is not a positive number`);
    }
  }
  const listen = values['channelz-listen'];
  if (listen !== undefined && !/^(127\.0\.0\.1|localhost|\[::1\]):\d+$/.test(listen)) {
    throw new Error(`--channelz-listen: ${listen} is not a loopback host:port`);
  }
  if (values['report-live-heap'] && typeof global.gc !== 'function') {
    throw new Error('--report-live-heap: run under node --expose-gc');
  }
  return { ...values, ...numbers, reportLiveHeap: values['report-live-heap'] };
}

// Serves channelz on `listen` until the process exits.
function serveChannelz(listen) {
  const server = new grpc.Server();
  server.addService(grpc.getChannelzServiceDefinition(), grpc.getChannelzHandlers());
  return new Promise((resolve, reject) => {
    server.bindAsync(listen, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve(server)));
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  let args;
  try {
    args = options();
  } catch (error) {
    console.error(error.message);
    return 2;
  }
  if (args['channelz-listen'] !== undefined) {
    await serveChannelz(args['channelz-listen']);
  }
  const definition = protoLoader.loadSync(args.proto, { longs: Number, defaults: true });
  const Echo = grpc.loadPackageDefinition(definition).leaklab.v1.Echo;
  const credentials = grpc.credentials.createInsecure();
  const streams = args.mode.startsWith('stream-');
  const shared = ['reused', 'buffer-leak'].includes(args.mode) || streams ? new Echo(args.addr, credentials) : null;
  const payload = Buffer.alloc(64, 'x');
  const streamRequest = { payload, messages: 2 ** 32 - 1, intervalMs: Math.round(args.streamInterval * 1000) };
  const kept = [];
  const counts = { ok: 0, failed: 0 };

  const unary = () =>
    new Promise((resolve) => {
      const client = shared || new Echo(args.addr, credentials);
      client.Unary({ payload }, { deadline: Date.now() + 10_000 }, (error) => {
        counts[error ? 'failed' : 'ok'] += 1;
        if (args.mode === 'close') {
          client.close();
        } else if (args.mode === 'leak') {
          kept.push(client);
        } else if (args.mode === 'buffer-leak') {
          // A correct call whose caller keeps 64 KiB for it outside the heap, never released.
          kept.push(Buffer.alloc(BUFFER_BYTES, 'x'));
        }
        resolve();
      });
    });

  const stream = () =>
    new Promise((resolve) => {
      const call = shared.ServerStream(streamRequest);
      let answered = false;
      const answer = (outcome) => {
        if (answered) return;
        answered = true;
        counts[outcome] += 1;
        resolve();
      };
      // Later messages and the end of the call (cancelled, or the server gone) are not news.
      call.on('error', () => answer('failed'));
      call.on('end', () => answer('failed'));
      call.once('data', () => {
        answer('ok');
        if (args.mode === 'stream-cancel') {
          call.cancel();
        } else {
          // The bug: the call is kept, neither cancelled nor read to its end.
          kept.push(call);
        }
      });
    });

  const progress = () => {
    let live = '';
    if (args.reportLiveHeap) {
      global.gc();
      live = ` live_heap_bytes=${v8.getHeapStatistics().used_heap_size} native_bytes=${process.memoryUsage().external}`;
    }
    const handles = process.getActiveResourcesInfo().length;
    const held = streams ? ` streams=${kept.length}` : '';
    console.log(`leaklab-progress ok=${counts.ok} failed=${counts.failed} handles=${handles}${held}${live}`);
  };
  const reporter = setInterval(progress, 1000);

  // Calls in flight are counted, not kept: a correct client holds nothing per finished call, and an
  // array of settled promises would be a leak of its own (about 100 bytes a call).
  let inFlight = 0;
  let allIssued = false;
  let allAnswered = () => {};
  const answered = new Promise((resolve) => {
    allAnswered = resolve;
  });
  const start = performance.now();
  for (let i = 0; i < args.requests; i += 1) {
    const delay = start + (i * 1000) / args.rate - performance.now();
    if (delay > 0) await sleep(delay);
    inFlight += 1;
    (streams ? stream() : unary()).then(() => {
      inFlight -= 1;
      if (allIssued && inFlight === 0) allAnswered();
    });
  }
  allIssued = true;
  if (inFlight > 0) await answered;
  progress();
  await sleep(args.hold * 1000);
  clearInterval(reporter);
  progress();
  // Exit even with leaked clients holding the event loop open: that is the bug, not the end of the run.
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
