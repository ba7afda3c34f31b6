"""What the encoder parity references (roberta_reference.py, llama_reference.py) share: the
offline environment, moving a fresh model off its initial values, the JSON record of a
batch and its hidden states, the `run` mode that loads a folder contaccum saved, and the
command line (make OUT_DIR | run MODEL_DIR IN.json OUT.json)."""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402


def perturb(model):
    """Moves every parameter off its initial value (norms 1/0, biases 0, padding rows 0), so a
    weight copied to the wrong place cannot go unnoticed."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.eval()


def hidden_states(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


def record(batch, hidden):
    """{"ids", "mask"[, "types"], "shape", "hidden"}: the (B, T) inputs and (B, T, H) states, flat."""
    out = {"ids": batch["input_ids"].flatten().tolist(), "mask": batch["attention_mask"].flatten().tolist()}
    if "token_type_ids" in batch:
        out["types"] = batch["token_type_ids"].flatten().tolist()
    out.update(shape=list(hidden.shape), hidden=hidden.to(torch.float64).flatten().tolist())
    return out


def run(model_dir, in_json, out_json):
    """Loads MODEL_DIR with AutoModel and runs it on IN.json's batch; writes the record, the
    class and what loading had to initialise (missing_keys) or left unused."""
    from transformers import AutoModel
    with open(in_json) as f:
        spec = json.load(f)
    model, info = AutoModel.from_pretrained(model_dir, attn_implementation="eager", output_loading_info=True)
    model.eval()
    b, t = spec["batch"], spec["length"]
    names = {"ids": "input_ids", "mask": "attention_mask", "types": "token_type_ids"}
    batch = {names[k]: torch.tensor(spec[k], dtype=torch.int64).view(b, t) for k in names if k in spec}
    out = record(batch, hidden_states(model, batch))
    out["class"] = type(model).__name__
    out["missing_keys"] = sorted(info["missing_keys"])
    out["unexpected_keys"] = sorted(info["unexpected_keys"])
    with open(out_json, "w") as f:
        json.dump(out, f)


def main(make):
    if sys.argv[1] == "make":
        make(sys.argv[2])
    elif sys.argv[1] == "run":
        run(*sys.argv[2:5])
    else:
        sys.exit(f"unknown mode {sys.argv[1]!r}")
