# Ingress u32 filters on eth0 that never match (destination ports 20001…): every
# packet that arrives walks all of them in tc's classifier before IP sees it.
# Usage: sh u32.sh COUNT   (needs the ingress qdisc and cls_u32: CONFIG_NET_CLS_U32)
set -eu
n=${1:-2000}
tc qdisc add dev eth0 ingress
i=1
while [ "$i" -le "$n" ]; do
  echo "filter add dev eth0 parent ffff: protocol ip prio 1 u32 match ip dport $((20000 + i)) 0xffff flowid 1:1"
  i=$((i + 1))
done | tc -batch -
