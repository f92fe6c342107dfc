// listOrders runs on every request, through the shared client: no leak.
'use strict';

const { sharedClient, invokeEcho } = require('./clients');

function listOrders(deadline) {
  return invokeEcho(sharedClient(), deadline);
}

module.exports = { listOrders };
