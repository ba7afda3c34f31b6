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

from hf_parity import hidden_states, main, perturb, record  # first: it sets the offline environment

import torch  # noqa: E402
from transformers import RobertaConfig, RobertaModel, XLMRobertaConfig, XLMRobertaForMaskedLM, XLMRobertaModel  # noqa: E402

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
        perturb(model)
        path = os.path.join(out_dir, name)
        model.save_pretrained(path)
        body = model.roberta if hasattr(model, "roberta") else model
        ids, mask, types = make_batch(seed, config.vocab_size)
        batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        cases[name] = {"dir": path, "class": model_cls.__name__, **record(batch, hidden_states(body, batch))}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    main(make)
