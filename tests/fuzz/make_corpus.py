"""Writes the fuzz target's seed corpus (tests/fuzz/corpus/<kind>/<seed>/), small files in
the formats the parsers read, the binary and tokenizer ones made by the real writers
(safetensors, HF tokenizers, transformers). Run once by a developer with the project's
virtualenv; the output is committed, the fuzz run itself needs no Python.

    .venv/bin/python tests/fuzz/make_corpus.py
"""
import json
import pathlib
import shutil

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, decoders, trainers
from transformers import BertConfig, GPTNeoXConfig

here = pathlib.Path(__file__).resolve().parent
root = here / "corpus"
fixtures = here.parent / "fixtures" / "data"
shutil.rmtree(root, ignore_errors=True)
torch.manual_seed(0)

lines = [
    "install a web server", "nginx is a small, powerful, scalable web server",
    "a text editor for the console", "vector graphics editor", "rip an audio CD to ogg files",
    "Überprüfung der Paketsignaturen", "naïve café résumé", "日本語の入力メソッド",
]


def seed(kind, name):
    d = root / kind / name
    d.mkdir(parents=True)
    return d


# safetensors: weights as our loaders see them
d = seed("safetensors", "weights")
save_file({"embeddings.word_embeddings.weight": torch.randn(6, 4),
           "position_ids": torch.arange(5, dtype=torch.int64).view(1, 5),
           "pooler.dense.bias": torch.zeros(4, dtype=torch.bfloat16)},
          str(d / "model.safetensors"), metadata={"format": "pt"})


def checksum64(data: bytes) -> int:
    """contaccum::detail::checksum64 (state/detail/files.hpp), written again here."""
    mask, prime = (1 << 64) - 1, 0x100000001B3
    h, n = 0xCBF29CE484222325, len(data) - len(data) % 8
    for i in range(0, n, 8):
        h = ((h ^ int.from_bytes(data[i:i + 8], "little")) * prime) & mask
        h ^= h >> 29
    for b in data[n:]:
        h = ((h ^ b) * prime) & mask
    h ^= len(data)
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & mask
    return h ^ (h >> 33)


# the search cache (eval/embedding_cache.hpp): 6 rows, key "fuzz-seed" (the fuzzer asks for both)
d = seed("embedding_cache", "small")
emb = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1).contiguous()
save_file({"embeddings": emb}, str(d / "index.safetensors"),
          metadata={"format": "contaccum-embedding-cache", "key": "fuzz-seed", "rows": "6",
                    "checksum": f"{checksum64(emb.numpy().tobytes()):016x}"})

# tokenizer.json: a WordPiece (BERT's pipeline) and a byte-level BPE (GPT-NeoX's), trained here
wp = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
wp.normalizer = normalizers.BertNormalizer(lowercase=True)
wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
wp.train_from_iterator(lines, trainers.WordPieceTrainer(
    vocab_size=60, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
wp.post_processor = processors.TemplateProcessing(
    single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
    special_tokens=[("[CLS]", wp.token_to_id("[CLS]")), ("[SEP]", wp.token_to_id("[SEP]"))])
wp.decoder = decoders.WordPiece()
wp.save(str(seed("tokenizer", "wordpiece") / "tokenizer.json"))

bpe = Tokenizer(models.BPE())
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
bpe.train_from_iterator(lines, trainers.BpeTrainer(
    vocab_size=300, special_tokens=["<|endoftext|>", "<|padding|>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
bpe.post_processor = processors.ByteLevel(trim_offsets=False)
bpe.decoder = decoders.ByteLevel()
bpe.save(str(seed("tokenizer", "bpe") / "tokenizer.json"))

(seed("tokenizer", "vocab_txt") / "vocab.txt").write_text(
    "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "text", "edit", "##or", "web", "server"]) + "\n")

# config.json of each encoder family, and a sentence-transformers folder's own files
BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
           max_position_embeddings=32).to_json_file(str(seed("bert_config", "tiny") / "config.json"))
GPTNeoXConfig(vocab_size=64, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
              max_position_embeddings=32, rotary_pct=0.5).to_json_file(
    str(seed("gpt_neox_config", "tiny") / "config.json"))
d = seed("sentence_transformers", "mean")
(d / "modules.json").write_text(json.dumps([
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], indent=2))
(d / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128, "do_lower_case": False}))
(d / "1_Pooling").mkdir()
(d / "1_Pooling" / "config.json").write_text(json.dumps({
    "word_embedding_dimension": 8, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, indent=2))

# the dataset formats, from the readers' own fixtures
shutil.copy(fixtures / "pairs.jsonl", seed("jsonl", "pairs") / "data.jsonl")
shutil.copy(fixtures / "triples.tsv", seed("tsv", "triples") / "data.tsv")
shutil.copy(fixtures / "dpr_train.json", seed("dpr", "train") / "data.json")
shutil.copytree(fixtures / "beir", root / "beir" / "small")
d = seed("trec", "small")
(d / "qrels.txt").write_text("q1 0 d1 1\nq1 0 d2 0\nq2 0 d3 2\n")
(d / "run.txt").write_text("q1 Q0 d1 1 12.5 ours\nq1 Q0 d2 2 11.25 ours\nq2 Q0 d3 1 -0.5 ours\n")

for p in sorted(root.rglob("*")):
    if p.is_file():
        print(p.relative_to(root), p.stat().st_size)
