"""sentence-transformers' losses as the reference for contaccum's loss family, on given embeddings.

  matryoshka IN OUT   MatryoshkaLoss(MultipleNegativesRankingLoss(scale), dims, weights) of the
                      embeddings in IN (safetensors: q (n, H), p (n, H), optionally h (n*m, H),
                      query-major; metadata: scale, dims, weights as JSON); OUT gets the loss and
                      the gradients w.r.t. q, p and h (safetensors, float64).

  cosent IN OUT       CoSENTLoss(scale) on the pairs (q, p) with labels "labels" (n)
  angle IN OUT        AnglELoss(scale) on (q, p) with labels, or on the columns (q, p, h_0..h_{m-1})
                      when h is given (labels optional)
  margin_mse IN OUT   MarginMSELoss on (q, p, h_0..) with teacher scores "labels" (n, m) or (n, 1 + m)
  distill_kl IN OUT   DistillKLDivLoss(student_temperature, teacher_temperature) likewise, (n, 1 + m)
  gist IN OUT         GISTEmbedLoss(guide, temperature, margin_strategy, margin, contrast_anchors,
                      contrast_positives) on (q, p[, h]) with the guide's embeddings gq, gp[, gh]
                      (one negative column: h is (n, H))

The embeddings stand in for a model: a module whose forward returns them, so the loss runs
its own code path (truncation, renormalisation, the similarity, the cross-entropy) as in training.
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class Embeddings(torch.nn.Module):
    """A stand-in SentenceTransformer: features {key: tensor} -> that tensor as the embedding."""

    def __init__(self, width, key="rows", tokenizer=None):
        super().__init__()
        self.width, self.key = width, key
        if tokenizer is not None:
            self.tokenizer = tokenizer
            self.max_seq_length = 16

    def forward(self, features):
        return {"sentence_embedding": features[self.key]}

    def get_embedding_dimension(self):
        return self.width

    get_sentence_embedding_dimension = get_embedding_dimension


def word_tokenizer():
    """A transformers tokenizer built in memory (GISTEmbedLoss checks that model and guide have one)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"[UNK]": 0}, unk_token="[UNK]")))


def columns_of(t, n):
    """sentence-transformers takes one column per negative: column j holds each query's j-th negative."""
    cols = [t["q"], t["p"]]
    if "h" in t:
        m = t["h"].size(0) // n
        cols += [t["h"].view(n, m, -1)[:, j] for j in range(m)]
    return cols


def main():
    cmd, src, out = sys.argv[1:4]
    from sentence_transformers.sentence_transformer import losses

    with safe_open(src, "pt") as f:
        meta = f.metadata() or {}
        t = {k: f.get_tensor(k).to(torch.float64) for k in f.keys()}
    grads = [k for k in ("q", "p", "h") if k in t]
    for k in grads:
        t[k].requires_grad_()
    n = t["q"].size(0)
    labels = t.get("labels", torch.empty(0))
    model = Embeddings(t["q"].size(1))
    columns = [{"rows": c} for c in columns_of(t, n)]
    if cmd == "matryoshka":
        inner = losses.MultipleNegativesRankingLoss(model, scale=float(meta["scale"]))
        loss = losses.MatryoshkaLoss(model, inner, json.loads(meta["dims"]), matryoshka_weights=json.loads(meta["weights"]))
        value = loss(columns, torch.empty(0))
    elif cmd in ("cosent", "angle"):
        cls = losses.CoSENTLoss if cmd == "cosent" else losses.AnglELoss
        loss = cls(model, scale=float(meta["scale"]))
        value = loss.compute_loss_from_embeddings([c["rows"] for c in columns], labels if labels.numel() else None)
    elif cmd == "margin_mse":
        value = losses.MarginMSELoss(model)(columns, labels)
    elif cmd == "distill_kl":
        loss = losses.DistillKLDivLoss(model, student_temperature=float(meta["student_temperature"]),
                                       teacher_temperature=float(meta["teacher_temperature"]))
        value = loss(columns, labels)
    elif cmd == "gist":
        tok = word_tokenizer()
        model = Embeddings(t["q"].size(1), "rows", tok)
        guide = Embeddings(t["gq"].size(1), "guide", tok)
        guide_cols = [t["gq"], t["gp"]] + ([t["gh"]] if "gh" in t else [])
        columns = [{"rows": c, "guide": g} for c, g in zip(columns_of(t, n), guide_cols)]
        loss = losses.GISTEmbedLoss(model, guide, temperature=float(meta["temperature"]),
                                    margin_strategy=meta["margin_strategy"], margin=float(meta["margin"]),
                                    contrast_anchors=meta["contrast_anchors"] == "1",
                                    contrast_positives=meta["contrast_positives"] == "1")
        value = loss(columns, torch.empty(0))
    else:
        raise SystemExit(__doc__)
    value.backward()
    result = {"loss": value.detach().reshape(1)}
    result.update({k: t[k].grad if t[k].grad is not None else torch.zeros_like(t[k]) for k in grads})
    save_file({k: v.contiguous() for k, v in result.items()}, out)


if __name__ == "__main__":
    main()
