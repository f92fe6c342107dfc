// chargePayment runs on every request; it makes a client of its own on every call and never closes
// it, keeping it in a list as a per-request cache would (as echo_client.js's leak mode does): what
// leaks is then the caller's, and does not hang on what grpc-js itself keeps of an unclosed client
// (its channelz entry, and its idle timer until the channel goes idle).
'use strict';

const { app, sharedClient, newClient, invokeEcho } = require('./clients');

const kept = [];

function chargePayment(deadline) {
  if (app.fixed) {
    return invokeEcho(sharedClient(), deadline);
  }
  const client = newClient();
  kept.push(client);
  return invokeEcho(client, deadline);
}

module.exports = { chargePayment };
