// `cluster-action serve` for the JS tests of the official client: the binary under test
// ($CLUSTER_ACTION_BIN, default target/debug/cluster-action), the service started on
// 127.0.0.1 with its blobs in a data directory, and the runtime tokens it accepts. Not a test
// file itself.

import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
/// The binary under test.
export const bin = process.env.CLUSTER_ACTION_BIN ?? path.join(repo, 'target', 'debug', 'cluster-action');

if (!fs.existsSync(path.join(here, 'node_modules', '@actions', 'artifact'))) {
  throw new Error(`${here}/node_modules is missing @actions/artifact: run \`npm ci\` in tests/js first`);
}
if (!fs.existsSync(bin)) {
  throw new Error(`${bin} does not exist: run \`cargo build\` first or set CLUSTER_ACTION_BIN`);
}

/// A runtime token of `job` in run `run`, as `cluster-action token` makes it.
export const token = (bin, run, job) => execFileSync(bin, ['token', '--run', run, '--job', job]).toString().trim();

/// Starts `bin serve` with its blobs in `dataDir`; resolves with the process and the URL from
/// its first stdout line.
export async function startServer(bin, dataDir) {
  const server = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(server, 'exit').then(([code, signal]) => {
    throw new Error(`cluster-action serve exited before announcing its URL (code ${code}, signal ${signal})`);
  });
  const lines = readline.createInterface({ input: server.stdout });
  const announced = once(lines, 'line').then(([line]) => {
    const match = /^ACTIONS_RESULTS_URL=(http:\/\/127\.0\.0\.1:\d+\/)$/.exec(line);
    if (!match) throw new Error(`unexpected first line from cluster-action serve: ${line}`);
    return match[1];
  });
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error('cluster-action serve did not announce its URL within 10 s')), 10_000).unref(),
  );
  return { server, url: await Promise.race([announced, exited, timeout]) };
}
