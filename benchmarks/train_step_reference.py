"""sentence-transformers' side of the training-step comparison (scripts/bench.sh --train).

  train_step_reference.py --make-pairs BEIR_DIR OUT N   write N (query, positive) pairs as JSONL
  train_step_reference.py PAIRS MODEL_DIR MODE STEPS WARMUP THREADS

MODE is "mnrl" (MultipleNegativesRankingLoss, batch 32) or "cached"
(CachedMultipleNegativesRankingLoss, batch 64, mini-batch 16). Each step tokenizes its
pairs, runs the loss, backward, clips the gradient norm to 1 and steps AdamW (lr 2e-5):
what sentence-transformers' trainer does per step, without its bookkeeping. Prints one
JSON object with the per-step seconds (warm-up steps excluded).
"""
import json
import sys
import time


def make_pairs(beir, out, n):
    queries = {}
    with open(f"{beir}/queries.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            queries[r["_id"]] = r["text"]
    corpus = {}
    with open(f"{beir}/corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            corpus[r["_id"]] = (r.get("title", "") + " " + r["text"]).strip()
    written = 0
    with open(f"{beir}/qrels/train.tsv", encoding="utf-8") as f, open(out, "w", encoding="utf-8") as o:
        next(f)
        for line in f:
            qid, pid, _ = line.rstrip("\n").split("\t")
            if qid in queries and pid in corpus:
                o.write(json.dumps({"query": queries[qid], "positive": corpus[pid]}) + "\n")
                written += 1
                if written == n:
                    break
    if written < n:
        sys.exit(f"only {written} pairs in {beir}")


def main(pairs_file, model_dir, mode, steps, warmup, threads):
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import losses

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    with open(pairs_file, encoding="utf-8") as f:
        pairs = [json.loads(line) for line in f]
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = 128
    if mode == "mnrl":
        batch, loss = 32, losses.MultipleNegativesRankingLoss(model, scale=20.0)
    elif mode == "cached":
        batch, loss = 64, losses.CachedMultipleNegativesRankingLoss(model, scale=20.0, mini_batch_size=16)
    else:
        sys.exit(f"unknown mode {mode}")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.0)
    model.train()
    seconds = []
    for step in range(warmup + steps):
        rows = pairs[(step * batch) % (len(pairs) - batch + 1):][:batch]
        t0 = time.perf_counter()
        fq = model.tokenize([r["query"] for r in rows])
        fp = model.tokenize([r["positive"] for r in rows])
        value = loss([fq, fp], None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step >= warmup:
            seconds.append(time.perf_counter() - t0)
    print(json.dumps({"side": "sentence-transformers", "mode": mode, "batch": batch, "seconds": seconds}))


if __name__ == "__main__":
    if sys.argv[1] == "--make-pairs":
        make_pairs(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
