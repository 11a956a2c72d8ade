'use strict';
// The GitHub Action wrapper around the `cluster-action` binary.
//
// It exists because GitHub hands the artifact credentials (ACTIONS_RUNTIME_TOKEN,
// ACTIONS_RESULTS_URL) only to JavaScript and container actions, not to the `run:` steps of a
// composite action. So this small script reads the action's inputs, finds or fetches the
// binary, turns the inputs into the binary's flags, and runs it with the whole environment;
// the binary keeps the `timeout` and writes the step outputs itself.
//
// Where Node has process.execve (node >= 22.15 and 23.11; GitHub runs actions on node24) the
// script *replaces itself* with the binary: then no process above the binary's jobs holds the
// credentials in its initial environment (/proc/<pid>/environ, readable by every process of
// the same user), as the binary blanks them in its own (src/cli/credentials.rs). On an older
// Node (act runs node 20) it spawns the binary and waits, and its own environment keeps them.
// Nothing is written through process.stdout, which would turn the pipe the binary inherits
// non-blocking: every line goes out with a synchronous write.
//
// Dependency-free on purpose (node builtins only, no build step): what is committed is what
// runs, on node 20 and node 24.
//
// The plan role runs `cluster-action plan`: it writes the `workers` and `matrix` step
// outputs that size a later job's matrix.
//
// Exit codes: the binary's own (0 passed, 1 jobs failed, 2 bad input, 3 infrastructure, 130
// cancelled; death by signal N is 128+N); the wrapper itself exits 2 for bad inputs and 3 when
// it cannot get a binary.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { spawn } = require('node:child_process');

const BAD_INPUT = 2;
const NO_BINARY = 3;

/** The action's own directory: a checkout of the repository when used as `uses: ./`. */
const ACTION_DIR = path.resolve(__dirname, '..');

/** Release assets are built for these platforms (`<process.platform>-<process.arch>`). */
const TARGETS = {
  'linux-x64': 'x86_64-unknown-linux-musl',
  'linux-arm64': 'aarch64-unknown-linux-musl',
  'darwin-arm64': 'aarch64-apple-darwin',
};

const ROLES = ['broker', 'worker', 'runner', 'auto', 'plan'];

/**
 * Every input, and the roles that use it (`all` for every role). An input given to a role that
 * does not use it is ignored with a warning. Under `auto` every instance gets the same inputs,
 * so the runner's and the workers' inputs both belong to it.
 */
const INPUTS = {
  role: 'all',
  instance: ['auto'],
  instances: ['runner', 'auto'],
  jobs: ['runner', 'auto', 'plan'],
  commands: ['runner', 'auto', 'plan'],
  tests: ['runner', 'auto', 'plan'],
  'test-args': ['runner', 'auto', 'plan'],
  quarantine: ['runner', 'auto'],
  'detect-new-flakes': ['runner', 'auto'],
  cluster: 'all',
  slots: ['worker', 'runner', 'auto', 'plan'],
  target: ['plan'],
  'max-workers': ['plan'],
  'stop-cluster': ['runner'],
  'worker-wait': ['runner', 'auto'],
  'broker-wait': ['worker', 'runner', 'auto'],
  timeout: 'all',
  version: 'all',
  binary: 'all',
  'log-level': 'all',
  args: 'all',
  'outputs-dir': ['runner', 'auto'],
  // Defaults to the workflow's token in action.yml, so every role gets it; only runs use it.
  token: 'all',
  secret: 'all',
  keep: ['broker', 'auto'],
  retention: 'all',
};

/** The `tests` input's frameworks: a one-suite run, `--tests FRAMEWORK [ARGS]` of the binary. */
const TEST_FRAMEWORKS = ['nextest', 'pytest', 'go', 'jest', 'vitest', 'playwright', 'rspec', 'minitest'];

/** A failure the user can fix, with the exit code that reports it. */
class ActionError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}
const badInput = message => new ActionError(BAD_INPUT, message);
const noBinary = message => new ActionError(NO_BINARY, message);

/** An input as GitHub passes it: `INPUT_` + the name upper-cased, spaces to `_`, hyphens kept. */
function input(name, env = process.env) {
  return (env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`] || '').trim();
}

/** Escapes text for a workflow command (`::error::...`) so it stays one command. */
function escapeData(text) {
  return String(text).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** Writes a line of the log synchronously (see the top of the file). */
const print = line => fs.writeSync(1, `${line}\n`);

const warn = message => print(`::warning::${escapeData(message)}`);

// ---------------------------------------------------------------------------------------------
// Inputs

const DURATION_UNITS = [['h', 3_600_000], ['m', 60_000], ['s', 1_000], ['ms', 1]];

/**
 * Milliseconds in a duration written as the binary reads them (src/runner/duration.rs):
 * `500ms`, `30s`, `10m`, `1h`, units combined largest first (`1h30m`), or plain seconds (`90`).
 * Null when the text is not one.
 */
function parseDuration(text) {
  const s = text.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  let rest = s;
  let total = 0;
  let next = 0; // index into DURATION_UNITS of the largest unit still allowed
  while (rest) {
    const m = /^(\d+)([A-Za-z]*)/.exec(rest);
    if (!m) return null;
    const found = DURATION_UNITS.findIndex(([unit], i) => i >= next && unit === m[2]);
    if (found < 0) return null;
    total += Number(m[1]) * DURATION_UNITS[found][1];
    next = found + 1;
    rest = rest.slice(m[0].length);
  }
  return next === 0 ? null : total;
}

function durationInput(name, value) {
  if (!value) return null;
  const ms = parseDuration(value);
  if (ms === null) {
    throw badInput(
      `${name}: '${value}' is not a duration: use a whole number with a unit (500ms, 30s, 10m, 1h), ` +
        'units combined largest first (1h30m), or a plain number of seconds (90)',
    );
  }
  return ms;
}

/** Checks a count input (empty, or a positive whole number); `what` says in its error what to give. */
function countInput(name, value, what) {
  if (value && !/^[1-9]\d*$/.test(value)) {
    throw badInput(`${name}: '${value}' is not a positive whole number: give ${what}`);
  }
}

/** A true/false input; `expected` says in its error what the input takes. */
function booleanInput(name, value, expected = 'a boolean: use true or false') {
  if (['true', 'True', 'TRUE'].includes(value)) return true;
  if (['false', 'False', 'FALSE', ''].includes(value)) return false;
  throw badInput(`${name}: '${value}' is not ${expected}`);
}

/**
 * Splits the `args` input into words like a shell would, without expanding anything:
 * whitespace separates words, '...' is literal, "..." allows \" and \\, and a backslash
 * outside quotes escapes the next character.
 */
function splitArgs(text) {
  const words = [];
  let word = null;
  let quote = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = null;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\')) word += text[++i];
      else word += c;
    } else if (/\s/.test(c)) {
      if (word !== null) words.push(word);
      word = null;
    } else {
      word = word ?? '';
      if (c === "'" || c === '"') quote = c;
      else if (c === '\\' && i + 1 < text.length) word += text[++i];
      else word += c;
    }
  }
  if (quote) throw badInput(`args: unterminated ${quote} quote in ${JSON.stringify(text)}`);
  if (word !== null) words.push(word);
  return words;
}

/**
 * The validated inputs. `mode` is what this step runs: `broker`, `worker`, `runner`, or
 * `embedded` (auto's instance 0: a runner with the broker inside it).
 */
function readInputs(env = process.env) {
  const raw = Object.fromEntries(Object.keys(INPUTS).map(name => [name, input(name, env)]));
  const role = raw.role || 'auto';
  if (!ROLES.includes(role)) {
    throw badInput(`role: '${role}' is not a role: use one of ${ROLES.join(', ')}`);
  }
  for (const [name, roles] of Object.entries(INPUTS)) {
    if (raw[name] && roles !== 'all' && !roles.includes(role)) {
      warn(`input '${name}' does not apply to role '${role}' and is ignored`);
      raw[name] = '';
    }
  }
  let mode = role;
  if (role === 'auto') {
    if (!/^\d+$/.test(raw.instance)) {
      throw badInput(
        `instance: role 'auto' needs this job's instance number (0 runs the broker and the jobs, ` +
          `the others are workers), got '${raw.instance}': set instance: \${{ strategy.job-index }} ` +
          'or a matrix value, or set role',
      );
    }
    mode = Number(raw.instance) === 0 ? 'embedded' : 'worker';
  }
  const given = ['jobs', 'commands', 'tests'].filter(name => raw[name]);
  if ((role === 'runner' || role === 'auto' || role === 'plan') && given.length !== 1) {
    throw badInput(
      `role '${role}' needs exactly one of 'jobs' (a manifest), 'commands' (a file of commands) ` +
        `or 'tests' (a framework), got ${given.length ? given.join(' and ') : 'none'}`,
    );
  }
  if (raw.tests && !TEST_FRAMEWORKS.includes(raw.tests)) {
    throw badInput(`tests: '${raw.tests}' is not a test framework: use one of ${TEST_FRAMEWORKS.join(', ')}`);
  }
  if (raw['test-args'] && !raw.tests) {
    throw badInput(`test-args: arguments for a test framework need 'tests' (${TEST_FRAMEWORKS.join(', ')})`);
  }
  const quarantine = quarantineInput(raw.quarantine);
  // A runner may have no slots of its own (0); a worker runs at least one job at once.
  const slotsPattern = role === 'runner' ? /^(0|[1-9]\d*)$/ : /^[1-9]\d*$/;
  if (raw.slots && !slotsPattern.test(raw.slots)) {
    const what = role === 'runner' ? 'a whole number' : 'a positive whole number';
    throw badInput(`slots: '${raw.slots}' is not ${what}: give the jobs this machine runs at once, e.g. 4`);
  }
  if (raw.version && (!/^[A-Za-z0-9._+-]+$/.test(raw.version) || /^\.+$/.test(raw.version))) {
    throw badInput(`version: '${raw.version}' is not a release tag: give one such as v1.2.3`);
  }
  const timeout = durationInput('timeout', raw.timeout);
  durationInput('CLUSTER_ACTION_KILL_GRACE', env.CLUSTER_ACTION_KILL_GRACE || '10s');
  if (timeout === 0) throw badInput("timeout: '0' would stop the binary at once: give a longer duration, or none");
  if (raw.keep && !['reports', 'all', 'none'].includes(raw.keep)) {
    throw badInput(`keep: '${raw.keep}' is not one of reports, all, none: say what a clean stop leaves in the run's artifacts`);
  }
  if (raw.retention && !(/^\d+$/.test(raw.retention) && Number(raw.retention) >= 1 && Number(raw.retention) <= 90)) {
    throw badInput(`retention: '${raw.retention}' is not a number of days from 1 to 90 (GitHub's artifact retention): e.g. 1`);
  }
  durationInput('worker-wait', raw['worker-wait']);
  durationInput('broker-wait', raw['broker-wait']);
  if (durationInput('target', raw.target) === 0) {
    throw badInput("target: no run takes 0s: give the wall time to aim for, e.g. 10m");
  }
  countInput('instances', raw.instances, 'how many workers the cluster has, e.g. ${{ strategy.job-total }}');
  countInput('max-workers', raw['max-workers'], 'the most machines to plan for, e.g. 8');
  return {
    ...raw,
    role,
    mode,
    cluster: raw.cluster || 'default',
    stopCluster: booleanInput('stop-cluster', raw['stop-cluster']),
    detectNewFlakes: detectNewFlakesInput(raw['detect-new-flakes']),
    killGrace: env.CLUSTER_ACTION_KILL_GRACE || '10s',
    args: splitArgs(raw.args),
    testArgs: splitArgs(raw['test-args']),
    quarantine,
  };
}

/**
 * The `quarantine` input as the binary's flags, split on whitespace: `auto` (quarantine by flake
 * rate) or `off` (none), settings (words with `=`: `min-runs=5 flake-rate=20%`, which the binary
 * checks), and/or the path of a file of test ids quarantined by hand.
 */
function quarantineInput(value) {
  const words = splitArgs(value);
  const modes = words.filter(word => word === 'auto' || word === 'off');
  const settings = words.filter(word => word.includes('='));
  const files = words.filter(word => !modes.includes(word) && !settings.includes(word));
  if (modes.length > 1 || files.length > 1) {
    throw badInput(
      `quarantine: '${value}' gives more than one mode or file: give auto (by flake rate) or off, ` +
        'settings and/or one file of test ids (one a line), e.g. `auto min-runs=5 .github/quarantine.txt`',
    );
  }
  const flag = [...modes, ...settings].join(',');
  return [
    ...(flag ? ['--quarantine', flag] : []),
    ...(files.length ? ['--quarantine-file', files[0]] : []),
  ];
}

/**
 * The `detect-new-flakes` input as the binary's flag: `true` or `false`, or settings (words
 * with `=`: `runs=5 share=20%`, which the binary checks) that turn it on.
 */
function detectNewFlakesInput(value) {
  const words = splitArgs(value);
  if (words.length && words.every(word => word.includes('='))) {
    return [`--detect-new-flakes=${words.join(',')}`];
  }
  const expected = 'a boolean or settings: use true, false or settings such as `runs=5 share=20%`';
  return booleanInput('detect-new-flakes', value, expected) ? ['--detect-new-flakes'] : [];
}

/**
 * The binary's arguments for these inputs; `reports` holds the report paths for job runs. The
 * binary itself keeps the `timeout` (SIGTERM, then SIGKILL after CLUSTER_ACTION_KILL_GRACE) and
 * writes a run's step outputs (--step-outputs).
 */
function commandLine(cfg, reports) {
  const flag = (name, value) => (value ? [`--${name}`, value] : []);
  const argv = [...flag('log-level', cfg['log-level'])];
  if (cfg.timeout) argv.push('--timeout', cfg.timeout, '--kill-grace', cfg.killGrace);
  switch (cfg.mode) {
    case 'broker':
      argv.push('broker', '--cluster', cfg.cluster, ...flag('keep', cfg.keep), ...flag('retention', cfg.retention));
      break;
    case 'worker':
      argv.push(
        'worker', '--cluster', cfg.cluster,
        ...flag('slots', cfg.slots),
        ...flag('broker-wait', cfg['broker-wait']),
        ...flag('retention', cfg.retention),
      );
      break;
    case 'plan':
      argv.push(
        'plan', '--cluster', cfg.cluster,
        ...flag('slots', cfg.slots),
        ...flag('target', cfg.target),
        ...flag('max-workers', cfg['max-workers']),
        '--step-outputs',
        ...flag('commands', cfg.commands),
      );
      break;
    default: {
      const embedded = cfg.mode === 'embedded';
      argv.push(
        'run',
        '--cluster', cfg.cluster,
        ...(embedded ? ['--embed-broker', '--stop-cluster'] : cfg.stopCluster ? ['--stop-cluster'] : []),
        ...flag('slots', cfg.slots),
        ...flag('worker-wait', cfg['worker-wait']),
        ...flag('expect-workers', cfg.instances),
        ...(embedded ? [] : flag('broker-wait', cfg['broker-wait'])),
        ...flag('outputs-dir', cfg['outputs-dir']),
        ...(embedded ? flag('keep', cfg.keep) : []),
        ...flag('retention', cfg.retention),
        '--report-json', reports.json,
        '--report-junit', reports.junit,
        '--step-outputs',
        ...cfg.quarantine,
        ...cfg.detectNewFlakes,
        ...flag('commands', cfg.commands),
      );
    }
  }
  argv.push(...cfg.args);
  const namesWork = ['runner', 'embedded', 'plan'].includes(cfg.mode);
  // A suite flag takes every argument after it: it goes last.
  if (cfg.tests && namesWork) argv.push('--tests', cfg.tests, ...cfg.testArgs);
  // The manifest goes last, after `--`, so a path starting with '-' is never read as a flag.
  if (cfg.jobs && namesWork) argv.push('--', cfg.jobs);
  return argv;
}

// ---------------------------------------------------------------------------------------------
// Finding the binary

function isExecutableFile(file) {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function findOnPath(name, env = process.env) {
  for (const dir of (env.PATH || '').split(path.delimiter)) {
    if (dir && isExecutableFile(path.join(dir, name))) return path.join(dir, name);
  }
  return null;
}

/** The Rust target triple of the release asset for a platform; unsupported ones are an error. */
function releaseTarget(platform = process.platform, arch = process.arch) {
  const target = TARGETS[`${platform}-${arch}`];
  if (!target) {
    throw noBinary(
      `no release binary for ${platform}-${arch}: releases are built for ${Object.values(TARGETS).join(', ')}; ` +
        "on another platform build cluster-action yourself and give its path in the 'binary' input",
    );
  }
  return target;
}

/** The release asset for a target, and what release.yml uploads. */
const assetName = target => `cluster-action-${target}.tar.gz`;

/** The `version` in the `[package]` table of the action's Cargo.toml, if there is one. */
function packageVersion() {
  let text;
  try {
    text = fs.readFileSync(path.join(ACTION_DIR, 'Cargo.toml'), 'utf8');
  } catch {
    return null;
  }
  const table = /^\[package\][^\S\n]*\n([\s\S]*?)(?=^\[|(?![\s\S]))/m.exec(text);
  const version = table && /^version\s*=\s*"([^"]+)"/m.exec(table[1]);
  return version ? version[1] : null;
}

/**
 * The release to download: the `version` input, else the tag the action is used at
 * (GITHUB_ACTION_REF). A moving major or minor tag (`v1`, `v1.2`) becomes the exact release it
 * points at, read from the action's own Cargo.toml, so the binary matches this wrapper and the
 * cache never holds a stale `v1`. Null when the action is not used at a release tag (a local
 * `uses: ./`, a branch, a commit).
 */
function releaseVersion(cfg, env = process.env) {
  if (cfg.version) return cfg.version;
  const ref = env.GITHUB_ACTION_REF || '';
  const tag = /^v(\d+(?:\.\d+){0,2})(-[0-9A-Za-z.-]+)?$/.exec(ref);
  if (!tag) return null;
  const exact = packageVersion();
  if (!tag[2] && tag[1].split('.').length < 3 && exact && exact.startsWith(`${tag[1]}.`)) return `v${exact}`;
  return ref;
}

/**
 * The binary to run, in this order: the `binary` input; CLUSTER_ACTION_BINARY; the release named
 * by `version` or by the tag the action is used at (downloaded once into the tool cache); and,
 * when there is no release to use, a build from the action's own sources with cargo.
 */
async function resolveBinary(cfg, env = process.env) {
  for (const [file, source] of [[cfg.binary, "the 'binary' input"], [env.CLUSTER_ACTION_BINARY, 'CLUSTER_ACTION_BINARY']]) {
    if (!file) continue;
    const resolved = path.resolve(file);
    if (!isExecutableFile(resolved)) throw noBinary(`${source} names ${resolved}, which is not an executable file`);
    return resolved;
  }
  const version = releaseVersion(cfg, env);
  if (version) return releaseBinary(version, env);
  const cargo = findOnPath('cargo', env);
  if (cargo && fs.existsSync(path.join(ACTION_DIR, 'Cargo.toml'))) return buildFromSource(cargo, env);
  const ref = env.GITHUB_ACTION_REF;
  throw noBinary(
    `no cluster-action binary: the action is used ${ref ? `at '${ref}', which is not a release tag` : 'from a local path'}, ` +
      `and it cannot be built from source here (${cargo ? `no Cargo.toml in ${ACTION_DIR}` : 'cargo is not on PATH'}): ` +
      "set the 'version' input to a release such as v1.2.3, or 'binary' to a cluster-action you built",
  );
}

/** Builds the action's sources with cargo and returns the binary. */
async function buildFromSource(cargo, env) {
  print(`::group::Building cluster-action from source in ${ACTION_DIR} (cargo build --release --locked)`);
  const { code, signal } = await runChild(cargo, ['build', '--release', '--locked'], { cwd: ACTION_DIR });
  print('::endgroup::');
  if (code !== 0) {
    throw noBinary(`cargo build --release --locked in ${ACTION_DIR} failed (${signal ? `signal ${signal}` : `exit code ${code}`}); its output is in the group above`);
  }
  const targetDir = path.resolve(ACTION_DIR, env.CARGO_TARGET_DIR || 'target');
  const binary = path.join(targetDir, 'release', 'cluster-action');
  if (!isExecutableFile(binary)) throw noBinary(`cargo build succeeded but ${binary} is not there`);
  return binary;
}

/**
 * The binary of a release, from the tool cache or downloaded: the asset's SHA-256 is checked
 * against `<asset>.sha256` before anything is extracted, cached or run.
 */
async function releaseBinary(version, env) {
  const target = releaseTarget();
  const cacheRoot = env.RUNNER_TOOL_CACHE || path.join(os.tmpdir(), 'cluster-action-tool-cache');
  // The layout and the `.complete` marker (written last) follow @actions/tool-cache.
  const dir = path.join(cacheRoot, 'cluster-action', version, process.arch);
  const binary = path.join(dir, 'cluster-action');
  if (fs.existsSync(`${dir}.complete`) && isExecutableFile(binary)) {
    print(`cluster-action ${version}: ${binary} (cached)`);
    return binary;
  }
  const url = `${downloadBase(env)}/${version}/${assetName(target)}`;
  print(`cluster-action ${version}: downloading ${url}`);
  const sums = (await download(`${url}.sha256`)).toString('utf8');
  const expected = /^\s*([0-9a-fA-F]{64})(?:\s|$)/.exec(sums);
  if (!expected) throw noBinary(`${url}.sha256 does not start with a SHA-256 (64 hex digits)`);
  const archive = await download(url);
  const actual = crypto.createHash('sha256').update(archive).digest('hex');
  if (actual !== expected[1].toLowerCase()) {
    throw noBinary(
      `checksum mismatch for ${url}: ${url}.sha256 says ${expected[1].toLowerCase()} but the download hashes to ${actual}; ` +
        'nothing was run or cached (a broken download or a tampered release: retry, or report it)',
    );
  }
  let program;
  try {
    program = tarFile(zlib.gunzipSync(archive), 'cluster-action');
  } catch (e) {
    throw noBinary(`${url} is not a gzipped tar archive: ${e.message}`);
  }
  if (!program) throw noBinary(`${url} holds no file named 'cluster-action'`);
  try {
    fs.mkdirSync(dir, { recursive: true });
    const partial = path.join(dir, `.cluster-action.${process.pid}.partial`);
    fs.writeFileSync(partial, program, { mode: 0o755 });
    fs.renameSync(partial, binary);
    fs.writeFileSync(`${dir}.complete`, '');
  } catch (e) {
    throw noBinary(`cannot put the binary into the tool cache (RUNNER_TOOL_CACHE): ${e.message}`);
  }
  return binary;
}

/**
 * Where releases are downloaded from: CLUSTER_ACTION_DOWNLOAD_BASE (a mirror holding
 * `<version>/<asset>`), else the GitHub releases of the action's repository.
 */
function downloadBase(env) {
  if (env.CLUSTER_ACTION_DOWNLOAD_BASE) return env.CLUSTER_ACTION_DOWNLOAD_BASE.replace(/\/+$/, '');
  const repo = env.GITHUB_ACTION_REPOSITORY || env.GITHUB_REPOSITORY;
  if (!repo) throw noBinary("cannot tell which repository's releases to download from: GITHUB_ACTION_REPOSITORY is not set; set 'binary'");
  return `https://github.com/${repo}/releases/download`;
}

const REDIRECTS = [301, 302, 303, 307, 308];
const ATTEMPTS = 3;

/** The body of a GET, following redirects; network errors and 5xx answers are retried. */
async function download(url) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await getFollowing(url);
    } catch (e) {
      if (!e.retry || attempt === ATTEMPTS) throw noBinary(`cannot download ${url}: ${e.message}`);
      await new Promise(resolve => setTimeout(resolve, 1000 * attempt));
    }
  }
}

async function getFollowing(url) {
  let current = new URL(url);
  for (let hop = 0; hop <= 10; hop++) {
    const res = await get(current);
    if (REDIRECTS.includes(res.status) && res.location) {
      current = new URL(res.location, current);
      continue;
    }
    if (res.status === 200) return res.body;
    const error = new Error(
      res.status === 404 ? 'not found (404): is there a release of that version with this asset?' : `the server answered ${res.status}`,
    );
    error.retry = res.status >= 500;
    throw error;
  }
  throw new Error('more than 10 redirects');
}

/** One GET: status, Location and the whole body. */
function get(url) {
  const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : null;
  if (!client) return Promise.reject(new Error(`unsupported protocol ${url.protocol}`));
  return new Promise((resolve, reject) => {
    const fail = e => reject(Object.assign(e, { retry: true }));
    const req = client.get(url, { headers: { 'user-agent': 'cluster-action' } }, res => {
      const chunks = [];
      res.on('data', chunk => chunks.push(chunk));
      res.on('error', fail);
      res.on('end', () => resolve({ status: res.statusCode, location: res.headers.location, body: Buffer.concat(chunks) }));
    });
    req.setTimeout(60_000, () => req.destroy(new Error('no data for 60s')));
    req.on('error', fail);
  });
}

/**
 * The contents of the regular file `name` (or `./name`) in an uncompressed tar archive, or
 * null. A small reader instead of the `tar` command: the asset holds one file we need, and
 * reading it ourselves extracts nothing else and behaves the same on every runner.
 */
function tarFile(archive, name) {
  for (let offset = 0; offset + 512 <= archive.length; ) {
    const header = archive.subarray(offset, offset + 512);
    if (header.every(byte => byte === 0)) break;
    const text = (start, length) => header.subarray(start, start + length).toString('utf8').replace(/\0[\s\S]*$/, '');
    const size = parseInt(text(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size)) throw new Error('corrupt tar header');
    // POSIX ustar headers may split a long name into a prefix; GNU headers use those bytes otherwise.
    const prefix = text(257, 6) === 'ustar' ? text(345, 155) : '';
    const entry = (prefix ? `${prefix}/` : '') + text(0, 100);
    const type = String.fromCharCode(header[156]);
    const data = offset + 512;
    if ((type === '0' || type === '\0') && entry.replace(/^\.\//, '') === name) {
      if (data + size > archive.length) throw new Error('truncated tar archive');
      return Buffer.from(archive.subarray(data, data + size));
    }
    offset = data + Math.ceil(size / 512) * 512;
  }
  return null;
}

// ---------------------------------------------------------------------------------------------
// Running

/** The child running now (cargo, then the binary); termination signals are passed on to it. */
let current = null;
/** The termination signal this process received, if any. */
let received = null;

const signalExitCode = signal => 128 + os.constants.signals[signal];

/** Passes SIGINT and SIGTERM on to the running child; without one, dies as the signal asks. */
function forwardSignals() {
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      received = signal;
      if (current) current.kill(signal);
      else process.exit(signalExitCode(signal));
    });
  }
}

/** Runs a program with this process's stdio and environment; resolves with how it ended. */
function runChild(file, argv, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: 'inherit', env: process.env, ...options });
    current = child;
    child.on('error', e => {
      current = null;
      reject(noBinary(`cannot start ${file}: ${e.message}`));
    });
    child.on('exit', (code, signal) => {
      current = null;
      resolve({ code, signal });
    });
  });
}

/**
 * The binary's environment: this process's, with the `secret` input as CLUSTER_SECRET (never
 * on the command line, which every process on the machine can read) and masked in the log.
 */
function childEnv(cfg, env = process.env) {
  const out = { ...env };
  delete out.INPUT_SECRET;
  delete out.INPUT_TOKEN;
  // GitHub puts the token in no job's environment: a run (and a plan) reads timing history
  // and earlier attempts with it (workers and brokers do not get it, nor their jobs).
  if (cfg.token && ['runner', 'embedded', 'plan'].includes(cfg.mode)) out.GITHUB_TOKEN = cfg.token;
  if (cfg.secret) {
    for (const line of cfg.secret.split(/\r?\n/)) if (line.trim()) print(`::add-mask::${line}`);
    out.CLUSTER_SECRET = cfg.secret;
  }
  return out;
}

/** Whether this Node can replace its process with another program. */
const canExecve = () => typeof process.execve === 'function';

/**
 * Runs the binary: in place of this process where Node can (it never returns then), else as a
 * child, resolving with its exit code (128+N for death by signal N).
 */
async function runBinary(binary, argv, cfg) {
  const shown = [binary, ...argv].map(arg => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`));
  print(`[command]${shown.join(' ')}`);
  const env = childEnv(cfg);
  if (canExecve()) {
    try {
      process.execve(binary, [binary, ...argv], env);
    } catch (e) {
      throw noBinary(`cannot start ${binary}: ${e.message}`);
    }
  }
  const { code, signal } = await runChild(binary, argv, { env });
  return code ?? signalExitCode(signal);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  forwardSignals();
  const cfg = readInputs();
  const binary = await resolveBinary(cfg);
  const runsJobs = cfg.mode === 'runner' || cfg.mode === 'embedded';
  let reports = null;
  if (runsJobs) {
    const dir = fs.mkdtempSync(path.join(process.env.RUNNER_TEMP || os.tmpdir(), 'cluster-action-'));
    reports = { json: path.join(dir, 'report.json'), junit: path.join(dir, 'report.xml') };
  }
  return runBinary(binary, commandLine(cfg, reports), cfg);
}

// exitCode rather than process.exit(): nothing else keeps the process alive once the child
// has ended.
if (require.main === module) {
  main().then(
    code => {
      process.exitCode = code;
    },
    err => {
      if (received) {
        // A child that failed because we passed it a termination signal is a cancellation.
        process.exitCode = signalExitCode(received);
        return;
      }
      const known = err instanceof ActionError;
      print(`::error::${escapeData(known ? err.message : `cluster-action wrapper bug: ${err.stack}`)}`);
      process.exitCode = known ? err.code : NO_BINARY;
    },
  );
}

// For tests: the pure parts.
module.exports = { INPUTS, TARGETS, parseDuration, releaseTarget, splitArgs, tarFile };
