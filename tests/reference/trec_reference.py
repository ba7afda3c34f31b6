"""pytrec_eval (trec_eval's own C code) as the reference for contaccum's retrieval metrics.

  trec_reference.py QRELS RUN OUT.json [ACCURACY_CUTOFFS]

QRELS: 'qid 0 docid rel' lines; RUN: 'qid Q0 docid rank score tag' lines, both read with
pytrec_eval's own parsers. OUT.json: {qid: {measure: value}} for every query pytrec_eval
returns, measures named as trec_eval names them:

  recip_rank_10   recip_rank of the run cut at rank 10 (MRR@10). trec_eval's recip_rank
                  has no cutoff (pytrec_eval ignores "recip_rank.10"), and cutting the
                  run here would need trec_eval's tie order, which is what the test checks;
                  so it is taken from the uncut recip_rank: 1/rank if rank <= 10, else 0.
  ndcg_cut_10     nDCG@10
  recall_100      Recall@100
  success_K       Top-K accuracy for K in ACCURACY_CUTOFFS (default 1,5,20,100)
"""
import json
import sys

import pytrec_eval


def main():
    qrels_path, run_path, out_path = sys.argv[1:4]
    cutoffs = sys.argv[4] if len(sys.argv) > 4 else "1,5,20,100"
    with open(qrels_path) as f:
        qrels = pytrec_eval.parse_qrel(f)
    with open(run_path) as f:
        run = pytrec_eval.parse_run(f)
    measures = {"recip_rank", "ndcg_cut.10", "recall.100", "success." + cutoffs}
    results = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    out = {}
    for qid, values in results.items():
        rr = values["recip_rank"]
        row = {"recip_rank_10": rr if rr >= 0.1 else 0.0,
               "ndcg_cut_10": values["ndcg_cut_10"],
               "recall_100": values["recall_100"]}
        for k in cutoffs.split(","):
            row["success_" + k] = values["success_" + k]
        out[qid] = row
    with open(out_path, "w") as f:
        json.dump({"version": pytrec_eval.__version__ if hasattr(pytrec_eval, "__version__") else "",
                   "per_query": out}, f)


if __name__ == "__main__":
    main()
