"""transformers' LlamaModel and Qwen2Model as the reference for contaccum's Llama.

  make OUT_DIR                 creates small random models with transformers (grouped-query
                               and multi-query attention, biases, an explicit head_dim, one
                               Qwen2ForCausalLM saved with its "model." prefix and lm_head),
                               saves each with save_pretrained to OUT_DIR/<case>, runs the
                               body in eval mode on a right- or left-padded batch and writes
                               OUT_DIR/cases.json
  run  MODEL_DIR IN.json OUT.json
                               loads MODEL_DIR (written by contaccum's save_llama) with
                               AutoModel.from_pretrained and runs it on IN.json's batch

cases.json: {case: {"dir", "class", "ids", "mask", "shape", "hidden"}}, ids/mask flattened
(B, T) and hidden the flattened last hidden state (B, T, H).
"""
import json
import os

from hf_parity import hidden_states, main, perturb, record  # first: it sets the offline environment

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaModel, Qwen2Config, Qwen2ForCausalLM, Qwen2Model  # noqa: E402

CASES = {
    "llama_gqa": dict(cls=(LlamaConfig, LlamaModel), left=False, seed=31, hidden_size=32, intermediate_size=48,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, vocab_size=99),
    "llama_bias_head_dim": dict(cls=(LlamaConfig, LlamaModel), left=True, seed=32, hidden_size=32,
                                intermediate_size=40, num_hidden_layers=2, num_attention_heads=4,
                                num_key_value_heads=4, head_dim=16, attention_bias=True, mlp_bias=True,
                                rope_theta=500000.0, vocab_size=99),
    "qwen2_mqa": dict(cls=(Qwen2Config, Qwen2Model), left=True, seed=33, hidden_size=48, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, vocab_size=99),
    "qwen2_causal_lm": dict(cls=(Qwen2Config, Qwen2ForCausalLM), left=False, seed=34, hidden_size=32,
                            intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                            num_key_value_heads=2, vocab_size=99, tie_word_embeddings=False),
}
LENGTHS = [12, 9, 4]  # real tokens per row; the rest is padding (id 0)


def make_batch(seed, vocab, left):
    g = torch.Generator().manual_seed(seed)
    t = max(LENGTHS)
    ids = torch.randint(1, vocab, (len(LENGTHS), t), generator=g)
    mask = torch.zeros(len(LENGTHS), t, dtype=torch.int64)
    for row, n in enumerate(LENGTHS):
        if left:
            mask[row, t - n:] = 1
        else:
            mask[row, :n] = 1
    return ids * mask, mask


def make(out_dir):
    cases = {}
    for name, c in CASES.items():
        c = dict(c)
        seed, left = c.pop("seed"), c.pop("left")
        config_cls, model_cls = c.pop("cls")
        torch.manual_seed(seed)
        config = config_cls(hidden_act="silu", max_position_embeddings=64, rms_norm_eps=1e-6,
                            attn_implementation="eager", **c)
        model = model_cls(config)
        perturb(model)
        path = os.path.join(out_dir, name)
        model.save_pretrained(path)
        body = model.model if hasattr(model, "lm_head") else model
        ids, mask = make_batch(seed, config.vocab_size, left)
        batch = {"input_ids": ids, "attention_mask": mask}
        cases[name] = {"dir": path, "class": model_cls.__name__, "left": left,
                       **record(batch, hidden_states(body, batch))}
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(cases, f)


if __name__ == "__main__":
    main(make)
