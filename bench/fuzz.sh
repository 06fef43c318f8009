#!/usr/bin/env bash
# A bounded fuzz run of every parser of user or host data (playbook, the YAML path of
# an error, perf script, .config, facts, facts.json/metrics.json, workload metrics,
# host command output, kernel source): N mutated inputs per target (default one
# million), each under catch_unwind. Prints a table: inputs tried and panics found
# per target. Exit 1 if any input panicked (kept in $TMPDIR/kdelta-fuzz-crashes).
#
#   bash bench/fuzz.sh [N]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cargo run --release --quiet --manifest-path "$here/Cargo.toml" -p kdelta --example fuzz -- "${1:-1000000}"
