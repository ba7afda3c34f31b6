"""Reference token ids from the Hugging Face tokenizers library, for the C++ tokenizer tests.

  lines  TRANSLATION OUT N      N real English lines from apt's package descriptions
  train-bpe LINES OUT_DIR       a byte-level BPE tokenizer.json trained on those lines
                                (GPT-NeoX's pipeline: NFC, ByteLevel without prefix space)
  train-unigram LINES OUT_DIR [VOCAB]
                                a SentencePiece Unigram model trained by sentencepiece on those
                                lines (nmt_nfkc rules, as XLM-R's) and converted to tokenizer.json
                                by transformers' XLMRobertaConverter: Precompiled + Strip +
                                Replace normalisers, Metaspace, <s> $A </s>, <mask> with lstrip
  train-unigram-hf LINES OUT_DIR
                                a Unigram tokenizer.json trained by the tokenizers library itself:
                                NFKC + Replace(regex) + Strip, [WhitespaceSplit, Metaspace],
                                <s> $A </s>
  encode TOKENIZER LINES OUT [MAX_LENGTH]
                                ids of every line, specials included, as JSON
                                (TOKENIZER: a tokenizer.json, or a vocab.txt for BertWordPiece)
  bench  TOKENIZER LINES REPEAT one-thread encode_batch throughput (lines/s) as JSON
"""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers,  # noqa: E402
                        processors, trainers)
from tokenizers.implementations import BertWordPieceTokenizer  # noqa: E402


def description_lines(translation, n):
    """Every line of text in the descriptions (short and long), deterministic, deduplicated."""
    out, seen = [], set()
    with open(translation, encoding="utf-8") as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("Description-en: "):
                text = line[len("Description-en: "):]
            elif line.startswith(" ") and line.strip() != ".":
                text = line[1:]
            else:
                continue
            if text.strip() and text not in seen:
                seen.add(text)
                out.append(text)
    # Spread the sample over the whole file rather than its first packages, then add the
    # lines with non-ASCII characters (accents, CJK, symbols), which are where tokenizers differ.
    step = max(1, len(out) // n)
    sample = out[::step][:n]
    chosen = set(sample)
    sample += [t for t in out if not t.isascii() and t not in chosen][:3000]
    return sample


def load(path, max_length=0):
    if path.endswith(".txt"):
        tok = BertWordPieceTokenizer(path, lowercase=True)
    else:
        tok = Tokenizer.from_file(path)
    # A tokenizer.json may carry padding/truncation settings (all-MiniLM-L6-v2's pads to 128):
    # compare plain ids, with truncation only where asked.
    tok.no_padding()
    tok.no_truncation()
    if max_length:
        tok.enable_truncation(max_length)
    return tok


def main():
    cmd = sys.argv[1]
    if cmd == "lines":
        lines = description_lines(sys.argv[2], int(sys.argv[4]))
        with open(sys.argv[3], "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line + "\n")
    elif cmd == "train-bpe":
        with open(sys.argv[2], encoding="utf-8") as f:
            lines = f.read().split("\n")
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=6000, min_frequency=2,
                                      special_tokens=["<|endoftext|>", "<|padding|>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
        tok.train_from_iterator(lines, trainer=trainer)
        # Added tokens exercising each matching rule: raw text with lstrip, normalised text
        # with single_word, rstrip.
        tok.add_tokens([AddedToken("<mask>", lstrip=True, normalized=False),
                        AddedToken("Debian", single_word=True, normalized=True),
                        AddedToken("[sep]", rstrip=True, normalized=False)])
        os.makedirs(sys.argv[3], exist_ok=True)
        tok.save(os.path.join(sys.argv[3], "tokenizer.json"))
    elif cmd == "train-unigram":
        import types
        import sentencepiece as spm
        from transformers.convert_slow_tokenizer import XLMRobertaConverter
        os.makedirs(sys.argv[3], exist_ok=True)
        prefix = os.path.join(sys.argv[3], "spm")
        # sentencepiece's defaults are XLM-R's: <unk> 0, <s> 1, </s> 2, nmt_nfkc, a dummy prefix.
        spm.SentencePieceTrainer.train(input=sys.argv[2], model_prefix=prefix, vocab_size=int(sys.argv[4]) if len(sys.argv) > 4 else 4000,
                                       model_type="unigram", character_coverage=0.9995, num_threads=1,
                                       minloglevel=2)
        # The converter reads the model file and two ids from the tokenizer it converts;
        # fairseq's order puts <s> <pad> </s> <unk> first, <mask> last.
        fairseq = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
        slow = types.SimpleNamespace(vocab_file=prefix + ".model", add_prefix_space=True, legacy=True,
                                     handle_byte_fallback=False, convert_tokens_to_ids=fairseq.__getitem__)
        tok = XLMRobertaConverter(slow).converted()
        tok.add_special_tokens([AddedToken("<pad>", special=True, normalized=False),
                                AddedToken("<unk>", special=True, normalized=False),
                                AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
        tok.save(os.path.join(sys.argv[3], "tokenizer.json"))
    elif cmd == "train-unigram-hf":
        with open(sys.argv[2], encoding="utf-8") as f:
            lines = f.read().split("\n")
        tok = Tokenizer(models.Unigram())
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " "),
                                               normalizers.Strip(left=False, right=True)])
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace()])
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=3000, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                          unk_token="<unk>", show_progress=False)
        tok.train_from_iterator(lines, trainer=trainer)
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>",
                                                           special_tokens=[("<s>", 0), ("</s>", 2)])
        os.makedirs(sys.argv[3], exist_ok=True)
        tok.save(os.path.join(sys.argv[3], "tokenizer.json"))
    elif cmd == "encode":
        tok = load(sys.argv[2], int(sys.argv[5]) if len(sys.argv) > 5 else 0)
        with open(sys.argv[3], encoding="utf-8") as f:
            lines = f.read().split("\n")[:-1]
        ids = [e.ids for e in tok.encode_batch(lines)]
        with open(sys.argv[4], "w") as f:
            json.dump(ids, f)
    elif cmd == "bench":
        tok = load(sys.argv[2])
        with open(sys.argv[3], encoding="utf-8") as f:
            lines = f.read().split("\n")[:-1]
        repeat = int(sys.argv[4])
        tok.encode_batch(lines)  # warm-up
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            tok.encode_batch(lines)
            best = min(best, time.perf_counter() - t0)
        print(json.dumps({"lines": len(lines), "seconds": best, "lines_per_s": len(lines) / best}))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
