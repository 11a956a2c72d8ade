# The test frameworks the tests (scripts/test.sh) and the benchmarks (scripts/bench.sh) run,
# installed into the checkout only when missing: pytest (and pytest-xdist) from PyPI into the virtualenv
# .cache/venv, go (Debian's golang-go, with apt-get), cargo-nextest (`cargo install --locked`),
# jest, vitest and @playwright/test from npm into tests/frameworks/node_modules (npm ci, pinned by
# its lock file) and Debian's ruby, ruby-rspec, ruby-minitest and chromium (with apt-get; the
# Playwright fixtures open pages in Debian's chromium, as Playwright's own browser download is
# not reachable everywhere). Sourced from the checkout's root by those scripts: it defines, runs nothing.
#   source scripts/lib/tools.sh; install_pytest; export_test_tools

TOOLS_VENV=.cache/venv
PYTEST_VERSION=9.2.0
PYTEST_XDIST_VERSION=3.8.0

# pytest $PYTEST_VERSION in $TOOLS_VENV (made first if need be).
install_pytest() {
  [ -x "$TOOLS_VENV/bin/python" ] || python3 -m venv "$TOOLS_VENV"
  if ! "$TOOLS_VENV/bin/python" -m pytest --version 2>/dev/null | grep -q "$PYTEST_VERSION"; then
    "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "pytest==$PYTEST_VERSION"
  fi
}

# pytest-xdist $PYTEST_XDIST_VERSION in $TOOLS_VENV beside pytest (the benchmarks' heavy-tailed
# suite compares a cluster with `pytest -n N`).
install_pytest_xdist() {
  install_pytest
  if ! "$TOOLS_VENV/bin/python" -m pip show pytest-xdist 2>/dev/null | grep -q "^Version: $PYTEST_XDIST_VERSION$"; then
    "$TOOLS_VENV/bin/pip" install --quiet --disable-pip-version-check "pytest-xdist==$PYTEST_XDIST_VERSION"
  fi
}

# go and cargo-nextest, unless they are on PATH.
install_go_and_nextest() {
  if ! command -v go >/dev/null; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go
  fi
  if ! command -v cargo-nextest >/dev/null; then
    cargo install --locked cargo-nextest
  fi
}

# jest, vitest and @playwright/test in tests/frameworks/node_modules, as its lock file pins them.
install_js_frameworks() {
  local dir=tests/frameworks
  if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
  fi
}

# Debian's ruby, ruby-rspec, ruby-minitest and chromium, those missing (apt-get update first).
install_debian_frameworks() {
  local missing=()
  command -v ruby >/dev/null || missing+=(ruby)
  command -v rspec >/dev/null || missing+=(ruby-rspec)
  ruby -e 'require "minitest"' 2>/dev/null || missing+=(ruby-minitest)
  command -v chromium >/dev/null || missing+=(chromium)
  if [ "${#missing[@]}" -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
}

# Runs its arguments as root (through sudo unless this is root).
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Exports CLUSTER_TEST_TOOLS: the directories where tests/suite*.rs and the benchmarks' suite
# scenario look first (then on PATH) for python (with pytest), go and cargo-nextest; and
# CLUSTER_TEST_NODE_MODULES, the node_modules holding jest, vitest and @playwright/test.
export_test_tools() {
  export CLUSTER_TEST_TOOLS="$PWD/$TOOLS_VENV/bin:${CARGO_HOME:-$HOME/.cargo}/bin"
  export CLUSTER_TEST_NODE_MODULES="$PWD/tests/frameworks/node_modules"
}
