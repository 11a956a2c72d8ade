// The official client's view of a sealed run: a cluster with a secret (`run --embed-broker`
// and a worker) runs jobs that print and write marker strings against `cluster-action serve`,
// keeping every artifact; then @actions/artifact, as any reader of the run would, lists the
// artifacts and downloads each one. None of the markers may be readable in what it gets, plain
// or inflated, and no artifact name may carry plaintext: layer names are keyed hashes of the
// sealed bytes, not SHA-256 addresses a reader could check guesses against.
//
// Run: cargo build && node --test tests/js/
// The binary is $CLUSTER_ACTION_BIN, default target/debug/cluster-action.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { bin, startServer, token as serviceToken } from './service.mjs';


const RUN = 'run-sealed-store';
const SECRET = 'a cluster secret for the sealed-store test';
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'sealed-store-'));
const mark = what => `MARKER-${what}-3b9f`;
// Each marker is written in one place only; the output ones are computed by the shell, so that
// they exist nowhere but in the job's output and its output file.
const MARKERS = ['command', 'env', 'secret', 'layer', 'output-42', 'file-48', 'jobname'].map(mark);

let server;
let url;

const token = job => serviceToken(bin, RUN, job);

/// The environment of a cluster process: ours without anything that would change what the
/// binary does, plus the service, a token for `job` and `extra`.
function clusterEnv(job, extra) {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (/^(ACTIONS_|GITHUB_|CLUSTER_|RUST_LOG$)/.test(name)) delete env[name];
  }
  return { ...env, ACTIONS_RESULTS_URL: url, ACTIONS_RUNTIME_TOKEN: token(job), ...extra };
}

/// Runs `cluster-action ARGS` as job `job` in the scratch directory; resolves with its exit
/// code and its output.
function runCluster(job, args, extra = {}) {
  const child = spawn(bin, args, { cwd: scratch, env: clusterEnv(job, extra), stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', d => (output += d));
  child.stderr.on('data', d => (output += d));
  return once(child, 'exit').then(([code]) => ({ code, output }));
}


/// `data` and everything that inflates out of it, recursively: gzip streams starting anywhere
/// (what a broken stream yields up to the damage too) and zip entries (raw deflate after each
/// local file header).
function* views(data, depth = 0) {
  yield data;
  if (depth > 3) return;
  const partial = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
  for (let at = data.indexOf('\x1f\x8b\x08', 0, 'latin1'); at >= 0; at = data.indexOf('\x1f\x8b\x08', at + 1, 'latin1')) {
    try {
      yield* views(zlib.gunzipSync(data.subarray(at), partial), depth + 1);
    } catch {
      // Not a gzip stream after all.
    }
  }
  for (let at = data.indexOf('PK\x03\x04', 0, 'latin1'); at >= 0; at = data.indexOf('PK\x03\x04', at + 1, 'latin1')) {
    if (at + 30 > data.length || data.readUInt16LE(at + 8) !== 8) continue;
    const start = at + 30 + data.readUInt16LE(at + 26) + data.readUInt16LE(at + 28);
    try {
      yield* views(zlib.inflateRawSync(data.subarray(start), partial), depth + 1);
    } catch {
      // Not a deflated entry after all.
    }
  }
}

/// The markers readable in `data`, plain or inflated.
const markersIn = data => MARKERS.filter(m => [...views(data)].some(v => v.includes(m)));

/// Every file under `dir`, recursively.
const filesUnder = dir =>
  fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter(e => e.isFile()).map(e => path.join(e.parentPath, e.name));

let runner;
let client;

before(async () => {
  const job = [
    `echo ${mark('command')}`,
    'echo "$ENV_MARK $SECRET_MARK"',
    'echo "cluster secret: ${CLUSTER_SECRET:-unset}"',
    'head -1 src/notes.txt',
    `echo MARKER-output-$((2 * 21))-3b9f`,
    'mkdir -p out',
    'echo MARKER-file-$((3 * 16))-3b9f > out/o.txt',
  ].join('; ');
  fs.mkdirSync(path.join(scratch, 'src'), { recursive: true });
  fs.writeFileSync(path.join(scratch, 'src', 'notes.txt'), `${mark('layer')}\n`.repeat(200));
  fs.writeFileSync(
    path.join(scratch, 'cluster.yml'),
    [
      'defaults:',
      `  env: { ENV_MARK: ${mark('env')} }`,
      '  secret-env: [SECRET_MARK]',
      'layers:',
      '  notes:',
      '    paths: [src]',
      'jobs:',
      // The second job fails, so that the JUnit report quotes its output.
      ...[1, 2].flatMap(n => [
        `  - name: ${mark('jobname')}-${n}`,
        `    run: ${JSON.stringify(job + (n === 2 ? '; exit 1' : ''))}`,
        '    layers: [notes]',
        '    outputs: [out/*]',
      ]),
      '',
    ].join('\n'),
  );
  ({ server, url } = await startServer(bin, path.join(scratch, 'data')));
  const timings = ['--poll-max', '100ms', '--keepalive', '300ms', '--peer-timeout', '5s'];
  const sealed = { CLUSTER_SECRET: SECRET };
  const runnerDone = runCluster(
    'runner',
    ['run', 'cluster.yml', '--embed-broker', '--stop-cluster', '--keep', 'all', '--outputs-dir', 'outs', '--report-json', 'report.json', '--report-junit', 'report.xml', ...timings],
    { ...sealed, SECRET_MARK: mark('secret') },
  );
  const workerDone = runCluster('worker', ['worker', ...timings], sealed);
  const [r, w] = await Promise.all([runnerDone, workerDone]);
  runner = r;
  assert.equal(r.code, 1, `the sealed run ends with its one failed job:\n${r.output}`);
  assert.equal(w.code, 0, `the worker stops cleanly:\n${w.output}`);

  for (const proxy of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[proxy];
  process.env.ACTIONS_RESULTS_URL = url;
  process.env.ACTIONS_RUNTIME_TOKEN = token('reader');
  process.env.GITHUB_SERVER_URL = 'https://github.com';
  process.env.GITHUB_WORKSPACE = path.join(scratch, 'workspace');
  const { DefaultArtifactClient } = await import('@actions/artifact');
  client = new DefaultArtifactClient();
}, { timeout: 120_000 });

after(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await once(server, 'exit');
  }
  fs.rmSync(scratch, { recursive: true, force: true });
});

test("the markers did travel: in the failed job's output and in the outputs brought back", () => {
  const junit = fs.readFileSync(path.join(scratch, 'report.xml'), 'utf8');
  for (const what of ['command', 'env', 'layer', 'output-42', 'jobname']) {
    assert.ok(junit.includes(mark(what)), `${what} missing from the JUnit report: ${junit}`);
  }
  assert.ok(!junit.includes(mark('secret')) && junit.includes('***'), `the secret is masked: ${junit}`);
  // The cluster secret opens every artifact: no job gets it, so none can print it.
  assert.ok(junit.includes('cluster secret: unset') && !junit.includes(SECRET), `a job saw CLUSTER_SECRET: ${junit}`);
  const { jobs } = JSON.parse(fs.readFileSync(path.join(scratch, 'report.json'), 'utf8'));
  assert.deepEqual(jobs.map(j => [j.name, j.status]), [[`${mark('jobname')}-1`, 'passed'], [`${mark('jobname')}-2`, 'failed']]);
  for (const { outputs_dir } of jobs) {
    const file = path.join(scratch, 'outs', outputs_dir, 'out', 'o.txt');
    assert.equal(fs.readFileSync(file, 'utf8'), `${mark('file-48')}\n`);
  }
});

test('the scan sees through gzip and zip', () => {
  const gz = zlib.gzipSync(`${mark('layer')}\n`.repeat(50));
  const local = Buffer.alloc(30);
  local.write('PK\x03\x04', 'latin1');
  local.writeUInt16LE(8, 8);
  const zipped = Buffer.concat([Buffer.from('junk'), local, zlib.deflateRawSync(Buffer.concat([Buffer.from('x'), gz]))]);
  assert.deepEqual(markersIn(gz), [mark('layer')]);
  assert.deepEqual(markersIn(zipped), [mark('layer')]);
});

test('the official client lists and downloads every artifact: no marker readable', { timeout: 120_000 }, async () => {
  const { artifacts } = await client.listArtifacts();
  const names = artifacts.map(a => a.name);
  const layers = names.filter(n => n.startsWith('ca-layer-'));
  assert.ok(artifacts.length >= 8, `streams, markers, layers, outputs layers: ${names.join(', ')}`);
  assert.ok(layers.length >= 2, `the layer and the outputs layers: ${names.join(', ')}`);
  // Every name is one of the cluster's shapes, made of the cluster id, the attempt, random
  // peer ids and keyed hashes: nothing from the manifest or the jobs.
  const shape = /^(ca\.default\.1\.(listen|closed|[0-9a-f]{16}\.(up|down)\.\d+)|ca-layer-[0-9a-f]{64})$/;
  for (const name of names) {
    assert.deepEqual(markersIn(Buffer.from(name)), [], `plaintext in the artifact name ${name}`);
    assert.match(name, shape, 'an artifact name of an unknown shape');
  }
  let sealed = 0;
  for (const artifact of artifacts) {
    const dir = path.join(scratch, 'download', String(artifact.id));
    await client.downloadArtifact(artifact.id, { path: dir });
    const files = filesUnder(dir);
    assert.ok(files.length > 0 || artifact.size === 0, `${artifact.name}: nothing downloaded`);
    for (const file of files) {
      const data = fs.readFileSync(file);
      assert.deepEqual(markersIn(data), [], `${artifact.name} (${file}) reveals markers`);
      if (!artifact.name.startsWith('ca-layer-')) continue;
      // A layer is sealed, and its name is no SHA-256 of what anyone can download.
      assert.ok(data.subarray(0, 8).equals(Buffer.from('ca-seal1')), `${artifact.name} is not sealed`);
      const sha = crypto.createHash('sha256').update(data).digest('hex');
      assert.notEqual(`ca-layer-${sha}`, artifact.name, `${artifact.name} is the SHA-256 of its bytes`);
      sealed += 1;
    }
  }
  assert.equal(sealed, layers.length, 'every layer was downloaded and checked');
});
