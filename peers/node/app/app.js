// A small Node service shaped like the incident's, on @grpc/grpc-js: the Node twin of the Go peer's
// -mode app (peers/go/app.go). Each of its requests runs through the handlers below, one to a file,
// and each handler calls an "external service" (the toy server, leaklab.v1.Echo/Unary). Most go
// through the shared client (clients.js's sharedClient()); three make a new client on every call
// through clients.js's newClient() and never close it, at different rates, as the incident's three
// code paths did:
//
//   payments.js   chargePayment     every request
//   inventory.js  reserveStock      every 2nd request
//   shipping.js   quoteShipping     every 4th request
//
// orders.js's listOrders (every request) uses the shared client, and notify.js's sendNotification
// (every 8th request) makes its own and closes it: neither leaks.
//
//   app        as above
//   app-fixed  the same service with those three going through the shared client: the "after" picture
//
// Requests are sent open loop at --rate; each runs its handlers one after the other. It prints
// `leaklab-progress ok=N failed=M handles=H` once a second on stdout, as echo_client.js does (H is
// the event loop's active handles and requests), and exits --hold seconds after the last answer.
// Its heap is read from outside: run it with NODE_OPTIONS="--require .../leaklab-profile.js" and
// LEAKLAB_PROFILE_LISTEN for V8's sampling heap profile (engine/agents/node/leaklab-profile.js).
'use strict';

const path = require('node:path');
const { parseArgs } = require('node:util');
const { configure } = require('./clients');
const { listOrders } = require('./orders');
const { chargePayment } = require('./payments');
const { reserveStock } = require('./inventory');
const { quoteShipping } = require('./shipping');
const { sendNotification } = require('./notify');

const MODES = ['app', 'app-fixed'];

function options() {
  const { values } = parseArgs({
    options: {
      addr: { type: 'string', default: '127.0.0.1:50051' },
      mode: { type: 'string', default: 'app' },
      requests: { type: 'string', default: '1000' },
      rate: { type: 'string', default: '100' },
      hold: { type: 'string', default: '3' },
      'payload-bytes': { type: 'string', default: '0' },
      proto: { type: 'string', default: path.join(__dirname, '..', 'echo.proto') },
    },
  });
  const numbers = { requests: Number(values.requests), rate: Number(values.rate), hold: Number(values.hold) };
  numbers.payloadBytes = Number(values['payload-bytes']);
  if (!MODES.includes(values.mode)) {
    throw new Error(`--mode: ${values.mode} is not one of ${MODES.join(', ')}`);
  }
  if (!Number.isInteger(numbers.requests) || numbers.requests < 1) {
    throw new Error(`--requests: ${values.requests} is not a positive whole number`);
  }
  for (const [flag, value] of [['rate', numbers.rate], ['hold', numbers.hold]]) {
    if (!Number.isFinite(value) || value < 0 || (flag === 'rate' && value === 0)) {
      throw new Error(`--${flag}: ${values[flag]} is not a positive number`);
    }
  }
  if (!Number.isInteger(numbers.payloadBytes) || numbers.payloadBytes < 0) {
    throw new Error(`--payload-bytes: ${values['payload-bytes']} is not a whole number`);
  }
  return { ...values, ...numbers };
}

// Runs request number n (from 0) through the service's handlers; rejects with the first failure.
async function appRequest(n) {
  const deadline = Date.now() + 10_000;
  await listOrders(deadline);
  await chargePayment(deadline);
  if (n % 2 === 0) await reserveStock(deadline);
  if (n % 4 === 0) await quoteShipping(deadline);
  if (n % 8 === 0) await sendNotification(deadline);
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
  configure({ addr: args.addr, proto: args.proto, fixed: args.mode === 'app-fixed', payloadBytes: args.payloadBytes });
  const counts = { ok: 0, failed: 0 };
  const progress = () => {
    const handles = process.getActiveResourcesInfo().length;
    console.log(`leaklab-progress ok=${counts.ok} failed=${counts.failed} handles=${handles}`);
  };
  const reporter = setInterval(progress, 1000);

  // Requests in flight are counted, not kept (see echo_client.js).
  let inFlight = 0;
  let allIssued = false;
  let allAnswered = () => {};
  const answered = new Promise((resolve) => {
    allAnswered = resolve;
  });
  const start = performance.now();
  for (let n = 0; n < args.requests; n += 1) {
    const delay = start + (n * 1000) / args.rate - performance.now();
    if (delay > 0) await sleep(delay);
    inFlight += 1;
    appRequest(n).then(
      () => {
        counts.ok += 1;
      },
      () => {
        counts.failed += 1;
      },
    ).then(() => {
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
