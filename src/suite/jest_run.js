// cluster-action's driver of a Jest suite, run with node in the project's directory, where it
// finds the project's own Jest (`require.resolve('jest')` from there, as `npx jest` would).
// It parses the suite's arguments with Jest's own CLI parser (`buildArgv`), sets what it needs
// on the parsed options and runs Jest in this process (`runCLI`), so that no test id is ever a
// command-line argument. It writes what Jest reported, test by test, as one JSON document:
//
//   {"error": null | "why Jest did not run",
//    "files": [{"file": "path/from/cwd.test.js", "error": null | "why the file failed",
//               "output": "Jest's message for the file", "duration": ms,
//               "tests": [{"titles": ["describe", ..., "test"], "status": "passed",
//                          "duration": ms, "failure": "Jest's failure message"}]}]}
//
//   node cluster_action_jest.js list OUT [ARGS...]
//     Loads every test file without running a test (a name pattern nothing matches: Jest
//     reports each test it would have run as pending) and writes the tests ARGS select.
//   node cluster_action_jest.js batch IDS OUT [ARGS...]
//     Runs the tests of IDS, one JSON array a line: `[file]` (the whole file) or
//     `[file, name]` (one test, its titles joined by " › "), one Jest worker unless ARGS say,
//     the files in the order of IDS (the plan's: longest first) unless ARGS choose a
//     `--testSequencer`: Jest loads this file as the sequencer then.
//   node cluster_action_jest.js serve [ARGS...]
//     A warm session (node_session_server.cjs, shipped beside this file, serves it): one Node
//     process with Jest loaded that runs the batches it is handed as `batch` runs them, so
//     that a batch costs its tests and not a start of Node, a load of Jest and its
//     transformer and a cold transform cache.
'use strict';

const fs = require('node:fs');
const path = require('node:path');

// The words the runner looks for when the project has no Jest.
const NO_JEST = 'cluster-action: no `jest` package';

// Jest's separator of titles in a test's name, as its reporters print it.
const SEPARATOR = ' › ';

// The session's loop, shipped beside this file.
const SESSION_SERVER = 'node_session_server.cjs';

// A name pattern no test matches: `(?!)` fails everywhere.
const NOTHING = '(?!)';

// `text` without terminal colour codes.
function plain(text) {
  return String(text ?? '').replace(/\u001b\[[0-9;]*m/g, '');
}

// `text` as a regular expression matching it literally.
function escape(text) {
  return text.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

// The pattern matching exactly the test named `name` (titles joined by SEPARATOR): Jest
// matches its titles joined by spaces, and a title may itself hold SEPARATOR.
function namePattern(name) {
  return name.split(SEPARATOR).map(escape).join(`(?: |${escape(SEPARATOR)})`);
}

// The project's Jest, or exit 3 saying that it is missing.
function projectJest() {
  try {
    return require(require.resolve('jest', {paths: [process.cwd()]}));
  } catch (error) {
    process.stderr.write(
      `${NO_JEST} found from ${process.cwd()}: ${plain(error.message).split('\n')[0]}\n`,
    );
    process.exit(3);
  }
}

// A failure message as Jest's reporters show it: its stack without the frames of Jest,
// node and node_modules, paths relative to the working directory.
function failure(message) {
  const internal = /^\s+at .*(node_modules|node:internal|<anonymous>)/;
  return plain(message)
    .split('\n')
    .filter(line => !internal.test(line))
    .join('\n')
    .split(process.cwd() + path.sep)
    .join('');
}

// A test file's path relative to the working directory, with `/`.
function relative(file) {
  return path.relative(process.cwd(), file).split(path.sep).join('/');
}

// One test's result as the document has it.
function testResult(test) {
  return {
    titles: [...test.ancestorTitles, test.title],
    status: test.status,
    duration: test.duration ?? 0,
    failure: test.failureMessages.map(failure).join('\n'),
  };
}

// Jest's results as the document described above, paths relative to the working directory.
function report(results, keep) {
  const files = results.testResults.map(file => ({
    file: relative(file.testFilePath),
    error: file.testExecError ? plain(file.testExecError.message) : null,
    output: plain(file.failureMessage),
    duration: file.perfStats ? file.perfStats.runtime : 0,
    tests: file.testResults.filter(keep).map(testResult),
  }));
  return {error: null, files};
}

// The batch's files and, unless it runs them whole, the name pattern of its tests.
function batchTests(idsFile) {
  const lines = fs.readFileSync(idsFile, 'utf8').split('\n').filter(line => line !== '');
  const ids = lines.map(line => JSON.parse(line));
  const files = [...new Set(ids.map(([file]) => file))];
  const names = ids.filter(id => id.length > 1).map(([, name]) => namePattern(name));
  const pattern = names.length > 0 ? `^(?:${names.join('|')})$` : null;
  return {files, pattern};
}

// The reporters the project's configuration and the suite's arguments choose, so that adding
// ours keeps them: read with the project's jest-config (a dependency of jest-cli).
async function projectReporters(argv, projects) {
  const from = dir => ({paths: [dir]});
  const jestDir = path.dirname(require.resolve('jest/package.json', from(process.cwd())));
  const cliDir = path.dirname(require.resolve('jest-cli/package.json', from(jestDir)));
  const config = require(require.resolve('jest-config', from(cliDir)));
  const {globalConfig} = await config.readConfigs({...argv}, projects);
  return globalConfig.reporters ?? ['default'];
}

// Options that would keep Jest from running once and reporting (watch mode, a list of files
// instead of results), dropped everywhere.
const NOT_A_RUN = ['watch', 'watchAll', 'listTests'];

// Options that select files, dropped in batches: the listing applied them, and a batch runs
// exactly its files (a shard of them, or the files a git change touches in a job directory
// without git, would run fewer).
const SELECTING = [
  'shard',
  'onlyChanged',
  'changedSince',
  'lastCommit',
  'onlyFailures',
  'findRelatedTests',
  'testPathPatterns',
  'testPathIgnorePatterns',
];

// The batch's files, in the plan's order (longest first), for the sequencer below.
const ORDER = Symbol.for('cluster-action.jest.order');

// What a batch adds to Jest, as Jest loads this file again: as its test sequencer
// (`testSequencer`), the batch's files run in the plan's order, not by the sizes and past
// durations Jest's own keeps; as one of its reporters (with the option `out`), each test's
// result is appended to the report file as it finishes, a JSON object (the document's test,
// with its `file`) a line, so that a batch killed before Jest ends keeps what it finished. The
// driver replaces those lines with the whole document when Jest ends.
class Batch {
  constructor(_config, options) {
    this.out = options ? options.out : null;
  }

  sort(tests) {
    const order = globalThis[ORDER] ?? [];
    const rank = test => {
      const at = order.indexOf(relative(test.path));
      return at === -1 ? order.length : at;
    };
    return [...tests].sort((a, b) => rank(a) - rank(b));
  }

  onTestCaseResult(test, result) {
    if (this.out) {
      const line = {file: relative(test.path), ...testResult(result)};
      fs.appendFileSync(this.out, `${JSON.stringify(line)}\n`);
    }
  }

  getLastError() {}

  cacheResults() {}

  allFailedTests(tests) {
    return tests;
  }
}

// Runs Jest once, as `mode` (`list` or `batch`) says, with the suite's arguments `args`; writes
// the document to `out` and returns the exit code.
async function run(jest, mode, idsFile, out, args) {
  let code = 1;
  try {
    const argv = await jest.buildArgv(args);
    for (const key of NOT_A_RUN) {
      delete argv[key];
    }
    let keep = () => true;
    if (mode === 'list') {
      const chosen = argv.testNamePattern ? new RegExp(argv.testNamePattern, 'i') : null;
      keep = test => !chosen || chosen.test([...test.ancestorTitles, test.title].join(' '));
      argv.testNamePattern = NOTHING;
      argv.passWithNoTests = true;
      argv.coverage = false;
      argv.collectCoverage = false;
    } else {
      for (const key of SELECTING) {
        delete argv[key];
      }
      const {files, pattern} = batchTests(idsFile);
      argv._ = files;
      argv.runTestsByPath = true;
      if (argv.testSequencer === undefined) {
        globalThis[ORDER] = files;
        argv.testSequencer = __filename;
      }
      if (pattern !== null) {
        argv.testNamePattern = pattern;
      }
      if (argv.maxWorkers === undefined && !argv.runInBand) {
        argv.maxWorkers = 1;
      }
    }
    const projects = argv.projects && argv.projects.length > 0 ? argv.projects : [process.cwd()];
    if (mode === 'batch') {
      fs.writeFileSync(out, '');
      argv.reporters = [...(await projectReporters(argv, projects)), [__filename, {out}]];
    }
    const {results} = await jest.runCLI(argv, projects);
    fs.writeFileSync(out, JSON.stringify(report(results, keep)));
    code = mode === 'list' || results.success ? 0 : 1;
  } catch (error) {
    const why = plain(error && error.stack ? error.stack : error);
    process.stderr.write(`${why}\n`);
    fs.writeFileSync(out, JSON.stringify({error: why, files: []}));
  }
  return code;
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  const idsFile = mode === 'batch' ? rest.shift() : null;
  const out = mode === 'serve' ? null : path.resolve(rest.shift());
  const jest = projectJest();
  if (mode === 'serve') {
    const {serve} = require(path.join(__dirname, SESSION_SERVER));
    await serve(request => run(jest, 'batch', request.ids, request.out, rest));
    return;
  }
  process.exitCode = await run(jest, mode, idsFile, out, rest);
}

// Jest requires this file again as a sequencer and a reporter: the same module, its exports
// the class.
module.exports = Batch;
if (require.main === module) {
  main();
}
