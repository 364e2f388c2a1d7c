#!/usr/bin/env python3
"""Group a heaptrack peak-cost flamegraph file by the broker's own frame.

Usage: idle-heap-breakdown.py STACKS N [TOP]

STACKS is `heaptrack_print --flamegraph-cost-type peak -F STACKS` output:
one `frame;frame;... cost` line per stack. Each stack is charged to its
innermost `shardcast::` frame (and the callee below it, which says what was
allocated); costs are divided by N, the number of connections, so a fixed
cost (a shard's inbox, say) shows as a small per-connection figure that
falls as N grows.
"""

import collections
import re
import sys

HASH = re.compile(r"::h[0-9a-f]{16}")


def label_of(frames):
    ours = [i for i, f in enumerate(frames) if "shardcast::" in f]
    if not ours:
        return frames[-1][:120]
    i = ours[-1]
    callee = HASH.sub("", frames[i + 1])[:70] if i + 1 < len(frames) else ""
    return HASH.sub("", frames[i])[:90] + "  >  " + callee


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    path, n = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    costs = collections.Counter()
    total = 0
    with open(path) as stacks:
        for line in stacks:
            stack, cost = line.rsplit(" ", 1)
            total += int(cost)
            costs[label_of(stack.split(";"))] += int(cost)
    print(f"total peak heap {total / n:.0f} B per connection")
    for label, cost in costs.most_common(top):
        print(f"{cost / n:8.1f}  {label}")


if __name__ == "__main__":
    main()
