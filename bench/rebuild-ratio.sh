#!/usr/bin/env bash
# Issue 16: a kernel rebuild for one changed option against a cold build. In a scratch
# kernel cache (KDELTA_CACHE), one `kdelta run` builds the baseline kernel cold
# (tinyconfig + the lab fragment from Debian's linux-source-6.1), then the candidate,
# the same config with ONE option flipped: its build starts from a copy of the
# baseline's finished build folder and Kbuild rebuilds only what the option touches.
# Prints both build times (from hosts.json's provenance) and their ratio.
#
#   bash bench/rebuild-ratio.sh (as root) [OPTION=CONFIG_PRINTK_TIME] [VALUE=n]
#     needs what the README's first command installs; about 6 minutes on 2 cores
set -euo pipefail
OPTION=${1:-CONFIG_PRINTK_TIME}; VALUE=${2:-n}
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
kd="$here/target/release/kdelta"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ln -s "$here/playbooks/kernel" "$work/kernel"
cat > "$work/rebuild.yaml" <<YAML
name: rebuild-ratio
hosts:
  baseline:
    provider: qemu
    kernel: { source: linux-source-6.1, base: tinyconfig, fragments: [kernel/lab-minimal.config] }
    tools: [iperf3]
  candidate:
    provider: qemu
    kernel: { source: linux-source-6.1, base: tinyconfig, fragments: [kernel/lab-minimal.config], options: { $OPTION: $VALUE } }
    tools: [iperf3]
workload:
  server: "sleep 30"
  client: { from: host, run: "sleep 1" }
  timeout: 60
capture: { repeat: 1 }
YAML
KDELTA_CACHE="$work/cache" "$kd" -q run "$work/rebuild.yaml" --out "$work/out" >/dev/null || true
run=$(ls -d "$work"/out/*/)
python3 - "$run" "$OPTION=$VALUE" <<'PY'
import json, sys
secs = {r: json.load(open(f"{sys.argv[1]}/hosts/{r}/kernel.json"))["provenance"]["build_seconds"]
        for r in ("baseline", "candidate")}
b, c = secs["baseline"], secs["candidate"]
print(f"cold build (baseline): {b:.0f} s")
print(f"one option ({sys.argv[2]}) from the nearest build: {c:.0f} s")
print(f"ratio: {c / b:.2f} (target <= 0.3)")
PY
grep -h "starting from the build\|built in" "$run"/hosts/*/kernel-build.log "$run"/run.log 2>/dev/null | head -4 || true
