#!/usr/bin/env bash
# Build the one-folder bundle dist/gan-workbench/ with PyInstaller (`make package`).
#
# Environment:
#   PYTHON                     interpreter whose packages go into the bundle
#                              (default: .venv/bin/python)
#   GAN_WORKBENCH_CPU_BUNDLE=1 build from build/cpu-venv/, created on first
#                              use with a CPU-only torch, for a bundle without
#                              the CUDA libraries
#   GAN_WORKBENCH_TORCH_INDEX  package index of that CPU-only torch
#                              (default: https://download.pytorch.org/whl/cpu)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUNDLE="$ROOT/dist/gan-workbench"

create_cpu_env() {
    local env_dir=$1
    local index=${GAN_WORKBENCH_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
    echo "creating $env_dir with torch from $index"
    python3 -m venv "$env_dir"
    "$env_dir/bin/pip" install --upgrade pip
    "$env_dir/bin/pip" install --index-url "$index" torch torchvision
    "$env_dir/bin/pip" install -e "$ROOT"
}

if [[ "${GAN_WORKBENCH_CPU_BUNDLE:-0}" == 1 ]]; then
    CPU_ENV="$ROOT/build/cpu-venv"
    [[ -x "$CPU_ENV/bin/python" ]] || create_cpu_env "$CPU_ENV"
    PYTHON=${PYTHON:-$CPU_ENV/bin/python}
fi
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}

# 6.11 is the first release that honours the torch hook's symlink suppression.
if ! "$PYTHON" -c "import PyInstaller, sys; sys.exit(tuple(map(int, PyInstaller.__version__.split('.')[:2])) < (6, 11))" 2>/dev/null; then
    "$PYTHON" -m pip install "pyinstaller>=6.11"
fi

started=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
    --distpath "$ROOT/dist" --workpath "$ROOT/build/pyinstaller" \
    "$ROOT/packaging/gan_workbench.spec"
elapsed=$(( $(date +%s) - started ))

echo "built $BUNDLE in ${elapsed} s; size $(du -sh "$BUNDLE" | cut -f1)"
echo "largest parts:"
du -s "$BUNDLE"/_internal/* | sort -rn | head -n 5 | awk '{printf "  %6d MiB  %s\n", $1 / 1024, $2}'
