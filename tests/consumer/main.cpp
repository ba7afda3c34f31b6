// Trains a tiny dual encoder for two steps through the installed/imported target.
#include <contaccum/contaccum.hpp>

#include <cmath>
#include <iostream>

// A failed check exits non-zero with its name; the ctest wrapper requires "consumer ok".
static void check(bool ok, const char* what) {
  if (!ok) {
    std::cerr << "consumer: assertion failed: " << what << "\n";
    std::exit(1);
  }
}

int main() {
  using namespace contaccum;
  using Model = DualEncoder<Bert, MeanPooling, SharedTower>;
  Trainer<Model, GradCache<>> trainer(
      Model(BertConfig{.vocab_size = 64, .hidden_size = 16, .num_hidden_layers = 1, .num_attention_heads = 2,
                       .intermediate_size = 32, .max_position_embeddings = 32}),
      {.micro_batch_size = 2, .learning_rate = 1e-3});
  SyntheticPairs data({.vocab_size = 64, .passage_length = 8, .query_length = 4});
  for (int i = 0; i < 2; ++i) {
    const auto s = trainer.step(data.next(4));
    check(std::isfinite(s.loss), "finite loss");
    check(s.negatives_per_query == 7, "GradCache: 3 in-batch + 4 hard negatives per query for 4 pairs");
  }
  std::cout << "consumer ok\n";
  return 0;
}
