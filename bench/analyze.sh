#!/usr/bin/env bash
# Benchmark of `kdelta analyze` on a seed-scale capture pair (design.md §6, issue 4):
# 1.8 M samples on the candidate, 0.3 M on the baseline, stacks 10–40 deep. Prints wall
# time and peak memory of the whole analysis (fold both sides, diff, attribute, report)
# next to inferno-collapse-perf folding the same two inputs, measured in one run.
#
#   bash bench/analyze.sh [CANDIDATE_SAMPLES BASELINE_SAMPLES]
# Needs: cargo, GNU time (/usr/bin/time); installs inferno 0.12.8 into a cache folder.
set -euo pipefail
cd "$(dirname "$0")/.."
NC=${1:-1800000}
NB=${2:-300000}
DATA=${KDELTA_BENCH_DIR:-/tmp/kdelta-bench}/${NB}-${NC}
INFERNO=${INFERNO_ROOT:-/tmp/inferno-bin}
command -v /usr/bin/time >/dev/null || apt-get install -y time
[ -x "$INFERNO/bin/inferno-collapse-perf" ] || cargo install -q inferno --version 0.12.8 --root "$INFERNO"
cargo build -q --release --bin kdelta --example gen_perf_script
if [ ! -s "$DATA/candidate/perf.script" ]; then
  echo "generating $NB + $NC samples into $DATA …"
  ./target/release/examples/gen_perf_script "$DATA" "$NB" "$NC"
fi
du -h "$DATA"/*/perf.script
measure() { # label, command…
  local label=$1; shift
  # kdelta exits 1/2 for a regression/inconclusive verdict: only 3 and up are failures.
  local rc=0
  /usr/bin/time -f "%e %M" -o /tmp/kdelta-bench.time "$@" > /dev/null 2>/tmp/kdelta-bench.err || rc=$?
  if [ "$rc" -ge 3 ]; then cat /tmp/kdelta-bench.err; return 1; fi
  read -r secs kb < <(tail -n 1 /tmp/kdelta-bench.time)
  printf '%-44s %8.2f s %9.0f MiB\n' "$label" "$secs" "$(echo "$kb/1024" | bc -l)"
  echo "$secs" > "/tmp/kdelta-bench.$label"
}
# Warm the page cache so both tools read from memory.
cat "$DATA"/*/perf.script > /dev/null
echo "tool                                          wall      peak RSS"
measure inferno-baseline "$INFERNO/bin/inferno-collapse-perf" "$DATA/baseline/perf.script"
measure inferno-candidate "$INFERNO/bin/inferno-collapse-perf" "$DATA/candidate/perf.script"
rm -rf /tmp/kdelta-bench-out
measure kdelta-analyze ./target/release/kdelta -q analyze --baseline "$DATA/baseline" --candidate "$DATA/candidate" --out /tmp/kdelta-bench-out
inf=$(echo "$(cat /tmp/kdelta-bench.inferno-baseline) + $(cat /tmp/kdelta-bench.inferno-candidate)" | bc -l)
kd=$(cat /tmp/kdelta-bench.kdelta-analyze)
printf 'inferno folding both: %.2f s; kdelta analyze (everything): %.2f s; ratio %.2f (target <= 0.80)\n' "$inf" "$kd" "$(echo "$kd / $inf" | bc -l)"
head -c 300 /tmp/kdelta-bench-out/summary.md; echo
