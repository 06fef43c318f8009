#!/usr/bin/env bash
# Calibration of the decision procedure (issue 19): how often each verdict comes out
#   - on A/A pairs, where both hosts are the same (any regression or improvement is a
#     false alarm): identical lab hosts, and identical QEMU guests (one kernel booted
#     twice);
#   - on A/B pairs with a known effect (power): the README's KASAN demo, and a lab
#     candidate behind a 200-rule nftables ruleset (a small effect).
# Each case runs `kdelta run` N times with the playbook's own limit; prints the
# counts per verdict and the decided-after distribution for `repeat: auto`.
#
#   bash bench/calibrate.sh (as root) [CASES=lab-aa,qemu-aa,kasan,nft200] [N=20] [REPEAT=2]
#     REPEAT: pairs per run, or `auto` (adaptive: from 2 pairs up to capture.max_repeat)
set -euo pipefail
CASES=${1:-lab-aa,qemu-aa,kasan,nft200}; N=${2:-20}; REPEAT=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
kd="$here/target/release/kdelta"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$here/playbooks/files" "$work/files"
ln -s "$here/playbooks/kernel" "$work/kernel"

repeat_lines() {
  if [[ $REPEAT == auto ]]; then echo "  repeat: auto"; echo "  max_repeat: 8"; else echo "  repeat: $REPEAT"; fi
}

# The lab demo with the candidate's ruleset of $1 rules (0: none, identical hosts).
lab_playbook() {
  local rules=$1 out=$2
  if [[ $rules == 0 ]]; then
    awk '/^    setup:/{skip=1; next} /^vars:/{skip=0} !skip' "$here/playbooks/lab-tcp.yaml"
  else
    sed "s/ruleset.sh 2000/ruleset.sh $rules/" "$here/playbooks/lab-tcp.yaml"
  fi | sed -e 's/duration: 5/duration: 3/' -e '/^  repeat:/d' > "$out"
  # `repeat` goes under capture:
  python3 - "$out" "$(repeat_lines)" <<'EOF'
import sys
p, lines = sys.argv[1], sys.argv[2]
t = open(p).read().replace("capture:\n", "capture:\n" + lines + "\n", 1)
open(p, "w").write(t)
EOF
}

# The KASAN demo, or (aa) the baseline's kernel on both sides.
qemu_playbook() {
  local aa=$1 out=$2
  if [[ $aa == aa ]]; then
    sed 's|fragments: \[kernel/lab-minimal.config, kernel/kasan-outline.config\]|fragments: [kernel/lab-minimal.config]|' "$here/playbooks/qemu-kasan.yaml"
  else
    cat "$here/playbooks/qemu-kasan.yaml"
  fi | sed -e '/^  repeat:/d' > "$out"
  python3 - "$out" "$(repeat_lines)" <<'EOF'
import sys
p, lines = sys.argv[1], sys.argv[2]
t = open(p).read().replace("  perf: { frequency: 199", lines + "\n  perf: { frequency: 199", 1)
open(p, "w").write(t)
EOF
}

run_case() {
  local name=$1 pb=$2
  declare -A count=([regression]=0 [improvement]=0 [no-change]=0 [inconclusive]=0 [failed]=0)
  local pairs="" start
  start=$(date +%s)
  for i in $(seq 1 "$N"); do
    set +e
    "$kd" -q run "$pb" --out "$work/out-$name" > "$work/last.txt" 2>&1
    rc=$?
    set -e
    verdict=$(grep -m1 -oE '^(regression|improvement|no-change|inconclusive):' "$work/last.txt" | tr -d :)
    [[ -z $verdict ]] && verdict=failed
    count[$verdict]=$(( ${count[$verdict]} + 1 ))
    p=$(grep -m1 '^repeats:' "$work/last.txt" | grep -oE '[0-9]+ pairs' | head -1 | grep -oE '[0-9]+' || true)
    pairs="$pairs ${p:-$REPEAT}"
    echo "  $name run $i: exit $rc: $(head -1 "$work/last.txt" | cut -c1-160)"
    rm -rf "$work/out-$name"
  done
  local secs=$(( $(date +%s) - start ))
  {
    printf '| %s | %d | %d | %d | %d | %d | %d | %s | %ds |\n' "$name" "$N" \
      "${count[regression]}" "${count[improvement]}" "${count[no-change]}" "${count[inconclusive]}" "${count[failed]}" \
      "$(echo $pairs | tr ' ' '\n' | sort -n | uniq -c | awk '{printf "%s×%s ", $1, $2}')" "$secs"
  } >> "$work/table"
}

: > "$work/table"
IFS=, read -ra cases <<< "$CASES"
for c in "${cases[@]}"; do
  case $c in
    lab-aa) lab_playbook 0 "$work/lab-aa.yaml"; run_case lab-aa "$work/lab-aa.yaml" ;;
    nft200) lab_playbook 200 "$work/nft200.yaml"; run_case nft200 "$work/nft200.yaml" ;;
    qemu-aa) qemu_playbook aa "$work/qemu-aa.yaml"; run_case qemu-aa "$work/qemu-aa.yaml" ;;
    kasan) qemu_playbook ab "$work/kasan.yaml"; run_case kasan "$work/kasan.yaml" ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
done
echo
echo "repeat: $REPEAT; lab limit 5%, qemu limit 10% (the playbooks' gate rules)"
echo "| case | runs | regression | improvement | no-change | inconclusive | failed | pairs (count×pairs) | time |"
echo "|---|---|---|---|---|---|---|---|---|"
cat "$work/table"
