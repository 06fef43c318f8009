#!/usr/bin/env bash
# The fault-injection suite (tests/faults.rs), run on its own, printed as a table:
# the fault, kdelta's exit code, how long it took, the first error line, run.json's
# status with its failed or interrupted phases, the files kept under hosts/
# (b: baseline, c: candidate), and what was left behind on this machine.
# The same tests run in CI with the rest of `cargo test`; this only prints the table.
#
#   bash bench/faults.sh   (as root)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
table=$(mktemp)
trap 'rm -f "$table"' EXIT
status=0
KDELTA_FAULT_TABLE="$table" cargo test --release --quiet --manifest-path "$here/Cargo.toml" \
  --test faults -- --test-threads=1 > /dev/null 2>&1 || status=$?
echo "| fault | exit | time | first error line | run.json | kept under hosts/ | left behind |"
echo "|---|---|---|---|---|---|---|"
cat "$table"
echo
echo "$(grep -c "" "$table") rows; suite $([ $status = 0 ] && echo passed || echo "FAILED (cargo test --release --test faults for details)")"
exit $status
