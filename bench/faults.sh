#!/usr/bin/env bash
# Fault injection on the lab, one fault at a time; prints a table: the fault, kdelta's
# exit code, the first error line, whether run.json was kept with the failed phase,
# and what was left behind (kdelta namespaces, QEMU, sshd of labs, work folders).
# A first part of the suite of issue 7 (the others are in the end-to-end tests:
# wrong key, dead host, kill -9 + `kdelta teardown`, resume after SIGTERM).
#
#   sudo bash bench/faults.sh
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cargo build --release --quiet --manifest-path "$here/Cargo.toml"
kd="$here/target/release/kdelta"
work=$(mktemp -d)
cleanup() { umount "$work/tiny" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
ln -s "$here/playbooks/files" "$work/files"
base() { sed -e 's/duration: 5/duration: 2/' -e 's/repeat: 3/repeat: 1/' "$here/playbooks/lab-tcp.yaml"; }
leftovers() {
  local ns q s w
  ns=$(ip netns list | grep -c '^kd-'); q=$(pgrep -fc 'qemu-system.*/kdq-'); s=$(pgrep -fc 'sshd -f /tmp/kd-')
  w=$(ls -d /tmp/kdelta-run-* 2>/dev/null | wc -l)
  echo "ns=$ns qemu=$q sshd=$s work=$w"
}
row() { # name, exit, out dir, stderr file
  local rj kept
  rj=$(ls "$3"/*/run.json 2>/dev/null | head -1)
  kept=$([ -n "$rj" ] && python3 -c "import json,sys; r=json.load(open('$rj')); f=[p['name']+'@'+str(p.get('host') or '-') for p in r['phases'] if p['status'] in ('failed','interrupted')]; print(r['status'], ','.join(f) or '-')" || echo "no run.json")
  printf '%-34s | %4s | %-52.52s | %-34.34s | %s\n' "$1" "$2" "$(grep -m1 'error' "$4" | sed 's/^kdelta: //')" "$kept" "$(leftovers)"
}
printf '%-34s | %4s | %-52s | %-34s | %s\n' fault exit "first error line" "run.json (failed phases)" "left behind"
n=0
# 1. A host that refuses connections.
sed -e 's/root@baseline.example.net/root@127.0.0.1:1/' -e 's/root@candidate.example.net:22/root@127.0.0.1:1/' "$here/playbooks/ssh-pair.yaml" > "$work/f1.yaml"; echo 'timeouts: { connect: 3 }' >> "$work/f1.yaml"
"$kd" -q run "$work/f1.yaml" --out "$work/o1" 2> "$work/e1"; row "host refuses SSH" $? "$work/o1" "$work/e1"
# 2. A host that accepts TCP but never speaks SSH.
python3 -c "import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 2299)); s.listen(8); time.sleep(60)" & silent=$!
sleep 0.5
sed -e 's/root@baseline.example.net/root@127.0.0.1:2299/' -e 's/root@candidate.example.net:22/root@127.0.0.1:2299/' "$here/playbooks/ssh-pair.yaml" > "$work/f2.yaml"; echo 'timeouts: { connect: 3 }' >> "$work/f2.yaml"
"$kd" -q run "$work/f2.yaml" --out "$work/o2" 2> "$work/e2"; row "TCP open, SSH silent" $? "$work/o2" "$work/e2"
kill $silent 2>/dev/null
# 3. A workload that hangs past its timeout.
base | sed -e 's/iperf3 -c {{ host.address }} -t {{ duration }} -J/sleep 600/' -e 's/timeout: 60/timeout: 5/' > "$work/f3.yaml"
"$kd" -q run "$work/f3.yaml" --out "$work/o3" 2> "$work/e3"; row "workload hangs past timeout" $? "$work/o3" "$work/e3"
# 4/5. SIGTERM and SIGINT in the middle of the workload.
for sig in TERM INT; do
  base | sed 's/duration: 2/duration: 20/' > "$work/f4.yaml"
  "$kd" -q run "$work/f4.yaml" --out "$work/o4$sig" 2> "$work/e4$sig" & pid=$!
  for _ in $(seq 600); do grep -qs '"workload 1/1"' "$work"/o4$sig/*/run.json && break; sleep 0.1; done
  sleep 1; kill -s $sig $pid; wait $pid; row "SIG$sig during the workload" $? "$work/o4$sig" "$work/e4$sig"
done
# 6. The run directory's disk is full (a 300 KiB tmpfs).
mkdir -p "$work/tiny" && mount -t tmpfs -o size=300k tmpfs "$work/tiny"
base > "$work/f6.yaml"
"$kd" -q run "$work/f6.yaml" --out "$work/tiny" 2> "$work/e6"; row "run directory disk full" $? "$work/tiny" "$work/e6"
umount "$work/tiny"
# 7. Two runs at once on this machine.
base > "$work/f7.yaml"
"$kd" -q run "$work/f7.yaml" --out "$work/o7a" > /dev/null 2> "$work/e7a" & a=$!
"$kd" -q run "$work/f7.yaml" --out "$work/o7b" > /dev/null 2> "$work/e7b" & b=$!
wait $a; ra=$?; wait $b; rb=$?
row "two runs at once (first)" $ra "$work/o7a" "$work/e7a"; row "two runs at once (second)" $rb "$work/o7b" "$work/e7b"
# 8. A playbook with an unknown key.
base | sed 's/repeat: 1/repaet: 1/' > "$work/f8.yaml"
"$kd" -q run "$work/f8.yaml" --out "$work/o8" 2> "$work/e8"; row "unknown playbook key" $? "$work/o8" "$work/e8"
