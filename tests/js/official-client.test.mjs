// The official client, @actions/artifact (with the Azure SDK underneath), against
// `cluster-action serve`: if GitHub's own client can upload, list, find, download and delete
// through our service, the service speaks the protocol as github.com does.
//
// Run: cargo build && node --test tests/js/
// The binary is $CLUSTER_ACTION_BIN, default target/debug/cluster-action.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const bin = process.env.CLUSTER_ACTION_BIN ?? path.join(repo, 'target', 'debug', 'cluster-action');

if (!fs.existsSync(path.join(here, 'node_modules', '@actions', 'artifact'))) {
  throw new Error(`${here}/node_modules is missing @actions/artifact: run \`npm ci\` in tests/js first`);
}
if (!fs.existsSync(bin)) {
  throw new Error(`${bin} does not exist: run \`cargo build\` first or set CLUSTER_ACTION_BIN`);
}

const RUN = 'run-official-client';
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'official-client-'));
let server;
let stats;

const token = job => execFileSync(bin, ['token', '--run', RUN, '--job', job]).toString().trim();

/// Starts `cluster-action serve` and resolves with the URL from its first stdout line.
async function startServer() {
  server = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data-dir', path.join(scratch, 'data')], {
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
  return Promise.race([announced, exited, timeout]);
}

const sha256 = file => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

// The uploaded tree: a few small files and one large random file (> 2 upload chunks of 8 MiB,
// so the Azure SDK stages several blocks and commits a block list).
const source = path.join(scratch, 'source');
const files = {
  'a.txt': Buffer.from('hello from the official client\n'),
  'sub/b.bin': crypto.randomBytes(1024),
  'big.bin': crypto.randomBytes(17 * 1024 * 1024 + 123),
};

function assertSameTree(dir) {
  for (const [name, data] of Object.entries(files)) {
    const got = path.join(dir, name);
    assert.ok(fs.existsSync(got), `${name} missing from the download in ${dir}`);
    assert.equal(sha256(got), crypto.createHash('sha256').update(data).digest('hex'), `${name} differs`);
  }
}

let client;
let artifactClientModule;
let uploaded;

before(async () => {
  for (const [name, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(source, name)), { recursive: true });
    fs.writeFileSync(path.join(source, name), data);
  }
  const url = await startServer();
  stats = async () => (await fetch(`${url}_stats`)).json();
  // The client reads these when it is called; set them before importing it all the same.
  for (const proxy of ['http_proxy', 'https_proxy', 'HTTP_PROXY', 'HTTPS_PROXY']) delete process.env[proxy];
  process.env.ACTIONS_RESULTS_URL = url;
  process.env.ACTIONS_RUNTIME_TOKEN = token('job-a');
  process.env.GITHUB_SERVER_URL = 'https://github.com';
  process.env.GITHUB_WORKSPACE = path.join(scratch, 'workspace');
  artifactClientModule = await import('@actions/artifact');
  client = new artifactClientModule.DefaultArtifactClient();
});

after(async () => {
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    const [code] = await once(server, 'exit');
    assert.equal(code, 0, 'cluster-action serve should exit cleanly on SIGTERM');
  }
  fs.rmSync(scratch, { recursive: true, force: true });
});

test('uploadArtifact stages blocks and finalizes', { timeout: 120_000 }, async () => {
  const paths = Object.keys(files).map(name => path.join(source, name));
  uploaded = await client.uploadArtifact('bundle', paths, source, { compressionLevel: 0 });
  assert.ok(uploaded.id > 0, `artifact id ${uploaded.id}`);
  assert.ok(uploaded.size > files['big.bin'].length, `size ${uploaded.size}`);
  const counts = await stats();
  assert.ok(counts.blob.put_block >= 3, `expected several staged blocks: ${JSON.stringify(counts)}`);
  assert.equal(counts.blob.put_block_list, 1);
  assert.equal(counts.twirp.FinalizeArtifact, 1);
});

test('a second upload of the name is refused at once (409)', { timeout: 30_000 }, async () => {
  await assert.rejects(client.uploadArtifact('bundle', [path.join(source, 'a.txt')], source), /409/);
});

test('listArtifacts and getArtifact find it', { timeout: 60_000 }, async () => {
  const { artifacts } = await client.listArtifacts();
  assert.deepEqual(
    artifacts.map(a => [a.name, a.id, a.size]),
    [['bundle', uploaded.id, uploaded.size]],
  );
  assert.ok(artifacts[0].createdAt instanceof Date && !isNaN(artifacts[0].createdAt));
  const { artifact } = await client.getArtifact('bundle');
  assert.equal(artifact.id, uploaded.id);
  assert.equal(artifact.digest, `sha256:${uploaded.digest}`);
});

test('downloadArtifact returns identical files', { timeout: 120_000 }, async () => {
  const dir = path.join(scratch, 'download-a');
  const { downloadPath, digestMismatch } = await client.downloadArtifact(uploaded.id, {
    path: dir,
    expectedHash: `sha256:${uploaded.digest}`,
  });
  assert.equal(downloadPath, dir);
  assert.equal(digestMismatch, false);
  assertSameTree(dir);
});

test("another job of the run lists and downloads the first job's artifact", { timeout: 120_000 }, async () => {
  process.env.ACTIONS_RUNTIME_TOKEN = token('job-b');
  try {
    const { artifacts } = await client.listArtifacts();
    assert.deepEqual(artifacts.map(a => a.id), [uploaded.id]);
    const dir = path.join(scratch, 'download-b');
    await client.downloadArtifact(uploaded.id, { path: dir });
    assertSameTree(dir);
  } finally {
    process.env.ACTIONS_RUNTIME_TOKEN = token('job-a');
  }
});

test('deleteArtifact removes it', { timeout: 60_000 }, async () => {
  const { id } = await client.deleteArtifact('bundle');
  assert.equal(id, uploaded.id);
  assert.deepEqual((await client.listArtifacts()).artifacts, []);
  await assert.rejects(client.getArtifact('bundle'), artifactClientModule.ArtifactNotFoundError);
});

test('retentionDays becomes the expiresAt the service keeps', { timeout: 60_000 }, async () => {
  const before = Date.now();
  await client.uploadArtifact('kept-two-days', [path.join(source, 'a.txt')], source, { retentionDays: 2 });
  const all = (await (await fetch(`${process.env.ACTIONS_RESULTS_URL}_artifacts`)).json()).artifacts;
  const entry = all.find(a => a.name === 'kept-two-days');
  assert.ok(entry && entry.expiresAt, JSON.stringify(all));
  const days = (Date.parse(entry.expiresAt) - before) / 86_400_000;
  assert.ok(Math.abs(days - 2) < 0.01, `expires in ${days} days: ${entry.expiresAt}`);
});

test("another job deletes the first job's artifact with its owner's ids", { timeout: 60_000 }, async () => {
  const { id } = await client.uploadArtifact('shared', [path.join(source, 'a.txt')], source);
  process.env.ACTIONS_RUNTIME_TOKEN = token('job-b');
  try {
    const deleted = await client.deleteArtifact('shared');
    assert.equal(deleted.id, id);
    const names = (await client.listArtifacts()).artifacts.map(a => a.name);
    assert.ok(!names.includes('shared'), names.join(', '));
  } finally {
    process.env.ACTIONS_RUNTIME_TOKEN = token('job-a');
  }
});
