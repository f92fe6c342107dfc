// leaklab's in-process heap profiler for Node. Loaded into a process leaklab starts, by
//   NODE_OPTIONS="--require /abs/path/leaklab-profile.js" LEAKLAB_PROFILE_LISTEN=127.0.0.1:PORT
// it runs V8's sampling heap profiler (HeapProfiler.startSampling, through node:inspector's
// in-process Session, which answers synchronously: sampling has begun before the program's first
// line) and serves the profile on that loopback TCP port. A client sends the line `profile` and
// reads one JSON document, then the end of the stream:
//   {"runtime":"v8","pid":PID,"sampling_interval":BYTES,"profile":{"head":{...},"samples":[...]}}
// the profile being getSamplingProfile's, unchanged, taken after a full garbage collection: the
// sampled allocations still alive, each under its allocation's JS stack. Or {"error":"..."}.
//
// Without LEAKLAB_PROFILE_LISTEN it does nothing at all. Sampling one allocation in every
// LEAKLAB_PROFILE_INTERVAL bytes (8192 by default) costs a stack walk per sample and a small
// record per sampled object still alive; a fetch costs a full GC and the profile's JSON. It runs in
// the main thread only, never keeps the process alive (its server and sockets are unref()ed), and
// swallows its own errors. It takes LEAKLAB_PROFILE_LISTEN out of the environment, so that child
// processes, which inherit NODE_OPTIONS, do not try the same port.
//
// It writes no profile at exit (LEAKLAB_PROFILE_EXIT is CPython's): a full collection and a profile
// there lengthen the exit, and Node waits at exit for any debugger connected at that moment, such as
// leaklab's heap reading. leaklab's checkpoints, every 2 s of the load,
// keep the end of a program that ends its own load.
//
// It also turns off TurboFan's inlining (--no-turbo-inlining): V8 records real stack frames only, and
// once a busy function is optimised with its callees inlined, the handler that called the client helper
// vanishes from the stacks (3,000 requests in: 12.6 MB under `appRequest > Client`, no handler). Measured
// on peers/node/app: CPU per request within the noise of runs (under 8%).
'use strict';

(function leaklabProfile() {
  const listen = process.env.LEAKLAB_PROFILE_LISTEN;
  if (!listen) return;
  try {
    if (!require('node:worker_threads').isMainThread) return;
    delete process.env.LEAKLAB_PROFILE_LISTEN;
    delete process.env.LEAKLAB_PROFILE_EXIT;
    const where = /^(?:\[(::1)\]|(127\.0\.0\.1|localhost)):(\d{1,5})$/.exec(listen);
    if (!where) {
      console.error(`leaklab-profile: cannot listen on ${listen}: not a loopback HOST:PORT`);
      return;
    }
    const inspector = require('node:inspector');
    const net = require('node:net');
    const requested = Math.floor(Number(process.env.LEAKLAB_PROFILE_INTERVAL));
    const interval = requested > 0 ? requested : 8192;

    require('node:v8').setFlagsFromString('--no-turbo-inlining');
    const session = new inspector.Session();
    session.connect();
    const post = (method, params) =>
      new Promise((resolve, reject) => {
        session.post(method, params, (error, result) => (error ? reject(error) : resolve(result)));
      });
    session.post('HeapProfiler.enable');
    session.post('HeapProfiler.startSampling', {
      samplingInterval: interval,
      includeObjectsCollectedByMajorGC: false,
      includeObjectsCollectedByMinorGC: false,
    });

    const answer = async (line) => {
      if (line !== 'profile') return { error: `unknown request ${line}` };
      await post('HeapProfiler.collectGarbage');
      const { profile } = await post('HeapProfiler.getSamplingProfile');
      return { runtime: 'v8', pid: process.pid, sampling_interval: interval, profile };
    };
    const server = net.createServer((socket) => {
      socket.unref();
      socket.on('error', () => {});
      socket.setEncoding('utf8');
      let received = '';
      const onData = (chunk) => {
        received += chunk;
        const end = received.indexOf('\n');
        if (end < 0 && received.length < 1024) return;
        socket.off('data', onData);
        const line = (end < 0 ? received : received.slice(0, end)).replace(/\r$/, '');
        answer(line)
          .catch((error) => ({ error: String((error && error.message) || error) }))
          .then((document) => socket.end(JSON.stringify(document)))
          .catch(() => socket.destroy());
      };
      socket.on('data', onData);
    });
    // Listening fails asynchronously (port taken): say so once, and stop sampling.
    server.on('error', (error) => {
      console.error(`leaklab-profile: cannot listen on ${listen}: ${error.message}`);
      try {
        session.post('HeapProfiler.stopSampling');
        session.disconnect();
      } catch {}
    });
    server.listen(Number(where[3]), where[1] || where[2]);
    server.unref();
  } catch (error) {
    try {
      console.error(`leaklab-profile: ${(error && error.message) || error}`);
    } catch {}
  }
})();
