// Trains a tiny dual encoder for two steps through the installed/imported target.
#include <contaccum/contaccum.hpp>

#include <iostream>

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
    if (!std::isfinite(s.loss)) return 1;
  }
  std::cout << "consumer ok\n";
  return 0;
}
