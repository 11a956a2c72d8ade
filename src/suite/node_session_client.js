// cluster-action's side of a batch handed to the worker's warm session of a Node framework
// (the `serve` mode of the Jest driver and of the Vitest helper): `node -e THIS NAME IDS OUT`,
// with CLUSTER_SESSION naming the session's control directory. It sends the session the batch
// (its file of ids IDS, the report OUT to write, the batch's own variables), prints what the
// session sends as the framework prints it, then marks the session as served (the file
// `served` in its control directory: the worker hands it the next batch only then) and exits
// with the batch's code. When the session ends before the batch does (a test ended its
// process), OUT keeps a line per test that finished, the end of the session's log is printed,
// and the exit code is 3. NAME is the framework's, for those messages.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const readline = require('node:readline');

const [name, idsFile, outFile] = process.argv.slice(1);
const control = process.env.CLUSTER_SESSION;
// The variables that change from one batch to the next (null: this batch has none).
const env = {};
for (const variable of ['CLUSTER_ATTEMPT', 'CLUSTER_JOB_NAME', 'CLUSTER_JUNIT']) {
  env[variable] = process.env[variable] ?? null;
}
const request = {ids: path.resolve(idsFile), out: path.resolve(outFile), env};

// The end of the session's log.
function logTail() {
  try {
    const log = fs.readFileSync('log');
    return log.subarray(Math.max(0, log.length - 4000)).toString('utf8').trimEnd();
  } catch {
    return '';
  }
}

// By its name in the control directory: a unix socket's path is at most about 100 bytes.
process.chdir(control);
let done = null;
const connection = net.createConnection('socket', () => {
  connection.write(`${JSON.stringify(request)}\n`);
});
readline.createInterface({input: connection}).on('line', line => {
  const event = JSON.parse(line);
  if ('out' in event) {
    process.stdout.write(event.out);
  } else if ('done' in event) {
    done = event.done;
  }
});
connection.on('error', error => {
  process.stdout.write(`[cluster-action: cannot reach the ${name} session: ${error.message}]\n`);
});
connection.on('close', () => {
  if (done === null) {
    process.stdout.write(`${logTail()}\n`);
    process.stdout.write(`[cluster-action: the ${name} session ended before the batch did]\n`);
    process.exitCode = 3;
    return;
  }
  fs.writeFileSync('served', '');
  process.exitCode = done;
});
