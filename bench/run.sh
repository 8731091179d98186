#!/usr/bin/env bash
# Builds tether and tether-bench in release mode and runs the benchmark (see bench/README.md).
# Arguments go to tether-bench (e.g. `bench/run.sh --quick`, `bench/run.sh --backend sqlite`).
# The Markdown report is printed and saved under bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p tether -p tether-bench --bins

# Default backend: both if a PostgreSQL answers at 127.0.0.1:5432, else SQLite only.
backend=()
if [[ " $* " != *" --backend "* && " $* " != *" --backend="* ]]; then
  if command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; then
    backend=(--backend both)
  else
    echo "run.sh: no PostgreSQL at 127.0.0.1:5432: benchmarking SQLite only" >&2
    backend=(--backend sqlite)
  fi
fi

mkdir -p bench/out
out="bench/out/results-$(date -u +%Y%m%dT%H%M%SZ).md"
"$target_dir/release/tether-bench" --tether "$target_dir/release/tether" "${backend[@]}" "$@" | tee "$out"
echo "run.sh: report saved to $out" >&2
