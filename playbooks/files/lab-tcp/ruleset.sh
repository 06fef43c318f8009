#!/bin/sh
# Prints an nftables ruleset like a busy firewall's: conntrack plus N rules on the
# input hook that never match the benchmark's traffic, so every packet walks them all.
# Addresses are from 203.0.113.0/24 (TEST-NET-3): nothing real is ever blocked.
n=${1:-2000}
echo 'table inet kdelta_fw {'
echo ' chain input {'
echo '  type filter hook input priority 0; policy accept;'
echo '  ct state invalid counter drop'
i=1
while [ "$i" -le "$n" ]; do
  echo "  ip saddr 203.0.113.$((i % 250 + 1)) tcp dport $((10000 + i)) counter drop"
  i=$((i + 1))
done
echo ' }'
echo '}'
