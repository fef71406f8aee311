#!/usr/bin/env bash
# Smoke-test a built bundle: print its version, then open the main window
# offscreen and let it quit by itself. Needs no Python, so it also checks a
# bundle copied to another machine.
#
# Usage: packaging/test_bundle.sh [BUNDLE_DIR]   (default: dist/gan-workbench)
# Environment: SMOKE_TIMEOUT_S, seconds before the window run counts as hung
# (default 180, because the first start of a bundle with CUDA torch reads
# several GB from disk).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE=${1:-$ROOT/dist/gan-workbench}
EXE="$BUNDLE/gan-workbench"
TIMEOUT_S=${SMOKE_TIMEOUT_S:-180}

if [[ ! -x "$EXE" ]]; then
    echo "FAIL: $EXE not found or not executable. Build it with 'make package'." >&2
    exit 1
fi

version=$("$EXE" --version)
echo "version: $version"
if [[ "$version" != gan-workbench\ * ]]; then
    echo "FAIL: expected --version to print 'gan-workbench <version>', got '$version'" >&2
    exit 1
fi

# The main window honours GAN_WORKBENCH_SMOKE_EXIT_MS: it opens, waits that
# many milliseconds and quits with status 0.
started=$(date +%s)
status=0
QT_QPA_PLATFORM=offscreen GAN_WORKBENCH_SMOKE_EXIT_MS=1000 \
    timeout "$TIMEOUT_S" "$EXE" || status=$?
elapsed=$(( $(date +%s) - started ))

if [[ $status -eq 124 ]]; then
    echo "FAIL: the window did not quit within ${TIMEOUT_S} s" >&2
    exit 1
fi
if [[ $status -ne 0 ]]; then
    echo "FAIL: the window run exited with status $status after ${elapsed} s" >&2
    exit 1
fi
echo "PASS: window opened and quit with status 0 in ${elapsed} s"
