// Pooling readers against per-sequence loops over the real tokens, with right and left padding.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

using namespace contaccum;

namespace {
// Three sequences of lengths 5, 2 and 3 in a (3, 5, 4) batch, padded on the right or the
// left; padded positions hold large values that a wrong reader would pick up.
struct Padded {
  torch::Tensor hidden, mask;
  std::vector<std::vector<int64_t>> real;  // real positions of each row
};
Padded padded(bool left) {
  torch::manual_seed(7);
  const std::vector<int64_t> lengths{5, 2, 3};
  auto hidden = torch::randn({3, 5, 4}, torch::kFloat64);
  auto mask = torch::zeros({3, 5}, torch::kLong);
  Padded p{hidden, mask, {}};
  for (int64_t i = 0; i < 3; ++i) {
    std::vector<int64_t> real;
    for (int64_t j = 0; j < lengths[i]; ++j) real.push_back(left ? 5 - lengths[i] + j : j);
    for (int64_t t = 0; t < 5; ++t) {
      const bool is_real = std::find(real.begin(), real.end(), t) != real.end();
      mask[i][t] = is_real ? 1 : 0;
      if (!is_real) hidden[i][t].fill_(100.0);
    }
    p.real.push_back(real);
  }
  return p;
}
}  // namespace

TEST_CASE("Pooling readers use real tokens only, for right and left padding", "[pooling]") {
  for (bool left : {false, true}) {
    INFO((left ? "left" : "right") << " padding");
    const auto p = padded(left);
    auto last = LastTokenPooling{}(p.hidden, p.mask);
    auto max = MaxPooling{}(p.hidden, p.mask);
    auto mean = MeanPooling{}(p.hidden, p.mask);
    for (int64_t i = 0; i < 3; ++i) {
      std::vector<torch::Tensor> rows;
      for (auto t : p.real[i]) rows.push_back(p.hidden[i][t]);
      auto real = torch::stack(rows);  // (len, H)
      CHECK(torch::allclose(last[i], p.hidden[i][p.real[i].back()]));
      CHECK(torch::allclose(max[i], std::get<0>(real.max(0))));
      CHECK(torch::allclose(mean[i], real.mean(0)));
    }
  }
  // CLS reads position 0 whatever the mask says (BERT puts [CLS] first)
  const auto p = padded(false);
  CHECK(torch::equal(ClsPooling{}(p.hidden, p.mask), p.hidden.select(1, 0)));
}

TEST_CASE("Normalized<P> gives unit vectors in the direction of P's output", "[pooling]") {
  const auto p = padded(false);
  auto raw = MeanPooling{}(p.hidden, p.mask);
  auto unit = Normalized<MeanPooling>{}(p.hidden, p.mask);
  CHECK(torch::allclose(unit.norm(2, 1), torch::ones({3}, torch::kFloat64)));
  CHECK(torch::allclose(unit * raw.norm(2, 1, true), raw));
  static_assert(Pooler<Normalized<LastTokenPooling>> && Pooler<MaxPooling> && Pooler<LastTokenPooling>);
}

TEST_CASE("A dual encoder with a normalized pooler produces unit embeddings", "[pooling]") {
  DualEncoder<Bert, Normalized<MaxPooling>, SharedTower> model(test::tiny_bert(0.0));
  auto b = test::tiny_data(0).next(4);
  auto q = model->encode_queries(b.queries);
  CHECK(torch::allclose(q.norm(2, 1), torch::ones({4})));
}
