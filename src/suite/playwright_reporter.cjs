'use strict';
// cluster-action's Playwright reporter, written beside a suite's shipped files by the binary:
// one JSON line per test to the file CLUSTER_ACTION_PLAYWRIGHT_OUT names, as `--list` lists
// it (with CLUSTER_ACTION_PLAYWRIGHT_LIST=1) or as it ends, and a last line when the run
// ends, so that a report cut short by a killed batch says so. A test is named by its
// project, its file relative to the configuration's rootDir and its titles (describes, then
// its own): what `--test-list` reads.
const fs = require('fs');
const path = require('path');

const ANSI = /\u001b\[[0-9;]*[A-Za-z]/g;

/** The test's project, file and titles (an untitled describe is not a title). */
function identify(test, rootDir) {
  const project = test.parent.project();
  return {
    project: project ? project.name : '',
    file: path.relative(rootDir, test.location.file).split(path.sep).join('/'),
    titles: test.titlePath().slice(3),
  };
}

class ClusterActionReporter {
  constructor() {
    this.out = path.resolve(process.env.CLUSTER_ACTION_PLAYWRIGHT_OUT);
    this.listing = process.env.CLUSTER_ACTION_PLAYWRIGHT_LIST === '1';
    fs.writeFileSync(this.out, '');
  }

  printsToStdio() {
    return !this.listing;
  }

  write(record) {
    fs.appendFileSync(this.out, JSON.stringify(record) + '\n');
  }

  onBegin(config, suite) {
    this.rootDir = config.rootDir;
    if (this.listing) {
      // One write for the whole listing, however many tests.
      const line = (test) => JSON.stringify({ test: identify(test, this.rootDir) }) + '\n';
      fs.appendFileSync(this.out, suite.allTests().map(line).join(''));
    }
  }

  onTestEnd(test, result) {
    const id = identify(test, this.rootDir);
    const errors = result.errors.map((e) =>
      String(e.stack || e.message || e.value || 'error').replace(ANSI, ''),
    );
    const message = errors.length ? errors[0].split('\n').find((l) => l.trim()) : undefined;
    const output = errors.concat(result.stdout.map(String), result.stderr.map(String)).join('\n');
    this.write({
      test: id,
      status: result.status,
      expected: test.expectedStatus,
      duration: result.duration,
      message,
      output,
    });
    const shown = (id.project ? [`[${id.project}]`] : []).concat(id.file, id.titles).join(' › ');
    process.stdout.write(`${result.status} ${shown} (${result.duration}ms)\n`);
    if (message) process.stdout.write(`    ${message}\n`);
  }

  onEnd(result) {
    this.write({ end: result.status });
  }
}

module.exports = ClusterActionReporter;
