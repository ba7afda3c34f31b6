"""transformers' GPTNeoXForCausalLM as the reference for contaccum's GptNeox.

  make OUT_DIR                 creates small random GPTNeoXForCausalLMs with transformers,
                               saves each with save_pretrained to OUT_DIR/<case> (one of
                               them sharded, one also as a bare GPTNeoXModel in
                               OUT_DIR/<case>_body), runs them in eval mode on a right- and
                               a left-padded batch and writes OUT_DIR/cases.json
  check IN.json OUT.json       loads every folder of IN.json's "models" (written by
                               contaccum's save_gpt_neox) with from_pretrained and runs it
                               on its batch; reads every config.json of IN.json's "configs"
                               with GPTNeoXConfig.from_pretrained and reports the settings
                               transformers resolved

cases.json: {case: {"dir", "sharded", "config": {...}, "right": batch, "left": batch}} with
batch = {"ids", "mask", "labels", "shape", "hidden", "logits", "loss"}: ids/mask/labels
flattened (B, T), hidden the flattened last hidden state (B, T, H), logits (B, T, V), and
loss transformers' causal-LM loss for `labels` (ids with padding set to -100; with left
padding each row's first real token is -100 too, since it would be predicted from a pad).
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM  # noqa: E402
from transformers.utils import logging  # noqa: E402

logging.disable_progress_bar()

VOCAB = 101
CASES = {
    # Pythia's layout: parallel residual, a quarter of each head rotated (16 * 0.25 = 4 dims).
    "parallel_rot25": dict(config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                       intermediate_size=96, rotary_pct=0.25, rotary_emb_base=10000,
                                       use_parallel_residual=True),
                           seed=21, shard=False, body=True),
    # Sequential residual, every dim rotated, another theta; saved in shards.
    "sequential_rot100": dict(config=dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                                          intermediate_size=80, rotary_pct=1.0, rotary_emb_base=500,
                                          use_parallel_residual=False),
                              seed=22, shard=True, body=False),
    # Tied head, no attention biases, the tanh GELU, half the dims rotated.
    "tied_gelu_new": dict(config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=40, rotary_pct=0.5, rotary_emb_base=2000,
                                      use_parallel_residual=True, tie_word_embeddings=True,
                                      attention_bias=False, hidden_act="gelu_new"),
                          seed=23, shard=False, body=False),
}
LENGTHS = [12, 9, 4]  # real tokens per row; the rest is padding
PAD = 1


def make_batch(seed, left):
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    ids = torch.randint(2, VOCAB, (len(LENGTHS), t), generator=g)
    mask = torch.zeros(len(LENGTHS), t, dtype=torch.int64)
    for row, n in enumerate(LENGTHS):
        if left:
            mask[row, t - n:] = 1
        else:
            mask[row, :n] = 1
    ids = torch.where(mask.bool(), ids, torch.full_like(ids, PAD))
    labels = ids.masked_fill(mask == 0, -100)
    if left:
        first = mask.argmax(1)
        labels[torch.arange(len(LENGTHS)), first] = -100
    return ids, mask, labels


def outputs(model, ids, mask, labels):
    with torch.no_grad():
        hidden = model.gpt_neox(input_ids=ids, attention_mask=mask).last_hidden_state
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    return {"ids": ids.flatten().tolist(), "mask": mask.flatten().tolist(), "labels": labels.flatten().tolist(),
            "shape": list(hidden.shape), "hidden": hidden.to(torch.float64).flatten().tolist(),
            "logits": out.logits.to(torch.float64).flatten().tolist(),
            "loss": out.loss.item()}


def resolved_config(config):
    rope = config.rope_parameters
    return {"rotary_pct": rope.get("partial_rotary_factor", 1.0), "rotary_emb_base": rope["rope_theta"],
            "rope_type": rope.get("rope_type"), "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers, "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size, "vocab_size": config.vocab_size,
            "use_parallel_residual": config.use_parallel_residual, "attention_bias": config.attention_bias,
            "tie_word_embeddings": config.tie_word_embeddings, "hidden_act": config.hidden_act,
            "layer_norm_eps": config.layer_norm_eps, "max_position_embeddings": config.max_position_embeddings,
            "bos_token_id": config.bos_token_id, "eos_token_id": config.eos_token_id,
            "pad_token_id": config.pad_token_id}


def make(out_dir):
    cases = {}
    for name, c in CASES.items():
        torch.manual_seed(c["seed"])
        config = GPTNeoXConfig(vocab_size=VOCAB, max_position_embeddings=64, attn_implementation="eager",
                               **c["config"])
        model = GPTNeoXForCausalLM(config)
        # Move every parameter off its initial value (LayerNorm 1/0, biases 0), so a
        # weight copied to the wrong place cannot go unnoticed.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.eval()
        path = os.path.join(out_dir, name)
        model.save_pretrained(path, max_shard_size="20KB" if c["shard"] else "10GB")
        cases[name] = {"dir": path, "config": resolved_config(model.config),
                       "sharded": os.path.exists(os.path.join(path, "model.safetensors.index.json"))}
        if c["body"]:
            model.gpt_neox.save_pretrained(path + "_body")
            cases[name]["body_dir"] = path + "_body"
        for side in ("right", "left"):
            cases[name][side] = outputs(model, *make_batch(c["seed"], left=side == "left"))
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f)


def check(in_json, out_json):
    with open(in_json) as f:
        spec = json.load(f)
    result = {"models": [], "configs": []}
    for m in spec.get("models", []):
        model, info = GPTNeoXForCausalLM.from_pretrained(m["dir"], attn_implementation="eager",
                                                         output_loading_info=True)
        model.eval()
        b, t = m["shape"][0], m["shape"][1]
        ids, mask, labels = (torch.tensor(m[k], dtype=torch.int64).view(b, t) for k in ("ids", "mask", "labels"))
        out = outputs(model, ids, mask, labels)
        out["missing_keys"] = sorted(info["missing_keys"])
        out["unexpected_keys"] = sorted(info["unexpected_keys"])
        out["config"] = resolved_config(model.config)
        result["models"].append(out)
    for d in spec.get("configs", []):
        result["configs"].append(resolved_config(GPTNeoXConfig.from_pretrained(d)))
    with open(out_json, "w") as f:
        json.dump(result, f)


def main():
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "check":
        check(*sys.argv[2:4])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")


if __name__ == "__main__":
    main()
