// cluster-action's helper for Vitest suites, run with the user's Node in the directory of their
// checkout and their own vitest (resolved from there, as `npx vitest` would find it).
//
//   node vitest_helper.mjs list TESTS -- ARGS...
//     Collects the tests ARGS select (the arguments of `vitest run`) without running them and
//     writes one JSON object a line to TESTS: the test's id, its project, its file (relative
//     to this directory), its full name, Vitest's own ids of the tests that id stands for and
//     its names joined by spaces (what Vitest matches a name pattern against).
//     Unlike `vitest list`, tests skipped by `.skip`, `.todo` or a skipped describe are listed
//     (Vitest reports them); those a `-t` pattern leaves out are not.
//   node vitest_helper.mjs run IDS TESTS REPORT -- ARGS...
//     Runs exactly the tests whose ids are the lines of IDS (TESTS being what `list` wrote):
//     each file with Vitest's own ids of those tests, never a name pattern that could match a
//     neighbour (Vitest 3 has no such ids: there, an anchored pattern of the exact names). One
//     JSON object a line goes to REPORT as each test that ran ends (asked for or not), and
//     `{"end":true}` when the run ended: a batch killed part-way leaves the lines of the tests
//     that finished.
//   node vitest_helper.mjs serve TESTS -- ARGS...
//     A warm session (node_session_server.cjs, shipped beside this file, serves it): Vitest
//     started once, its Vite server and what it transformed kept, running each batch it is
//     handed as `run` runs one, so that a batch costs its tests and not Vitest's start.
//
// A test's id is what `vitest list` prints for it: `[project] file > describe > test`, the
// project part only when the project has a name, the file relative to the project's root.

import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// The session's loop, shipped beside this file.
const SESSION_SERVER = "node_session_server.cjs";

// The exit code when vitest cannot be found from this directory.
const NOT_INSTALLED = 3;

async function vitestNode() {
  const require = createRequire(join(process.cwd(), "package.json"));
  let path;
  try {
    path = require.resolve("vitest/node");
  } catch (error) {
    console.error(`cluster-action: vitest is not installed here (${error.message.split("\n")[0]})`);
    process.exit(NOT_INSTALLED);
  }
  return import(pathToFileURL(path).href);
}

// The id of a test (a TestCase of Vitest's reporter API), as `vitest list` prints it.
function idOf(test) {
  const name = `${test.module.task.name} > ${test.fullName}`;
  return test.project.name ? `[${test.project.name}] ${name}` : name;
}

// Vitest started on the suite's arguments (those of `vitest run`) with `overrides`: the
// file filters the arguments hold and the instance.
async function start(node, args, overrides) {
  const { filter, options } = node.parseCLI(["vitest", "run", ...args]);
  const config = { ...options, watch: false, run: true, ...overrides(options) };
  const vitest = await node.createVitest("test", config);
  return { filter, vitest };
}

async function list(out, args) {
  const node = await vitestNode();
  const { filter, vitest } = await start(node, args, () => ({ reporters: [] }));
  const { testModules, unhandledErrors } = await vitest.collect(filter);
  const errors = [...unhandledErrors];
  const tests = new Map();
  for (const module of testModules) {
    errors.push(...module.errors());
    for (const suite of module.children.allSuites()) errors.push(...suite.errors());
    for (const test of module.children.allTests()) {
      const pattern = vitest.config.testNamePattern;
      if (test.result().state === "skipped" && pattern && !pattern.test(spaced(test))) continue;
      const id = idOf(test);
      const known = tests.get(id);
      if (known) {
        known.ids.push(test.id);
        continue;
      }
      tests.set(id, {
        id,
        project: test.project.name,
        file: relative(process.cwd(), test.module.moduleId),
        name: test.fullName,
        ids: [test.id],
        spaced: spaced(test),
      });
    }
  }
  await vitest.close();
  if (errors.length) {
    for (const error of errors) console.error(error.stack || error.message || String(error));
    console.error(`cluster-action: vitest could not collect the tests (${errors.length} errors)`);
    process.exit(1);
  }
  writeFileSync(out, [...tests.values()].map((t) => JSON.stringify(t) + "\n").join(""));
  process.exit(0);
}

// A test's names joined by spaces: what Vitest matches `-t` against.
function spaced(test) {
  const names = [test.name];
  for (let suite = test.parent; suite.type === "suite"; suite = suite.parent) names.unshift(suite.name);
  return names.join(" ");
}

// What the report says of a test that failed: the first error's message, and every error's
// stack and diff with the test's console output.
function failure(errors, logs) {
  const first = errors[0] || {};
  const message = first.message ? `${first.name || "Error"}: ${first.message}` : "failed";
  const detail = errors.map((e) => [own(e.stack || e.message), e.diff].filter(Boolean).join("\n"));
  const output = [...detail, ...logs].join("\n").replace(ANSI, "");
  return { message: message.split("\n")[0].replace(ANSI, ""), output };
}

// Terminal colour codes, which reports do not keep.
const ANSI = /\u001b\[[0-9;]*m/g;

// A stack without the frames of Vitest and Node themselves.
function own(stack) {
  const frame = (line) => /^\s+at /.test(line);
  const theirs = (line) => frame(line) && /node_modules|node:internal|<anonymous>/.test(line);
  return stack.split("\n").filter((line) => !theirs(line)).join("\n");
}

// The key of a project's file.
function specKey(project, file) {
  return JSON.stringify([project || "", file]);
}

// One batch: the tests of IDS (found in TESTS) and what its report has got so far.
function batchOf(idsFile, testsFile, report) {
  const asked = new Set(readFileSync(idsFile, "utf8").split("\n").slice(0, -1));
  const wanted = new Map();
  for (const line of readFileSync(testsFile, "utf8").split("\n")) {
    if (!line) continue;
    const test = JSON.parse(line);
    if (asked.has(test.id)) wanted.set(test.id, test);
  }
  writeFileSync(report, "");
  return {
    wanted,
    write: (entry) => appendFileSync(report, JSON.stringify(entry) + "\n"),
    written: new Set(),
    logs: new Map(),
    // What Vitest was asked to run: its own ids of tests, or (Vitest 3) files whose tests are
    // chosen by name.
    chosen: new Set(),
    byNameFiles: new Set(),
  };
}

// The reporter that writes the report of the batch `current()` returns (none: what Vitest
// reports between batches is dropped).
function recorderOf(current) {
  return {
    onUserConsoleLog(log) {
      const batch = current();
      if (!batch || !log.taskId) return;
      const kept = batch.logs.get(log.taskId) || [];
      kept.push(log.content.replace(/\n$/, ""));
      batch.logs.set(log.taskId, kept);
    },
    onTestCaseResult(test) {
      const batch = current();
      if (!batch) return;
      const id = idOf(test);
      const result = test.result();
      // Vitest skips the tests it was not asked for. A skipped test is reported only when it
      // was asked for (by Vitest's id of it: a file that declares other tests here than where
      // it was listed leaves an asked test unreported, an error); one that ran is reported
      // whether asked for or not (the runner ignores the others), to show what the batch ran.
      const file = relative(process.cwd(), test.module.moduleId);
      const byName = batch.byNameFiles.has(specKey(test.project.name, file)) && batch.wanted.has(id);
      if (result.state === "skipped" && !batch.chosen.has(test.id) && !byName) return;
      const ms = Math.round(test.diagnostic()?.duration ?? 0);
      const output = batch.logs.get(test.id) || [];
      if (result.state === "failed") {
        batch.write({ id, status: "failed", ms, ...failure(result.errors || [], output) });
      } else if (result.state === "skipped") {
        batch.write({ id, status: "skipped", ms, message: result.note || "skipped", output: "" });
      } else {
        batch.write({ id, status: "passed", ms, output: output.join("\n") });
      }
      batch.written.add(id);
    },
    onTestModuleEnd(module) {
      const batch = current();
      if (!batch) return;
      // A file that failed to load (or a hook of it that failed): its asked tests that did
      // not report are errors with Vitest's words.
      const errors = module.errors();
      if (!errors.length) return;
      const file = relative(process.cwd(), module.moduleId);
      for (const test of batch.wanted.values()) {
        if (batch.written.has(test.id) || test.file !== file) continue;
        if ((test.project || "") !== (module.project.name || "")) continue;
        batch.write({ id: test.id, status: "error", ms: 0, ...failure(errors, []) });
        batch.written.add(test.id);
      }
    },
  };
}

// Vitest ready to run batches, with `recorder` among the reporters the suite's arguments
// choose, and one Vitest worker unless they choose.
async function runner(args, recorder) {
  const node = await vitestNode();
  const { vitest } = await start(node, args, (options) => {
    const own = [].concat(options.reporter ?? options.reporters ?? ["default"]);
    const slot = options.maxWorkers === undefined && options.fileParallelism === undefined;
    return { reporters: [...own, recorder], reporter: undefined, ...(slot ? { maxWorkers: 1 } : {}) };
  });
  // `init` before Vitest 3.2, deprecated since.
  await (vitest.standalone ? vitest.standalone() : vitest.init());
  return vitest;
}

// Runs `batch`'s tests with `vitest` and ends its report.
async function runBatch(vitest, batch) {
  const specs = new Map();
  for (const test of batch.wanted.values()) {
    const key = specKey(test.project, test.file);
    const spec = specs.get(key) || { project: test.project || "", file: test.file, ids: [], names: [] };
    spec.ids.push(...test.ids);
    spec.names.push(test.spaced);
    specs.set(key, spec);
  }
  const specifications = [];
  const byName = [];
  for (const spec of specs.values()) {
    const project = vitest.projects.find((p) => (p.name || "") === spec.project);
    if (!project) continue;
    const file = resolve(spec.file);
    const exact = project.createSpecification(file, { testIds: spec.ids });
    if (Array.isArray(exact.testIds)) {
      specifications.push(exact);
      for (const id of spec.ids) batch.chosen.add(id);
    } else {
      // Vitest 3 selects tests within a file by line or by name alone.
      specifications.push(project.createSpecification(file));
      byName.push(...spec.names);
      batch.byNameFiles.add(specKey(spec.project, spec.file));
    }
  }
  if (byName.length) {
    const escaped = byName.map((name) => name.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&"));
    vitest.setGlobalTestNamePattern(new RegExp(`^(?:${escaped.join("|")})$`));
  } else if (vitest.resetGlobalTestNamePattern) {
    // A session's earlier batch may have set one.
    vitest.resetGlobalTestNamePattern();
  }
  if (specifications.length) await vitest.runTestSpecifications(specifications, false);
  batch.write({ end: true });
}

async function run(idsFile, testsFile, report, args) {
  const batch = batchOf(idsFile, testsFile, report);
  const vitest = await runner(args, recorderOf(() => batch));
  await runBatch(vitest, batch);
  await vitest.close();
  process.exit(0);
}

// A warm session: Vitest stays started (its config, its Vite server and what it transformed)
// across the batches node_session_server.cjs hands it.
async function serve(testsFile, args) {
  let batch = null;
  const vitest = await runner(args, recorderOf(() => batch));
  const require = createRequire(import.meta.url);
  const { serve: loop } = require(join(dirname(fileURLToPath(import.meta.url)), SESSION_SERVER));
  await loop(async (request) => {
    batch = batchOf(request.ids, testsFile, request.out);
    try {
      await runBatch(vitest, batch);
    } finally {
      batch = null;
    }
    return 0;
  });
}

const [command, ...rest] = process.argv.slice(2);
const dashes = rest.indexOf("--");
const [positional, args] = dashes < 0 ? [rest, []] : [rest.slice(0, dashes), rest.slice(dashes + 1)];
if (command === "list") await list(positional[0], args);
else if (command === "run") await run(positional[0], positional[1], positional[2], args);
else if (command === "serve") await serve(resolve(positional[0]), args);
else {
  console.error(`cluster-action: unknown command ${command}`);
  process.exit(2);
}
