"""PEFT (peft 0.21.2) as the reference for contaccum's adapters.

  make OUT_DIR              for a tiny random BertModel and a tiny random GPTNeoXForCausalLM
                            made by transformers: saves the base model (OUT_DIR/<case>/base),
                            wraps it with PEFT's LoRA, moves lora_B off its zero init (so the
                            outputs and every gradient are non-trivial), saves the adapter
                            with save_pretrained (OUT_DIR/<case>/adapter), and writes
                            OUT_DIR/<case>/expected.safetensors: the batch (ids, mask), the
                            loss weights `weight`, the last hidden states `hidden` and
                            `grad.<layer>.lora_{A,B}.weight` = d loss / d A, B for
                            loss = sum(hidden * weight).
  counts OUT_DIR            writes OUT_DIR/counts.json: trainable-parameter counts for
                            Pythia-70m's shape (PEFT's get_nb_trainable_parameters for LoRA;
                            counts by Hugging Face names for bias-only and block freezing).
  check IN.json OUT         runs every task of IN.json {"tasks": [{"name", "kind": "bert" |
                            "gpt_neox", "model": dir, "adapter": dir or null, "batch":
                            expected.safetensors}]}: loads the model with from_pretrained,
                            the adapter (if any) with PeftModel.from_pretrained, and writes
                            the last hidden states as OUT (safetensors, one tensor per name).
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (BertConfig, BertModel, GPTNeoXConfig,  # noqa: E402
                          GPTNeoXForCausalLM)

VOCAB = 101
CASES = {
    "bert": dict(seed=31, r=4, alpha=8, targets=["query", "value"],
                 config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                             max_position_embeddings=64, hidden_dropout_prob=0.0,
                             attention_probs_dropout_prob=0.0)),
    "gpt_neox": dict(seed=32, r=4, alpha=6, targets=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
                     config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
                                 rotary_pct=0.25, max_position_embeddings=64, use_parallel_residual=True)),
}
LENGTHS = [10, 7, 3]  # real tokens per row (right padding)
PYTHIA_70M = dict(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                  intermediate_size=2048, rotary_pct=0.25, max_position_embeddings=2048)


def build(kind, config):
    if kind == "bert":
        return BertModel(BertConfig(vocab_size=VOCAB, attn_implementation="eager", **config))
    return GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=VOCAB, attn_implementation="eager", **config))


def body(kind, model):
    """The module whose last hidden states contaccum's encoder returns."""
    if isinstance(model, PeftModel):
        model = model.base_model.model
    return model if kind == "bert" else model.gpt_neox


def hidden_states(kind, model, ids, mask):
    return body(kind, model)(input_ids=ids, attention_mask=mask).last_hidden_state


def make_batch(seed, hidden):
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    ids = torch.randint(2, VOCAB, (len(LENGTHS), t), generator=g)
    mask = torch.zeros(len(LENGTHS), t, dtype=torch.int64)
    for row, n in enumerate(LENGTHS):
        mask[row, :n] = 1
    ids = ids.masked_fill(mask == 0, 0)
    # Zero on padding: padded positions' states are implementation-defined. The 0.1 keeps
    # the gradients O(1), where a float32 absolute tolerance of 1e-5 is meaningful.
    weight = 0.1 * torch.randn(len(LENGTHS), t, hidden, generator=g) * mask.unsqueeze(-1)
    return ids, mask, weight


def ours(name):
    """PEFT's in-memory name -> contaccum's: no base_model.model. prefix, no adapter name."""
    return name.removeprefix("base_model.model.").replace(".default", "")


def make(out_dir):
    for kind, c in CASES.items():
        torch.manual_seed(c["seed"])
        model = build(kind, c["config"])
        with torch.no_grad():  # move LayerNorms and biases off 1/0
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.eval()
        case_dir = os.path.join(out_dir, kind)
        model.save_pretrained(os.path.join(case_dir, "base"))
        peft_model = get_peft_model(model, LoraConfig(r=c["r"], lora_alpha=c["alpha"], lora_dropout=0.0,
                                                      target_modules=c["targets"]))
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.1 * torch.randn_like(p))
        peft_model.save_pretrained(os.path.join(case_dir, "adapter"))
        peft_model.eval()
        ids, mask, weight = make_batch(c["seed"], c["config"]["hidden_size"])
        hidden = hidden_states(kind, peft_model, ids, mask)
        (hidden * weight).sum().backward()
        out = {"ids": ids, "mask": mask, "weight": weight, "hidden": hidden.detach()}
        for name, p in peft_model.named_parameters():
            if p.requires_grad:
                out["grad." + ours(name)] = p.grad.detach().clone()
        save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(case_dir, "expected.safetensors"))


def counts(out_dir):
    """Trainable-parameter counts for Pythia-70m's shape (GPTNeoXForCausalLM, random init)."""
    config = GPTNeoXConfig(**PYTHIA_70M)
    found = {}
    for r in (8, 128):
        model = GPTNeoXForCausalLM(config)
        found["total"] = sum(p.numel() for p in model.parameters())
        if r == 8:
            named = dict(model.named_parameters())
            found["bias_only"] = sum(p.numel() for n, p in named.items() if "bias" in n)
            layers = config.num_hidden_layers
            for k in (1, 2, layers):
                keep = [f"gpt_neox.layers.{i}." for i in range(layers - k, layers)] + ["gpt_neox.final_layer_norm."]
                found[f"block_freeze_{k}"] = sum(p.numel() for n, p in named.items()
                                                 if any(n.startswith(s) for s in keep))
        lora = LoraConfig(r=r, lora_alpha=2 * r, target_modules=CASES["gpt_neox"]["targets"])
        peft_model = get_peft_model(model, lora)
        trainable, total = peft_model.get_nb_trainable_parameters()
        found[f"lora_{r}"] = trainable
        found[f"lora_{r}_total"] = total
        del model, peft_model
    with open(os.path.join(out_dir, "counts.json"), "w") as f:
        json.dump(found, f, indent=1)


def check(in_path, out_path):
    with open(in_path) as f:
        spec = json.load(f)
    out = {}
    for task in spec["tasks"]:
        kind = task["kind"]
        cls = BertModel if kind == "bert" else GPTNeoXForCausalLM
        model = cls.from_pretrained(task["model"], attn_implementation="eager")
        if task.get("adapter"):
            model = PeftModel.from_pretrained(model, task["adapter"])
        model.eval()
        batch = load_file(task["batch"])
        with torch.no_grad():
            out[task["name"]] = hidden_states(kind, model, batch["ids"], batch["mask"]).contiguous()
    save_file(out, out_path)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        os.makedirs(sys.argv[2], exist_ok=True)
        make(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "counts":
        os.makedirs(sys.argv[2], exist_ok=True)
        counts(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
