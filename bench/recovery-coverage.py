#!/usr/bin/env python3
"""Coverage of `kdelta verify`'s recovered-share interval (orchestrator/src/verify/recovery.rs).

Simulates the original run's log ratios (change L0, noise s0, n0 pairs) and the verify run's
(change r*L0, noise s1, n1 pairs), builds the delta-method interval of R = L1/L0 the way
recovery.rs does (noise per pair pooled over both runs, or borrowed from the verify run when
n0 = 1), and counts how often it covers the true share r, among the trials where a share is
given at all (the original change significant). Also the alternative recovery.rs rejected:
each run's own spread with the smaller degrees of freedom.

    python3 bench/recovery-coverage.py [TRIALS]
"""
import math
import random
import sys
from statistics import mean, stdev

T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 8: 2.306, 10: 2.228}


def trial(n0, n1, l0, r, s0, s1, pooled):
    d0 = [l0 + random.gauss(0, s0) for _ in range(n0)]
    d1 = [r * l0 + random.gauss(0, s1) for _ in range(n1)]
    m0, m1 = mean(d0), mean(d1)
    if pooled:
        ss, df = 0.0, 0
        for d in (d0, d1):
            if len(d) > 1:
                ss += stdev(d) ** 2 * (len(d) - 1)
                df += len(d) - 1
        s = math.sqrt(ss / df)
        se0, se1 = s / math.sqrt(n0), s / math.sqrt(n1)
    else:
        if n0 < 2:
            return None
        se0, se1 = stdev(d0) / math.sqrt(n0), stdev(d1) / math.sqrt(n1)
        df = min(n0, n1) - 1
    q = T975[df]
    if abs(m0 / se0) <= q:
        return None  # no share of an insignificant change
    share = m1 / m0
    se = math.sqrt(se1**2 + share**2 * se0**2) / abs(m0)
    return (share - q * se <= r <= share + q * se), 2 * q * se


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    random.seed(1)
    print("n0 n1  s0   s1   r    method   given  coverage  median width")
    for n0, n1 in [(1, 2), (1, 3), (2, 2), (3, 3)]:
        for s0, s1 in [(0.1, 0.1), (0.3, 0.3), (0.3, 0.1), (0.1, 0.3)]:
            for r in (1.0, 0.5):
                for pooled in (True, False):
                    res = [trial(n0, n1, -2.3, r, s0, s1, pooled) for _ in range(n)]
                    got = [x for x in res if x is not None]
                    if not got:
                        continue
                    cov = sum(1 for c, _ in got if c) / len(got)
                    width = sorted(w for _, w in got)[len(got) // 2]
                    name = "pooled" if pooled else "min-df"
                    print(f"{n0:2} {n1:2}  {s0:.1f}  {s1:.1f}  {r:.1f}  {name:7}  {len(got)/n:5.3f}  {cov:8.3f}  {width:8.3f}")


if __name__ == "__main__":
    main()
