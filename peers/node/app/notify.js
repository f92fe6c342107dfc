// sendNotification runs on every 8th request; it makes a client of its own per call, as the leaking
// three do, but closes it once answered: a per-request client done right, which leaks nothing.
'use strict';

const { newClient, invokeEcho } = require('./clients');

function sendNotification(deadline) {
  const client = newClient();
  return invokeEcho(client, deadline).finally(() => client.close());
}

module.exports = { sendNotification };
