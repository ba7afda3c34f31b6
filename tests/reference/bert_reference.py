"""transformers' BertModel as the reference for contaccum's Bert checkpoint I/O.

  make OUT_DIR                 creates small random BertModels with transformers, saves
                               each with save_pretrained to OUT_DIR/<case> (one of them
                               sharded), runs them in eval mode on a padded batch and
                               writes OUT_DIR/cases.json
  run  MODEL_DIR IN.json OUT.json
                               loads MODEL_DIR (written by contaccum's save_bert) with
                               BertModel.from_pretrained and runs it on IN.json's batch

cases.json: {case: {"dir", "ids", "mask", "types", "shape", "hidden"}} with ids/mask/types
flattened (B, T) and hidden the flattened last hidden state (B, T, H) in fp32.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from transformers import BertConfig, BertModel  # noqa: E402
from transformers.utils import logging  # noqa: E402

logging.disable_progress_bar()

CASES = {
    "h32_l2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                   vocab_size=99, max_position_embeddings=64, seed=11, shard=False),
    # Saved in shards, so the index layout is read as transformers writes it.
    "h48_l3": dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37,
                   vocab_size=99, max_position_embeddings=64, seed=12, shard=True),
}
BATCH, LENGTHS = 3, [12, 9, 4]  # real tokens per row; the rest is padding


def make_batch(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    ids = torch.randint(1, vocab, (BATCH, t), generator=g)
    mask = torch.zeros(BATCH, t, dtype=torch.int64)
    for row, n in enumerate(LENGTHS):
        mask[row, :n] = 1
    ids = ids * mask  # pad id 0
    types = torch.randint(0, 2, (BATCH, t), generator=g) * mask
    return ids, mask, types


def hidden_states(model, ids, mask, types):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state


def record(ids, mask, types, hidden):
    return {"ids": ids.flatten().tolist(), "mask": mask.flatten().tolist(), "types": types.flatten().tolist(),
            "shape": list(hidden.shape), "hidden": hidden.to(torch.float64).flatten().tolist()}


def make(out_dir):
    cases = {}
    for name, c in CASES.items():
        c = dict(c)
        seed, shard = c.pop("seed"), c.pop("shard")
        torch.manual_seed(seed)
        config = BertConfig(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                            attn_implementation="eager", **c)
        model = BertModel(config)
        # Move every parameter off its initial value (LayerNorm 1/0, biases 0), so a
        # weight copied to the wrong place cannot go unnoticed.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.eval()
        path = os.path.join(out_dir, name)
        model.save_pretrained(path, max_shard_size="20KB" if shard else "10GB")
        ids, mask, types = make_batch(seed, config.vocab_size)
        cases[name] = {"dir": path, **record(ids, mask, types, hidden_states(model, ids, mask, types))}
        cases[name]["sharded"] = os.path.exists(os.path.join(path, "model.safetensors.index.json"))
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f)


def run(model_dir, in_json, out_json):
    with open(in_json) as f:
        spec = json.load(f)
    model, info = BertModel.from_pretrained(model_dir, attn_implementation="eager", output_loading_info=True)
    model.eval()
    b, t = spec["batch"], spec["length"]
    ids, mask, types = (torch.tensor(spec[k], dtype=torch.int64).view(b, t) for k in ("ids", "mask", "types"))
    out = record(ids, mask, types, hidden_states(model, ids, mask, types))
    out["missing_keys"] = sorted(info["missing_keys"])
    out["unexpected_keys"] = sorted(info["unexpected_keys"])
    with open(out_json, "w") as f:
        json.dump(out, f)


def main():
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "run":
        run(*sys.argv[2:5])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
