"""sentence-transformers as the reference for the C++ embedding tests.

  encode MODEL_DIR LINES OUT    SentenceTransformer(MODEL_DIR).encode() of every line (JSON rows)
  hf MODEL_DIR LINES OUT        transformers AutoModel + the folder's pooling, as a second check
  loading MODEL_DIR - OUT       what AutoModel.from_pretrained reports: the class, and the
                                weights it had to initialise (missing) or left unused
  prompts MODEL_DIR LINES OUT   the folder's prompts, and encode_query() / encode_document() of
                                every line (sentence-transformers applies the saved prompts)
"""
import json
import sys

import torch


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n")[:-1]


def main():
    cmd, model_dir, lines_path, out = sys.argv[1:5]
    torch.manual_seed(0)
    if cmd == "loading":
        from transformers import AutoModel
        model, info = AutoModel.from_pretrained(model_dir, output_loading_info=True)
        with open(out, "w") as f:
            json.dump({"class": type(model).__name__, "missing_keys": sorted(info["missing_keys"]),
                       "unexpected_keys": sorted(info["unexpected_keys"])}, f)
        return
    lines = read_lines(lines_path)
    if cmd == "prompts":
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(model_dir, device="cpu")
        q = model.encode_query(lines, batch_size=32, convert_to_numpy=True)
        d = model.encode_document(lines, batch_size=32, convert_to_numpy=True)
        with open(out, "w") as f:
            json.dump({"prompts": model.prompts, "default_prompt_name": model.default_prompt_name,
                       "query": q.tolist(), "document": d.tolist()}, f)
        return
    if cmd == "encode":
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(model_dir, device="cpu")
        emb = model.encode(lines, batch_size=32, convert_to_numpy=True)
    elif cmd == "hf":
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModel.from_pretrained(model_dir).eval()
        with torch.no_grad():
            b = tok(lines, padding=True, truncation=True, max_length=256, return_tensors="pt")
            h = model(**b).last_hidden_state
            m = b["attention_mask"].unsqueeze(-1).float()
            emb = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    else:
        raise SystemExit(__doc__)
    with open(out, "w") as f:
        json.dump(emb.tolist(), f)


if __name__ == "__main__":
    main()
