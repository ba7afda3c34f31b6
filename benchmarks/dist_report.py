"""The table of `bash scripts/bench.sh --dist`: the quick main job on 1 and 2 processes.

Reads RUN/n{1,2}-{1,2}/metrics.json (the main job's pairs_per_s, train_seconds_this_call
and, with several ranks, collective_seconds_this_call) and writes RUN.md."""
import json
import statistics
import sys

run = sys.argv[1]
rows = {}
for n in (1, 2):
    runs = [json.load(open(f"{run}/n{n}-{i}/metrics.json")) for i in (1, 2)]
    rate = statistics.median(m["pairs_per_s"] for m in runs)
    share = statistics.median(m.get("collective_seconds_this_call", 0.0) / m["train_seconds_this_call"] for m in runs)
    rows[n] = (rate, share)
lines = ["| processes (1 thread each) | global pairs/s | vs 1 process | rank 0's step time in collectives |",
         "|---|---:|---:|---:|"]
for n, (rate, share) in rows.items():
    lines.append(f"| {n} | {rate:.2f} | {rate / rows[1][0]:.2f}x | {100 * share:.1f}% |")
with open(f"{run}.md", "w") as out:
    out.write("\n".join(lines) + "\n")
print("\n".join(lines))
