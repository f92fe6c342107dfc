// The service's clients of its "external service" (the toy server), as app.js's handlers get them:
//
//   sharedClient()  one Echo client, made on first use and reused by every caller: the shared
//                   getter, like the Go peer's echoClient() and the incident's GetAaaRPCClient()
//   newClient()     a fresh Echo client for one call, which its caller must close(): the helper
//                   every per-call caller goes through, so in a heap profile the frame above it
//                   names the caller
//
// configure() is called once by app.js, before the first request.
'use strict';

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// What the handlers need from the command line.
const app = { addr: '', fixed: false, payload: Buffer.alloc(0), EchoService: null };
let shared = null;

function configure({ addr, proto, fixed, payloadBytes }) {
  const definition = protoLoader.loadSync(proto, { longs: Number, defaults: true });
  app.EchoService = grpc.loadPackageDefinition(definition).leaklab.v1.Echo;
  app.addr = addr;
  app.fixed = fixed;
  app.payload = Buffer.alloc(payloadBytes, 'x');
}

function sharedClient() {
  if (shared === null) {
    shared = new app.EchoService(app.addr, grpc.credentials.createInsecure());
  }
  return shared;
}

function newClient() {
  return new app.EchoService(app.addr, grpc.credentials.createInsecure());
}

// One Echo/Unary call on client, as a generated stub's caller would make it; settles when answered.
function invokeEcho(client, deadline) {
  return new Promise((resolve, reject) => {
    client.Unary({ payload: app.payload }, { deadline }, (error) => (error ? reject(error) : resolve()));
  });
}

module.exports = { app, configure, sharedClient, newClient, invokeEcho };
