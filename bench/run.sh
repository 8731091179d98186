#!/usr/bin/env bash
# Builds tether and tether-bench in release mode and runs the benchmark (see bench/README.md).
# Arguments go to tether-bench (e.g. `bench/run.sh --quick`, `bench/run.sh --backend sqlite`).
# The Markdown report is printed and saved under bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p tether -p tether-bench --bins

# Default backend: with --quick, SQLite only (CI: no PostgreSQL server is started unless
# --backend asks for one). Otherwise both when PostgreSQL can be had: --pg-url, or the
# machine's PostgreSQL binaries for the bench's private server (initdb in `pg_config --bindir`).
backend=()
if [[ " $* " != *" --backend "* && " $* " != *" --backend="* ]]; then
  if [[ " $* " == *" --quick "* ]]; then
    backend=(--backend sqlite)
  elif [[ " $* " == *" --pg-url"* ]] ||
    { command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/initdb" ]]; }; then
    backend=(--backend both)
  else
    echo "run.sh: no PostgreSQL binaries (pg_config --bindir) and no --pg-url: benchmarking SQLite only" >&2
    backend=(--backend sqlite)
  fi
fi

mkdir -p bench/out
out="bench/out/results-$(date -u +%Y%m%dT%H%M%SZ).md"
"$target_dir/release/tether-bench" --tether "$target_dir/release/tether" "${backend[@]}" "$@" | tee "$out"
echo "run.sh: report saved to $out" >&2
