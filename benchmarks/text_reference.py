"""The Python side of the text benchmark (benchmarks/text.cpp is the C++ side).

  text_reference.py LINES MODEL_DIR BPE_JSON ENCODE_N ROUNDS THREADS [UNIGRAM_JSON]

HF tokenizers (Rust) on one thread: encode_batch, and encode_batch_fast (no offsets) where
the installed version has it; sentence-transformers encode() of the first ENCODE_N lines
with batch 32 on THREADS torch threads. Prints one JSON object, best of ROUNDS.
"""
import json
import os
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402


def best_of(rounds, f):
    f()  # warm-up
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t0)
    return best


def time_tokenizer(path, lines, rounds):
    tok = Tokenizer.from_file(path)
    tok.no_padding()
    tok.no_truncation()
    tokens = sum(len(e.ids) for e in tok.encode_batch(lines))
    out = {"lines": len(lines), "tokens": tokens}
    s = best_of(rounds, lambda: tok.encode_batch(lines))
    out.update(seconds=s, lines_per_s=len(lines) / s, tokens_per_s=tokens / s)
    if hasattr(tok, "encode_batch_fast"):
        s = best_of(rounds, lambda: tok.encode_batch_fast(lines))
        out.update(fast_seconds=s, fast_lines_per_s=len(lines) / s)
    return out


def main():
    lines_path, model_dir, bpe_path = sys.argv[1:4]
    encode_n, rounds, threads = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    with open(lines_path, encoding="utf-8") as f:
        lines = f.read().split("\n")[:-1]
    out = {
        "wordpiece": time_tokenizer(os.path.join(model_dir, "tokenizer.json"), lines, rounds),
        "bpe": time_tokenizer(bpe_path, lines, rounds),
    }
    if len(sys.argv) > 7:
        out["unigram"] = time_tokenizer(sys.argv[7], lines, rounds)
    torch.set_num_threads(threads)
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(model_dir, device="cpu")
    sentences = lines[:encode_n]
    s = best_of(rounds, lambda: model.encode(sentences, batch_size=32, show_progress_bar=False))
    out["encode"] = {"sentences": len(sentences), "seconds": s, "sentences_per_s": len(sentences) / s,
                     "threads": torch.get_num_threads()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
