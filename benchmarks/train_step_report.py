"""Table of scripts/bench.sh --train: median step time per side and mode, and ratios."""
import json
import statistics
import sys

runs = {}
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    key = (r["mode"], r["side"] if r["side"] != "contaccum" else f"contaccum {r['precision']}")
    runs.setdefault(key, []).extend(r["seconds"])

label = {"mnrl": "in-batch MNRL, batch 32 (ours: FullBatch)",
         "cached": "CachedMNRL 64 / mini-batch 16 (ours: GradCache 64 / 16)"}
print("| setting | sentence-transformers s/step | contaccum fp32 s/step | speed-up fp32 | contaccum bf16 s/step | bf16 vs our fp32 |")
print("|---|---|---|---|---|---|")
for mode in ("mnrl", "cached"):
    st = runs.get((mode, "sentence-transformers"))
    ours = runs.get((mode, "contaccum fp32"))
    bf = runs.get((mode, "contaccum bf16"))
    if not (st and ours):
        continue
    m_st, m_ours = statistics.median(st), statistics.median(ours)
    m_bf = statistics.median(bf) if bf else float("nan")
    print(f"| {label[mode]} | {m_st:.2f} | {m_ours:.2f} | {m_st / m_ours:.2f}x | {m_bf:.2f} | {m_ours / m_bf:.2f}x |")
n = min(len(v) for v in runs.values())
print(f"\nMedians over {n} timed steps per cell (warm-up excluded), sides alternated in one run.")
