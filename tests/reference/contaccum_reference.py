"""Straightforward ContAccum, written from DESIGN.md section 2 (the official algorithm).

Reads the embeddings of each micro-batch from a JSON file written by the C++ test, runs
the algorithm with plain torch (deques of per-micro-batch tensors, dense concatenation,
one cross-entropy), and writes per-step losses and the gradients of the 1/K-weighted
loss w.r.t. the current embeddings.

usage: contaccum_reference.py INPUT.json OUTPUT.json
"""
import json
import sys
from collections import deque

import torch
import torch.nn.functional as F


def run(spec):
    n_local, k, m = spec["n_local"], spec["k"], spec["m"]
    width = spec["width"]
    slots = spec["bank_microbatches"]  # capacity in micro-batches, as the reference deque
    query_bank = spec["query_bank"]
    hard_negative_bank = spec["hard_negative_bank"]
    persist = spec["persist_across_steps"]

    bank_q = deque(maxlen=slots) if query_bank else None
    bank_p = deque(maxlen=slots)
    bank_h = deque(maxlen=slots) if hard_negative_bank else None

    def with_bank(cur, bank):
        if bank is None or len(bank) == 0 or slots == 0:
            return cur
        return torch.cat([cur] + list(bank), dim=0)  # current first, then oldest -> newest

    def push(bank, x):
        if bank is not None and slots > 0:
            bank.append(x.detach().clone())

    out = []
    for step in spec["steps"]:
        q_all = torch.tensor(step["q"], dtype=torch.float64).view(-1, width)
        p_all = torch.tensor(step["p"], dtype=torch.float64).view(-1, width)
        h_all = torch.tensor(step["h"], dtype=torch.float64).view(-1, width) if m else torch.zeros(0, width, dtype=torch.float64)
        gq, gp, gh = torch.zeros_like(q_all), torch.zeros_like(p_all), torch.zeros_like(h_all)
        step_loss = 0.0
        for j in range(k):
            rows = slice(j * n_local, (j + 1) * n_local)
            hrows = slice(j * n_local * m, (j + 1) * n_local * m)
            q = q_all[rows].clone().requires_grad_(True)
            p = p_all[rows].clone().requires_grad_(True)
            h = h_all[hrows].clone().requires_grad_(True)
            Q = with_bank(q, bank_q)
            D = torch.cat([with_bank(p, bank_p), with_bank(h, bank_h)], dim=0)
            scores = Q @ D.T
            loss = F.cross_entropy(scores, torch.arange(Q.shape[0]))
            (loss / k).backward()
            step_loss += loss.item() / k
            gq[rows], gp[rows] = q.grad, p.grad
            if m:
                gh[hrows] = h.grad
            push(bank_q, q)
            push(bank_p, p)
            push(bank_h, h)
        if not persist:
            for b in (bank_q, bank_p, bank_h):
                if b is not None:
                    b.clear()
        out.append({"loss": step_loss, "gq": gq.flatten().tolist(), "gp": gp.flatten().tolist(),
                    "gh": gh.flatten().tolist()})
    return out


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump({"torch": torch.__version__, "steps": run(spec)}, f)
