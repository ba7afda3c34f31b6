"""Table of scripts/bench.sh --train: median step time per side and mode, and ratios."""
import json
import statistics
import sys

runs = {}
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    side = r["side"]
    if side == "contaccum":
        side = f"contaccum {r['precision']} {r.get('layout', 'padded')}"
    runs.setdefault((r["mode"], side), []).extend(r["seconds"])

label = {"mnrl": "in-batch MNRL, batch 32 (ours: FullBatch)",
         "cached": "CachedMNRL 64 / mini-batch 16 (ours: GradCache 64 / 16)"}


def median(mode, side):
    v = runs.get((mode, side))
    return statistics.median(v) if v else float("nan")


print("| setting | sentence-transformers s/step | contaccum fp32 padded | speed-up | contaccum fp32 unpadded | "
      "**speed-up** | contaccum bf16 unpadded | bf16 vs our fp32 unpadded |")
print("|---|---|---|---|---|---|---|---|")
for mode in ("mnrl", "cached"):
    st = median(mode, "sentence-transformers")
    pad = median(mode, "contaccum fp32 padded")
    unpad = median(mode, "contaccum fp32 unpadded")
    bf = median(mode, "contaccum bf16 unpadded")
    if st != st:
        continue
    bf_cells = f"{bf:.2f} | {unpad / bf:.2f}x" if bf == bf else "not run (no bf16 instructions) | -"
    print(f"| {label[mode]} | {st:.2f} | {pad:.2f} | {st / pad:.2f}x | {unpad:.2f} | **{st / unpad:.2f}x** | "
          f"{bf_cells} |")
n = min(len(v) for v in runs.values())
print(f"\nMedians over {n} timed steps per cell (warm-up excluded), sides alternated in one run.")
