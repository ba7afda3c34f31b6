// A first trainer of one's own: text pairs from a file -> tokenized PairBatches -> a
// pretrained sentence-transformers checkpoint fine-tuned with GradCache -> a folder
// sentence-transformers loads again. docs/first_trainer.md walks through it line by line.
//
//   ./build/examples/first_trainer PAIRS MODEL_DIR OUT_DIR [STEPS]
//
// PAIRS: any training file the readers take (JSONL pairs/triplets, DPR JSON, TSV triples or
// a BEIR folder); MODEL_DIR: a BERT sentence-transformers folder (models/all-MiniLM-L6-v2).
#include <contaccum/contaccum.hpp>

#include <cstdio>
#include <exception>
#include <string>

namespace ca = contaccum;

// The model: one BERT tower shared by queries and passages, mean pooling, unit rows.
using Reader = ca::Normalized<ca::MeanPooling>;
using Model = ca::DualEncoder<ca::Bert, Reader, ca::SharedTower>;
// InfoNCE over cosine at temperature 0.05 (scale 20) is sentence-transformers' MNRL; under
// GradCache it is CachedMultipleNegativesRankingLoss.
using Loss = ca::InfoNCE<ca::Cosine>;
using MyTrainer = ca::Trainer<Model, ca::GradCache<>, ca::FullFineTune, Loss>;

int main(int argc, char** argv) try {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s PAIRS MODEL_DIR OUT_DIR [STEPS]\n", argv[0]);
    return 2;
  }
  const std::string pairs_path = argv[1], model_dir = argv[2], out_dir = argv[3];
  const int steps = argc > 4 ? std::stoi(argv[4]) : 10;

  // 1. Text: every example with its positives (and hard negatives, if the file has them).
  auto [examples, read] = ca::read_training_examples(pairs_path);
  std::printf("%zu training pairs from %s\n", examples.size(), pairs_path.c_str());

  // 2. Text -> PairBatch: a seeded sampler and the checkpoint's own tokenizer; each step
  //    takes 8 pairs, queries cut at 32 tokens and passages at 128.
  auto tokenizer = ca::tokenizers::WordPiece::from_pretrained(model_dir);
  ca::PairSampler sampler(std::move(examples), {.seed = 13, .hard_negatives_per_query = 0});
  ca::PairLoader<ca::tokenizers::WordPiece> loader(
      std::move(sampler), tokenizer, {.batch_size = 8, .tokenize = {.query_max_length = 32, .passage_max_length = 128}});

  // 3. The pretrained weights. The Trainer holds the same module (weights are shared, not
  //    copied) and starts its own, fresh AdamW state.
  Model model(ca::load_bert(model_dir));
  MyTrainer trainer(model,
                    {.micro_batch_size = 4, .learning_rate = 2e-5, .warmup_steps = 1, .total_steps = steps},
                    ca::GradCache<>{}, ca::FullFineTune{}, Loss{.similarity = {.temperature = 0.05}});

  // 4. Train: each step encodes 8 pairs in micro-batches of 4 and takes one exact step.
  for (int s = 0; s < steps; ++s) {
    const auto st = trainer.step(loader.next());
    std::printf("step %d  loss %.4f  negatives per query %.0f\n", s + 1, st.loss, st.negatives_per_query);
  }

  // 5. Export: the shared tower, with its tokenizer, pooling and max_seq_length.
  ca::save_sentence_transformer<Reader>(model->query_encoder, model_dir, out_dir, 128);
  std::printf("saved %s (load it with SentenceTransformer(\"%s\"))\n", out_dir.c_str(), out_dir.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
