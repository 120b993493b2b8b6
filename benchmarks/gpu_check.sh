#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py; the README's "On a GPU"), with this tree's .venv where there is
# one, else $PYTHON or python3: a GPU machine's own Python that holds its CUDA torch.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
if [[ -z "${PYTHON:-}" && -x "$root/.venv/bin/python" ]]; then
    python="$root/.venv/bin/python"
fi
exec "$python" "$root/benchmarks/gpu_check.py" "$@"
