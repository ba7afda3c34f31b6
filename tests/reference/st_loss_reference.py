"""sentence-transformers' losses as the reference for contaccum's loss family, on given embeddings.

  matryoshka IN OUT   MatryoshkaLoss(MultipleNegativesRankingLoss(scale), dims, weights) of the
                      embeddings in IN (safetensors: q (n, H), p (n, H), optionally h (n*m, H),
                      query-major; metadata: scale, dims, weights as JSON); OUT gets the loss and
                      the gradients w.r.t. q, p and h (safetensors, float64).

The embeddings stand in for a model: a module whose forward returns them, so the loss runs
its own code path (truncation, renormalisation, the similarity, the cross-entropy) as in training.
"""
import json
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file


class Embeddings(torch.nn.Module):
    """A stand-in SentenceTransformer: features {"rows": tensor} -> that tensor as the embedding."""

    def __init__(self, width):
        super().__init__()
        self.width = width

    def forward(self, features):
        return {"sentence_embedding": features["rows"]}

    def get_embedding_dimension(self):
        return self.width

    get_sentence_embedding_dimension = get_embedding_dimension


def main():
    cmd, src, out = sys.argv[1:4]
    if cmd != "matryoshka":
        raise SystemExit(__doc__)
    from sentence_transformers.sentence_transformer.losses import MatryoshkaLoss, MultipleNegativesRankingLoss

    with safe_open(src, "pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k).to(torch.float64).requires_grad_() for k in f.keys()}
    q, p = t["q"], t["p"]
    n = q.size(0)
    columns = [{"rows": q}, {"rows": p}]
    if "h" in t:
        m = t["h"].size(0) // n
        # sentence-transformers takes one column per negative: column j holds each query's j-th negative
        columns += [{"rows": t["h"].view(n, m, -1)[:, j]} for j in range(m)]
    model = Embeddings(q.size(1))
    inner = MultipleNegativesRankingLoss(model, scale=float(meta["scale"]))
    loss = MatryoshkaLoss(model, inner, json.loads(meta["dims"]), matryoshka_weights=json.loads(meta["weights"]))
    value = loss(columns, torch.empty(0))
    value.backward()
    result = {"loss": value.detach().reshape(1), "q": q.grad, "p": p.grad}
    if "h" in t:
        result["h"] = t["h"].grad
    save_file({k: v.contiguous() for k, v in result.items()}, out)


if __name__ == "__main__":
    main()
