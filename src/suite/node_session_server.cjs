// cluster-action's warm session of a Node framework: the loop that the `serve` modes of the
// Jest driver and of the Vitest helper run, shipped beside them. The session runs in a
// directory of the suite's files, with CLUSTER_SESSION naming its control directory, and keeps
// the framework loaded across the batches it is handed, one at a time. It listens on the unix
// socket `socket` there and writes `ready` to descriptor 3 once it does (its standard output
// and error are the session's log). Each connection is one batch: a JSON line {"ids": IDS,
// "out": OUT, "env": {NAME: VALUE or null}} in (node_session_client.js sends it: the batch's
// own variables, null for one it has not, which is then unset); out, {"out": TEXT}
// for what the process prints while the batch runs, then {"done": EXIT_CODE} once the
// framework's side has written the batch's report to OUT.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const readline = require('node:readline');

// Runs `batch` (the framework's side: the request in, a promise of the exit code out) with the
// request's variables and what the process prints sent to `connection`, then sends the code.
async function serveBatch(batch, request, connection) {
  for (const [name, value] of Object.entries(request.env)) {
    if (value === null) {
      delete process.env[name];
    } else {
      process.env[name] = value;
    }
  }
  // Reporters may replace `write` on the streams with wrappers of their own and leave them
  // (Jest's buffering one does): restoring the originals after the batch drops them, and
  // what is printed after the batch goes to the log.
  const streams = [process.stdout, process.stderr];
  const originals = streams.map(stream => stream.write);
  let open = true;
  for (const [at, stream] of streams.entries()) {
    stream.write = (chunk, encoding, callback) => {
      if (!open) {
        return originals[at].call(stream, chunk, encoding, callback);
      }
      connection.write(`${JSON.stringify({out: String(chunk)})}\n`);
      const done = typeof encoding === 'function' ? encoding : callback;
      if (typeof done === 'function') {
        done();
      }
      return true;
    };
  }
  let code = 1;
  try {
    code = await batch(request);
  } catch (error) {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  } finally {
    open = false;
    streams.forEach((stream, at) => {
      stream.write = originals[at];
    });
  }
  connection.end(`${JSON.stringify({done: code})}\n`);
}

// Serves batches with `batch` (see `serveBatch`) until the process is stopped.
async function serve(batch) {
  const here = process.cwd();
  const server = net.createServer();
  process.chdir(process.env.CLUSTER_SESSION);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    // By its name in the control directory: a unix socket's path is at most about 100 bytes.
    server.listen('socket', resolve);
  });
  process.chdir(here);
  fs.writeSync(3, 'ready\n');
  fs.closeSync(3);
  // One batch at a time: a slot hands its session one batch, but a client that lost its
  // batch could leave a second connection waiting.
  let queue = Promise.resolve();
  server.on('connection', connection => {
    connection.on('error', () => {});
    const lines = readline.createInterface({input: connection});
    lines.once('line', line => {
      lines.close();
      let request;
      try {
        request = JSON.parse(line);
      } catch (error) {
        // Not a batch: its client sees the connection end without a result.
        process.stderr.write(`a request that is not JSON (${error.message}): ${line}\n`);
        connection.destroy();
        return;
      }
      queue = queue.then(() => serveBatch(batch, request, connection));
    });
  });
}

module.exports = {serve};
