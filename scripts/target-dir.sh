#!/usr/bin/env bash
# Prints cargo's target directory for this checkout as an absolute path: CARGO_TARGET_DIR,
# build.target-dir from a cargo config, or target/ (what `cargo metadata` says), so scripts
# find the binaries wherever cargo puts them.
#   scripts/target-dir.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
