// reserveStock runs on every 2nd request; it makes a client of its own on every call and never
// closes it, keeping it in a list as a per-request cache would (see payments.js).
'use strict';

const { app, sharedClient, newClient, invokeEcho } = require('./clients');

const kept = [];

function reserveStock(deadline) {
  if (app.fixed) {
    return invokeEcho(sharedClient(), deadline);
  }
  const client = newClient();
  kept.push(client);
  return invokeEcho(client, deadline);
}

module.exports = { reserveStock };
