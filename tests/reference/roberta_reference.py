"""transformers' RobertaModel and XLMRobertaModel as the reference for contaccum's Bert with
RoBERTa's position ids.

  make OUT_DIR                 creates small random models with transformers (a RobertaModel,
                               an XLMRobertaModel, and an XLMRobertaForMaskedLM whose body is
                               saved under "roberta." beside an lm_head), saves each with
                               save_pretrained to OUT_DIR/<case>, runs the bare encoder in eval
                               mode on a padded batch and writes OUT_DIR/cases.json
  run  MODEL_DIR IN.json OUT.json
                               loads MODEL_DIR (written by contaccum's save_bert) with
                               AutoModel.from_pretrained and runs it on IN.json's batch

cases.json: {case: {"dir", "class", "ids", "mask", "types", "shape", "hidden"}} as in
bert_reference.py; the padding id is 1, as in every RoBERTa vocabulary.
"""
import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from transformers import (AutoModel, RobertaConfig, RobertaModel, XLMRobertaConfig,  # noqa: E402
                          XLMRobertaForMaskedLM, XLMRobertaModel)

PAD = 1
CASES = {
    "roberta_h32_l2": dict(cls=(RobertaConfig, RobertaModel), hidden_size=32, num_hidden_layers=2,
                           num_attention_heads=4, intermediate_size=37, vocab_size=99, seed=21),
    "xlmr_h48_l2": dict(cls=(XLMRobertaConfig, XLMRobertaModel), hidden_size=48, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=53, vocab_size=131, seed=22),
    "xlmr_mlm_h32_l3": dict(cls=(XLMRobertaConfig, XLMRobertaForMaskedLM), hidden_size=32, num_hidden_layers=3,
                            num_attention_heads=2, intermediate_size=37, vocab_size=99, seed=23),
}
# Real tokens per row; the rest is padding. One row fills the longest position RoBERTa
# allows for max_position_embeddings 16 + 2 (PAD + 16 < 18).
LENGTHS = [16, 9, 4]


def make_batch(seed, vocab):
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    ids = torch.randint(PAD + 2, vocab, (len(LENGTHS), t), generator=g)  # never the padding id
    mask = torch.zeros(len(LENGTHS), t, dtype=torch.int64)
    for row, n in enumerate(LENGTHS):
        mask[row, :n] = 1
    ids = ids * mask + PAD * (1 - mask)
    types = torch.zeros_like(ids)  # type_vocab_size 1
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
        seed = c.pop("seed")
        config_cls, model_cls = c.pop("cls")
        torch.manual_seed(seed)
        config = config_cls(hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                            max_position_embeddings=max(LENGTHS) + PAD + 1, type_vocab_size=1,
                            layer_norm_eps=1e-5, pad_token_id=PAD, attn_implementation="eager", **c)
        model = model_cls(config)
        # Move every parameter off its initial value (LayerNorm 1/0, biases 0, the padding
        # rows 0), so a weight or a position read from the wrong row cannot go unnoticed.
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        model.eval()
        path = os.path.join(out_dir, name)
        model.save_pretrained(path)
        body = model.roberta if hasattr(model, "roberta") else model
        ids, mask, types = make_batch(seed, config.vocab_size)
        cases[name] = {"dir": path, "class": model_cls.__name__, **record(ids, mask, types,
                                                                          hidden_states(body, ids, mask, types))}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f)


def run(model_dir, in_json, out_json):
    with open(in_json) as f:
        spec = json.load(f)
    model, info = AutoModel.from_pretrained(model_dir, attn_implementation="eager", output_loading_info=True)
    model.eval()
    b, t = spec["batch"], spec["length"]
    ids, mask, types = (torch.tensor(spec[k], dtype=torch.int64).view(b, t) for k in ("ids", "mask", "types"))
    out = record(ids, mask, types, hidden_states(model, ids, mask, types))
    out["class"] = type(model).__name__
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
