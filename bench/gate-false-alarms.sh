#!/usr/bin/env bash
# How often does the gate misjudge two identical lab hosts?
# Runs `kdelta gate` N times on the demo playbook without the candidate's nftables
# ruleset (so both hosts are the same) and prints how many runs ended pass,
# inconclusive or regression (a false alarm), for one limit and repeat count.
#
#   bash bench/gate-false-alarms.sh [N=10] [LIMIT=25%] [REPEAT=6] [DURATION=2]   (as root)
set -euo pipefail
N=${1:-10}; LIMIT=${2:-25%}; REPEAT=${3:-6}; DURATION=${4:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
kd="$here/target/release/kdelta"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$here/playbooks/files" "$work/files"
# The demo playbook, minus the candidate's setup (the nftables ruleset).
awk '/^    setup:/{skip=1; next} /^vars:/{skip=0} !skip' "$here/playbooks/lab-tcp.yaml" \
  | sed -e "s/duration: 5/duration: $DURATION/" -e "s/max_regression: 5%/max_regression: $LIMIT/" > "$work/same.yaml"
declare -A count=([pass]=0 [improvement]=0 [inconclusive]=0 [regression]=0 [failed]=0)
start=$(date +%s)
for i in $(seq 1 "$N"); do
  set +e
  "$kd" -q gate "$work/same.yaml" --repeat "$REPEAT" --out "$work/out" > "$work/last.txt" 2>&1
  rc=$?
  set -e
  case $rc in
    0) s=$(head -c 11 "$work/last.txt"); [[ $s == improvement ]] && count[improvement]=$((count[improvement]+1)) || count[pass]=$((count[pass]+1)) ;;
    1) count[regression]=$((count[regression]+1)) ;;
    2) count[inconclusive]=$((count[inconclusive]+1)) ;;
    *) count[failed]=$((count[failed]+1)) ;;
  esac
  echo "run $i: exit $rc: $(head -1 "$work/last.txt" | cut -c1-150)"
done
secs=$(( $(date +%s) - start ))
echo
echo "identical lab hosts, limit $LIMIT, $REPEAT repeats x ${DURATION}s, $N runs in ${secs}s:"
for k in pass improvement inconclusive regression failed; do
  printf '  %-13s %3d  (%d%%)\n' "$k" "${count[$k]}" $(( 100 * count[$k] / N ))
done
echo "false-alarm rate (regression on identical hosts): ${count[regression]}/$N"
