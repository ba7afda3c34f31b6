// Compute and memory budgets: FLOPs per token with attention for Pythia shapes (hand
// counts; the paper's formulas at seq_len 0), parameter counts from a config against built
// models, tokens per pair measured on text, the predicted peak memory of a training step
// against MemoryMeter's measurement for Bert and GptNeox under every method, the largest
// micro-batch for a memory budget, and the errors of budgets too small for one step; a
// user-defined adapter (tests/support/layer_norm_only.hpp) trains with the Trainer and is
// costed through the customisation point like the built-in ones.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/layer_norm_only.hpp"

#include <contaccum/compute/flops_detailed.hpp>
#include <contaccum/compute/memory_model.hpp>
#include <contaccum/compute/tokens_per_pair.hpp>

#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

using namespace contaccum;
using test::error_of;
using Catch::Matchers::Contains;

namespace {

const std::string pythia_lora_targets = "query_key_value|dense|dense_h_to_4h|dense_4h_to_h";

GptNeoxConfig pythia(int64_t layers, int64_t d, int64_t heads) {
  return {.vocab_size = 50304, .hidden_size = d, .num_hidden_layers = layers, .num_attention_heads = heads,
          .intermediate_size = 4 * d};
}


}  // namespace

TEST_CASE("FLOPs per token with attention: hand counts for Pythia shapes", "[budget][flops]") {
  const auto p14 = pythia(6, 128, 4), p70 = pythia(6, 512, 8), p160 = pythia(12, 768, 12);
  const LoRA lora8{.rank = 8, .target_modules = pythia_lora_targets};
  // Pythia-70m, S = 75. N = 18915328; attention 12 S d L = 12 x 75 x 512 x 6 = 2764800.
  CHECK(training_flops_per_token(p70, FullFineTune{}, 75) == 116256768.0);  // 113491968 + 2764800
  // block k=1: 2N + 4 x 3153408 = 50444288; attention 4 S d L + 8 S d k = 921600 + 307200
  CHECK(training_flops_per_token(p70, BlockFreeze{.trainable_blocks = 1}, 75) == 51673088.0);
  CHECK(training_flops_per_token(p70, lora8, 75) == 79212544.0);       // 4N + 2 x 393216 + 2764800
  CHECK(training_flops_per_token(p70, BiasOnly{}, 75) == 78494720.0);  // 4N + 2 x 34304 + 2764800
  // Pythia-14m, S = 128: 6 x 1189888 + 12 x 128 x 128 x 6; bias-only N_t = 6 x 11d + d = 8576.
  CHECK(training_flops_per_token(p14, FullFineTune{}, 128) == 8318976.0);
  CHECK(training_flops_per_token(p14, BiasOnly{}, 128) == 5956352.0);  // 4759552 + 17152 + 1179648
  // Pythia-160m at S = 2048, where attention is 44% of full fine-tuning's linear cost.
  CHECK(training_flops_per_token(p160, FullFineTune{}, 2048) == 736828416.0);  // 510336000 + 226492416
  // block k=2: 226821120 + 4 x 2048 x 768 x 12 + 8 x 2048 x 768 x 2 = 226821120 + 75497472 + 25165824
  CHECK(training_flops_per_token(p160, BlockFreeze{.trainable_blocks = 2}, 2048) == 327484416.0);
  CHECK(training_flops_per_token(p160, LoRA{.rank = 128, .target_modules = pythia_lora_targets}, 2048) ==
        604465152.0);  // 4N + 2 x 18874368 + 226492416
  // BERT-base's shape (12 x 768, I 3072) has the same N as Pythia-160m: 85056000.
  const BertConfig bert_base{};
  CHECK(training_flops_per_token(bert_base, FullFineTune{}, 128) == 524491776.0);  // 510336000 + 14155776

  // A pair: a 16-token query and two 64-token passages, each at its own length.
  // 16 (6N + 12 x 16 x 512 x 6) + 2 x 64 (6N + 12 x 64 x 512 x 6) = 16654270464
  CHECK(training_flops_per_pair(p70, FullFineTune{}, 16, 64, 1) == 16654270464.0);

  SECTION("without attention (seq_len 0) they are the paper's formulas") {
    const double n = 18915328;
    CHECK(training_flops_per_token(p70, FullFineTune{}, 0) == flops_per_token<FullFineTune>(n, n));
    CHECK(training_flops_per_token(p70, BlockFreeze{.trainable_blocks = 1}, 0) ==
          flops_per_token<BlockFreeze>(n, 3153408));
    CHECK(training_flops_per_token(p70, lora8, 0) == flops_per_token<LoRA>(n, 393216));
    CHECK(training_flops_per_token(p70, BiasOnly{}, 0) == flops_per_token<BiasOnly>(n, 34304));
    CHECK(attention_flops_per_token(p70, FullFineTune{}, 0) == 0.0);
  }
  SECTION("bad lengths and settings name the field") {
    CHECK_THAT(error_of([&] { (void)training_flops_per_token(p70, FullFineTune{}, -1); }), Contains("seq_len"));
    CHECK_THAT(error_of([&] { (void)training_flops_per_token(p70, BlockFreeze{.trainable_blocks = 7}, 75); }),
               Contains("trainable_blocks (k) = 7 is outside [0, 6]"));
    CHECK_THAT(error_of([&] { (void)training_flops_per_pair(p70, FullFineTune{}, 0, 64); }),
               Contains("query_tokens (0)"));
    CHECK_THAT(error_of([&] { (void)trainable_non_embedding_parameters(p70, LoRA{.target_modules = "nothing"}); }),
               Contains("matches none of the"));
  }
}

TEST_CASE("Parameter counts from a config equal the built models' under every adapter", "[budget][flops]") {
  // Counted on the config (no model built) and on a prepared model; gradients are those a
  // forward/backward pass actually produces (GptNeox's LM head gets none).
  auto check = [](auto config, auto adapter, const char* what) {
    INFO(what);
    using Model = std::conditional_t<std::is_same_v<decltype(config), BertConfig>, Bert, GptNeox>;
    torch::manual_seed(0);
    Model model(config);
    adapter.prepare(model);
    const auto inv = contaccum::detail::adapted_inventory(config, adapter);
    CHECK(contaccum::detail::all_parameters(inv) == count_parameters(model));
    CHECK(trainable_non_embedding_parameters(config, adapter) == count_trainable_non_embedding(model));
    CHECK(contaccum::detail::non_embedding(inv) == count_non_embedding(model));
    model->train();
    auto ids = torch::randint(1, config.vocab_size, {2, 5}, torch::kLong);
    model->forward(ids, torch::ones_like(ids)).sum().backward();
    int64_t with_grad = 0;
    for (const auto& p : model->parameters()) with_grad += p.grad().defined() ? p.numel() : 0;
    CHECK(contaccum::detail::parameters_with_gradient(inv) == with_grad);
  };
  const BertConfig bert{.vocab_size = 97, .hidden_size = 32, .num_hidden_layers = 3, .num_attention_heads = 4,
                        .intermediate_size = 48, .max_position_embeddings = 16};
  const GptNeoxConfig neox{.vocab_size = 97, .hidden_size = 32, .num_hidden_layers = 3, .num_attention_heads = 4,
                           .intermediate_size = 48, .max_position_embeddings = 16};
  check(bert, FullFineTune{}, "bert full");
  check(bert, BlockFreeze{.trainable_blocks = 2}, "bert block k=2");
  check(bert, BiasOnly{}, "bert bias-only");
  check(bert, LoRA{.rank = 4}, "bert LoRA default targets");
  check(bert, LoRA{.rank = 3, .target_modules = "query|value"}, "bert LoRA query|value");
  check(neox, FullFineTune{}, "neox full");
  check(neox, BlockFreeze{.trainable_blocks = 1}, "neox block k=1");
  check(neox, BlockFreeze{.trainable_blocks = 0}, "neox block k=0 (final LayerNorm only)");
  check(neox, BiasOnly{}, "neox bias-only");
  check(neox, LoRA{.rank = 4, .target_modules = pythia_lora_targets}, "neox LoRA, four linears");
  check(neox, LoRA{.rank = 2, .target_modules = "dense_4h_to_h|embed_out"}, "neox LoRA with the LM head");
}

namespace {

// One id per whitespace-separated word between [CLS] (1) and [SEP] (2); truncation keeps [SEP].
struct WordTokenizer {
  std::vector<int64_t> encode(std::string_view text, tokenizers::EncodeOptions o) const {
    std::vector<int64_t> ids;
    if (o.add_special_tokens) ids.push_back(1);
    std::istringstream in{std::string(text)};
    for (std::string w; in >> w;) ids.push_back(3);
    if (o.add_special_tokens) ids.push_back(2);
    if (o.max_length > 0 && ids.size() > o.max_length) {
      ids.resize(o.max_length - 1);
      ids.push_back(2);
    }
    return ids;
  }
  int64_t pad_id() const { return 0; }
  std::size_t vocab_size() const { return 4; }
  std::string id_to_token(int64_t) const { return "w"; }
};

}  // namespace

TEST_CASE("Tokens per pair are measured on the data, truncation honoured", "[budget][tokens]") {
  const std::vector<TextPair> pairs{
      {"q1", "what is a cat", {"p1", "Cat", "a cat is a small animal"}, {{"n1", "", "dogs bark"}}},
      {"q2", "dogs", {"p2", "", "dogs are loyal"}, {{"n2", "Fish", "fish swim in water"}}},
  };
  const WordTokenizer tok;
  const TokenizeConfig cut{.query_max_length = 5, .passage_max_length = 8};
  // By hand (words + 2 specials, cut at 5 / 8): pair 1 = 5 + 8 + 4, pair 2 = 3 + 5 + 7.
  const auto counts = count_pair_tokens(tok, std::span<const TextPair>(pairs), cut);
  CHECK(counts.pairs == 2);
  CHECK(counts.query == 4.0);
  CHECK(counts.positive == 6.5);
  CHECK(counts.hard_negatives == 5.5);
  CHECK(counts.longest_query == 5);
  CHECK(counts.longest_passage == 8);
  CHECK(tokens_per_pair(tok, std::span<const TextPair>(pairs), cut) == 16.0);
  // No truncation: pair 1's query has 6 tokens and its positive 9.
  CHECK(tokens_per_pair(tok, std::span<const TextPair>(pairs), {.query_max_length = 0, .passage_max_length = 0}) ==
        17.0);
  // Without titles: pair 1's positive still 8 (cut), pair 2's negative 6.
  CHECK(tokens_per_pair(tok, std::span<const TextPair>(pairs),
                        {.query_max_length = 5, .passage_max_length = 8, .title_in_passage = false}) == 15.5);
  // The same count as the real tokens of the batch tokenize_pairs builds.
  const auto batch = tokenize_pairs(tok, std::span<const TextPair>(pairs), cut);
  const auto real = batch.queries.attention_mask.sum().item<int64_t>() +
                    batch.positives.attention_mask.sum().item<int64_t>() +
                    batch.hard_negatives.attention_mask.sum().item<int64_t>();
  CHECK(static_cast<double>(real) / 2.0 == 16.0);

  // From a sampler: the pairs of an epoch (file order here), or the first max_pairs.
  std::vector<TextExample> examples;
  for (const auto& p : pairs) examples.push_back({p.query_id, p.query, {p.positive}, p.hard_negatives, {}, {}});
  const PairSampler sampler(examples, {.hard_negatives_per_query = 1, .shuffle = false});
  CHECK(tokens_per_pair(tok, sampler, cut) == 16.0);
  CHECK(tokens_per_pair(tok, sampler, cut, 1) == 17.0);
  CHECK_THAT(error_of([&] { (void)tokens_per_pair(tok, std::span<const TextPair>()); }), Contains("no pairs"));
}

namespace {

double relative_error(double predicted, double measured) { return std::abs(predicted - measured) / measured; }

// Two real Trainer steps (GradAccum, one micro-batch of n pairs) of a random-initialised
// model: the second against the steady-state prediction, the first against the
// first-step one (no AdamW state before its update).
template <class Model, class A, class Config>
void check_step_memory(const char* what, const Config& config, A adapter, int64_t n, int64_t tq, int64_t tp,
                       int64_t m) {
  REQUIRE(MemoryMeter::install());  // before the model is built, so its parameters are counted
  const auto before = MemoryMeter::current_bytes();  // tensors of earlier tests still alive, if any
  torch::manual_seed(0);
  SyntheticPairs data({.vocab_size = config.vocab_size, .passage_length = tp, .query_length = tq,
                       .hard_negatives = m, .seed = 3});
  const auto first = data.next(n), second = data.next(n);
  Trainer<Model, GradAccum<>, A> trainer(Model(config), {.micro_batch_size = n, .learning_rate = 1e-4},
                                         GradAccum<>(), adapter);
  const auto s1 = trainer.step(first).peak_memory_bytes - before;
  const auto s2 = trainer.step(second).peak_memory_bytes - before;
  StepMemoryShape shape{.micro_batch_size = n, .query_length = tq, .passage_length = tp, .hard_negatives = m,
                        .shared_tower = Model::Impl::shared,
                        .pooling = pooling_retention<typename Model::Impl::pooler_type>};
  const auto steady = predict_step_memory(config, adapter, shape);
  shape.first_step = true;
  const auto first_step = predict_step_memory(config, adapter, shape);
  INFO(what << ", N_local " << n << ": predicted " << steady.peak << " bytes (" << steady.peak_phase
            << "), measured " << s2 << "; first step predicted " << first_step.peak << ", measured " << s1);
  CHECK(relative_error(static_cast<double>(steady.peak), static_cast<double>(s2)) <= 0.15);
  CHECK(relative_error(static_cast<double>(first_step.peak), static_cast<double>(s1)) <= 0.15);
}

template <class Model, class Config>
void check_every_method(const char* what, const Config& config, const std::string& lora_targets, int64_t n, int64_t tq,
                        int64_t tp, int64_t m) {
  check_step_memory<Model>(what, config, FullFineTune{}, n, tq, tp, m);
  check_step_memory<Model>(what, config, BlockFreeze{.trainable_blocks = 1}, n, tq, tp, m);
  check_step_memory<Model>(what, config, BiasOnly{}, n, tq, tp, m);
  check_step_memory<Model>(what, config, LoRA{.rank = 8, .target_modules = lora_targets}, n, tq, tp, m);
}

}  // namespace

TEST_CASE("Predicted step memory is within 15% of the measured peak", "[budget][memory]") {
  const std::string bert_targets = LoRA{}.target_modules;
  // BERT with dropout (the written-out attention keeps (B, h, T, T) tensors), ClsPooling, two towers.
  check_every_method<DualEncoder<Bert, ClsPooling>>(
      "bert 2 x 64, dropout 0.1",
      BertConfig{.vocab_size = 1000, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                 .intermediate_size = 256, .max_position_embeddings = 128},
      bert_targets, 8, 16, 64, 1);
  // BERT without dropout (flash attention), one shared tower, mean pooling, longer passages.
  check_every_method<DualEncoder<Bert, MeanPooling, SharedTower>>(
      "bert 3 x 128, no dropout, shared",
      BertConfig{.vocab_size = 2000, .hidden_size = 128, .num_hidden_layers = 3, .num_attention_heads = 4,
                 .intermediate_size = 512, .max_position_embeddings = 256, .hidden_dropout_prob = 0,
                 .attention_probs_dropout_prob = 0},
      bert_targets, 4, 16, 128, 1);
  // Pythia-like GPT-NeoX (parallel residual, rotary 0.25), last-token pooling, two towers.
  check_every_method<DualEncoder<GptNeox, LastTokenPooling>>(
      "neox 3 x 64",
      GptNeoxConfig{.vocab_size = 1000, .hidden_size = 64, .num_hidden_layers = 3, .num_attention_heads = 4,
                    .intermediate_size = 256, .max_position_embeddings = 128},
      pythia_lora_targets, 8, 16, 64, 1);
  // GPT-NeoX, shared tower, mean pooling, no hard negatives, larger batch.
  check_every_method<DualEncoder<GptNeox, MeanPooling, SharedTower>>(
      "neox 2 x 128, shared",
      GptNeoxConfig{.vocab_size = 1000, .hidden_size = 128, .num_hidden_layers = 2, .num_attention_heads = 8,
                    .intermediate_size = 512, .max_position_embeddings = 128},
      pythia_lora_targets, 16, 16, 64, 0);
  // Pythia's vocabulary: parameters and the AdamW update dominate full fine-tuning.
  check_step_memory<DualEncoder<GptNeox, LastTokenPooling>>(
      "neox 2 x 64, vocab 50304",
      GptNeoxConfig{.vocab_size = 50304, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                    .intermediate_size = 256, .max_position_embeddings = 128},
      FullFineTune{}, 2, 16, 32, 1);
}

namespace {

struct strategy_peaks {
  int64_t predicted, measured, predicted_first, measured_first;
};

// Full fine-tuning under strategy S: the first step, and the first step after the bank has
// filled (the third without a bank), against the model's first-step and steady predictions.
template <class Model, class S, class Config>
strategy_peaks strategy_step_memory(const char* what, const Config& config, S strategy, int64_t n, int64_t k,
                                    int64_t capacity, int64_t tq, int64_t tp, int64_t m, bool recompute = false,
                                    int64_t bank_element_bytes = 4) {
  REQUIRE(MemoryMeter::install());
  const auto before = MemoryMeter::current_bytes();
  torch::manual_seed(0);
  SyntheticPairs data({.vocab_size = config.vocab_size, .passage_length = tp, .query_length = tq,
                       .hard_negatives = m, .seed = 3});
  Model model(config);
  model->query_encoder->set_gradient_checkpointing(recompute);
  model->passage_encoder->set_gradient_checkpointing(recompute);
  Trainer<Model, S> trainer(model, {.micro_batch_size = n, .learning_rate = 1e-4}, std::move(strategy));
  const auto s1 = trainer.step(data.next(n * k)).peak_memory_bytes - before;
  for (int64_t i = 0; i < std::max<int64_t>(1, (capacity + n * k - 1) / (n * k)); ++i) (void)trainer.step(data.next(n * k));
  const auto steady_measured = trainer.step(data.next(n * k)).peak_memory_bytes - before;
  StepMemoryShape shape{.micro_batch_size = n, .query_length = tq, .passage_length = tp, .hard_negatives = m,
                        .shared_tower = Model::Impl::shared,
                        .pooling = pooling_retention<typename Model::Impl::pooler_type>,
                        .strategy = memory_strategy<S>, .micro_batches = k, .bank_capacity = capacity,
                        .bank_element_bytes = bank_element_bytes, .recompute = recompute};
  const auto steady = predict_step_memory(config, FullFineTune{}, shape);
  shape.first_step = true;
  const auto first_step = predict_step_memory(config, FullFineTune{}, shape);
  INFO(what << " " << S::name << (recompute ? " with recompute" : "")
            << (bank_element_bytes != 4 ? " with a bf16 bank" : "") << ", N_local " << n << ", K " << k << ": predicted " << steady.peak << " bytes ("
            << steady.peak_phase << "), measured " << steady_measured << "; first step predicted " << first_step.peak
            << ", measured " << s1);
  CHECK(relative_error(static_cast<double>(steady.peak), static_cast<double>(steady_measured)) <= 0.15);
  CHECK(relative_error(static_cast<double>(first_step.peak), static_cast<double>(s1)) <= 0.15);
  return {steady.peak, steady_measured, first_step.peak, s1};
}

template <class Model, class Config>
void check_every_strategy(const char* what, const Config& config, int64_t n, int64_t k, int64_t capacity, int64_t tq,
                          int64_t tp, int64_t m) {
  (void)strategy_step_memory<Model>(what, config, FullBatch<>(), n * k, 1, 0, tq, tp, m);
  const auto accum = strategy_step_memory<Model>(what, config, GradAccum<>(), n, k, 0, tq, tp, m);
  (void)strategy_step_memory<Model>(what, config, GradCache<>(), n, k, 0, tq, tp, m);
  const auto banked = strategy_step_memory<Model>(what, config, ContAccum<>({.capacity = capacity}), n, k, capacity,
                                                  tq, tp, m);
  (void)strategy_step_memory<Model>(what, config, ContAccumOverGradCache<>({.capacity = capacity}), n, k, capacity,
                                    tq, tp, m);
  // What the bank adds (rings, score cache, scores against banked rows, undo record) is
  // predicted, not absorbed by the tolerance: the two differences agree.
  const auto predicted_bank = static_cast<double>(banked.predicted - accum.predicted);
  const auto measured_bank = static_cast<double>(banked.measured - accum.measured);
  INFO(what << ": the bank adds " << measured_bank << " bytes, predicted " << predicted_bank);
  CHECK(measured_bank > 0.1 * static_cast<double>(accum.measured));
  CHECK(relative_error(predicted_bank, measured_bank) <= 0.25);
  // A bank stored in bf16 (BankConfig::storage_dtype): half the rings, but the loss reads
  // them back as fp32 copies; what it adds is predicted too.
  const auto narrow = strategy_step_memory<Model>(
      what, config, ContAccum<>({.capacity = capacity, .storage_dtype = torch::kBFloat16}), n, k, capacity, tq, tp, m,
      false, 2);
  const auto predicted_narrow = static_cast<double>(narrow.predicted - accum.predicted);
  const auto measured_narrow = static_cast<double>(narrow.measured - accum.measured);
  INFO(what << ": a bf16 bank adds " << measured_narrow << " bytes, predicted " << predicted_narrow);
  CHECK(relative_error(predicted_narrow, measured_narrow) <= 0.25);
  // Activation recompute: the saving is predicted too.
  const auto light = strategy_step_memory<Model>(what, config, GradAccum<>(), n, k, 0, tq, tp, m, true);
  (void)strategy_step_memory<Model>(what, config, GradCache<>(), n, k, 0, tq, tp, m, true);
  const auto saved = static_cast<double>(accum.measured - light.measured);
  INFO(what << ": recompute saves " << saved << " bytes, predicted " << accum.predicted - light.predicted);
  CHECK(saved > 0.1 * static_cast<double>(accum.measured));
  CHECK(relative_error(static_cast<double>(accum.predicted - light.predicted), saved) <= 0.25);
}

}  // namespace

TEST_CASE("Predicted step memory covers every strategy (K micro-batches, GradCache's caches, ContAccum's bank) and recompute",
          "[budget][memory][strategy]") {
  check_every_strategy<DualEncoder<Bert, ClsPooling>>(
      "bert 2 x 64, two towers, CLS",
      BertConfig{.vocab_size = 512, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                 .intermediate_size = 256, .max_position_embeddings = 128},
      8, 8, 1024, 8, 32, 1);
  check_every_strategy<DualEncoder<GptNeox, MeanPooling, SharedTower>>(
      "neox 2 x 128, shared, mean",
      GptNeoxConfig{.vocab_size = 512, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                    .intermediate_size = 256, .max_position_embeddings = 128},
      8, 8, 1024, 8, 32, 1);
}

TEST_CASE("largest_micro_batch for GradCache at a fixed N_total: the chunk that fits", "[budget][memory][strategy]") {
  const BertConfig config{.vocab_size = 512, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                          .intermediate_size = 256, .max_position_embeddings = 128};
  StepMemoryShape shape{.query_length = 16, .passage_length = 64, .hard_negatives = 1,
                        .pooling = pooling_retention<ClsPooling>, .strategy = memory_strategy<GradCache<>>,
                        .step_pairs = 256};
  auto peak = [&](int64_t n) {
    auto s = shape;
    s.micro_batch_size = n;
    return predict_step_memory(config, FullFineTune{}, s).peak;
  };
  // GradCache's peak grows with the chunk, not with N_total: a smaller chunk always fits less memory
  CHECK(peak(8) < peak(64));
  const auto budget = peak(24);
  const auto n = largest_micro_batch(budget, config, FullFineTune{}, shape);
  CHECK(n >= 24);
  CHECK(n < 256);
  CHECK(peak(n) <= budget);
  CHECK(peak(n + 1) > budget);
  // N_local never exceeds N_total
  CHECK(largest_micro_batch(int64_t{1} << 40, config, FullFineTune{}, shape) == 256);
  // the strategy is read from the type
  STATIC_REQUIRE(memory_strategy<ContAccumOverGradCache<>> == MemoryStrategy::cont_accum_over_grad_cache);
  STATIC_REQUIRE(memory_strategy<FullBatch<>> == MemoryStrategy::grad_accum);
  shape.strategy = MemoryStrategy::cont_accum;
  CHECK_THAT(error_of([&] { (void)predict_step_memory(config, FullFineTune{}, shape); }),
             Contains("StepMemoryShape.bank_capacity must be positive"));
}

TEST_CASE("The largest micro-batch fits the budget; a budget below one pair names the minimum",
          "[budget][memory][errors]") {
  const BertConfig config{.vocab_size = 1000, .hidden_size = 64, .num_hidden_layers = 2, .num_attention_heads = 4,
                          .intermediate_size = 256, .max_position_embeddings = 128};
  StepMemoryShape shape{.query_length = 16, .passage_length = 64, .hard_negatives = 1,
                        .pooling = pooling_retention<ClsPooling>};
  auto peak = [&](int64_t n) {
    auto s = shape;
    s.micro_batch_size = n;
    return predict_step_memory(config, FullFineTune{}, s).peak;
  };
  const int64_t budget = 40 << 20;  // 40 MiB
  const auto n = largest_micro_batch(budget, config, FullFineTune{}, shape);
  REQUIRE(n >= 2);
  CHECK(peak(n) <= budget);
  CHECK(peak(n + 1) > budget);
  CHECK(largest_micro_batch(budget, config, FullFineTune{}, shape, 3) == 3);  // capped by max_micro_batch

  // The chosen N_local really runs within the budget (up to the prediction's 15%).
  REQUIRE(MemoryMeter::install());
  const auto before = MemoryMeter::current_bytes();
  torch::manual_seed(0);
  SyntheticPairs data({.vocab_size = 1000, .passage_length = 64, .query_length = 16, .hard_negatives = 1});
  Trainer<DualEncoder<Bert, ClsPooling>, GradAccum<>> trainer(DualEncoder<Bert, ClsPooling>(config),
                                                               {.micro_batch_size = n});
  trainer.step(data.next(n));
  CHECK(static_cast<double>(trainer.step(data.next(n)).peak_memory_bytes - before) <= 1.15 * budget);

  // Too small for N_local = 1: the error gives the minimum (N_local = 1's peak) in bytes.
  const auto minimum = peak(1);
  const auto message = error_of([&] { (void)largest_micro_batch(minimum - 1, config, FullFineTune{}, shape); });
  CHECK_THAT(message, Contains("too small for one training step of full") &&
                          Contains("the minimum, for N_local = 1, is " + std::to_string(minimum) + " bytes"));
  CHECK(largest_micro_batch(minimum, config, FullFineTune{}, shape) == 1);
  CHECK_THAT(error_of([&] { (void)largest_micro_batch(0, config, FullFineTune{}, shape); }), Contains("budget_bytes"));
  shape.passage_length = 0;
  CHECK_THAT(error_of([&] { (void)predict_step_memory(config, FullFineTune{}, shape); }),
             Contains("StepMemoryShape.passage_length must be positive"));
}

TEST_CASE("A FLOP budget too small for one optimizer step names the minimum", "[budget][flops][errors]") {
  // Pythia-70m, full fine-tuning at 75 tokens: 116256768 FLOPs per token; 78 tokens per
  // pair, 8 pairs per step: one step costs 116256768 x 78 x 8 = 72544223232 FLOPs.
  const auto per_token = training_flops_per_token(pythia(6, 512, 8), FullFineTune{}, 75);
  CHECK(pairs_for_budget(72544223232.0, per_token, 78.0, 8) == 8);
  CHECK(pairs_for_budget(3 * 72544223232.0 + 1, per_token, 78.0, 8) == 24);
  CHECK_THAT(error_of([&] { (void)pairs_for_budget(72544223231.0, per_token, 78.0, 8); }),
             Contains("too small for one optimizer step of 8 pairs") && Contains("the minimum is 7.25442e+10 FLOPs"));
}

namespace {

struct NotAModel {};

// Parameters that sit in a LayerNorm: Bert's "...LayerNorm.weight", GptNeox's "..._layernorm.bias",
// "...final_layer_norm.weight".
bool in_layer_norm(const std::string& name) {
  return name.find("LayerNorm.") != std::string::npos || name.find("layernorm.") != std::string::npos ||
         name.find("layer_norm.") != std::string::npos;
}

}  // namespace

TEST_CASE("A user-defined adapter trains with the Trainer and is costed like the built-in ones",
          "[budget][adapters][customisation]") {
  using user_adapters::LayerNormOnly;
  using Model = DualEncoder<Bert, MeanPooling, SharedTower>;
  static_assert(AdapterFor<LayerNormOnly, Model> && AdapterFor<LayerNormOnly, GptNeox> &&
                AdapterFor<LayerNormOnly, DualEncoder<GptNeox, LastTokenPooling>>);
  static_assert(!AdapterFor<LayerNormOnly, NotAModel>, "its prepare needs a module");
  static_assert(CostedAdapter<LayerNormOnly> && !SettableAdapter<LayerNormOnly>);

  SECTION("two Trainer steps move only the LayerNorms") {
    torch::manual_seed(4);
    Model model(test::tiny_bert(0.0));
    std::map<std::string, torch::Tensor> before;
    for (const auto& p : model->named_parameters()) before.emplace(p.key(), p.value().detach().clone());
    Trainer<Model, GradAccum<>, LayerNormOnly> trainer(std::move(model),
                                                       {.micro_batch_size = 4, .learning_rate = 1e-3});
    auto data = test::tiny_data(1, 7);
    for (int i = 0; i < 2; ++i) CHECK(std::isfinite(trainer.step(data.next(8)).loss));
    std::set<std::string> changed, trainable, norms;
    for (const auto& p : trainer.model()->named_parameters()) {
      if (!torch::equal(p.value(), before.at(p.key()))) changed.insert(p.key());
      if (p.value().requires_grad()) trainable.insert(p.key());
      if (in_layer_norm(p.key())) norms.insert(p.key());
    }
    CHECK(norms.size() == 2 * (1 + 2 * 2));  // weight and bias of the embeddings' and 2 per layer's LayerNorm
    CHECK(trainable == norms);
    CHECK(changed == norms);
  }

  SECTION("FLOPs per token and trainable counts equal the built, prepared model's") {
    const BertConfig bert{.vocab_size = 97, .hidden_size = 32, .num_hidden_layers = 3, .num_attention_heads = 4,
                          .intermediate_size = 48, .max_position_embeddings = 16};
    const GptNeoxConfig neox{.vocab_size = 97, .hidden_size = 32, .num_hidden_layers = 3, .num_attention_heads = 4,
                             .intermediate_size = 48, .max_position_embeddings = 16};
    auto check = [](auto config, int64_t layer_norm_parameters, const char* what) {
      INFO(what);
      using Encoder = std::conditional_t<std::is_same_v<decltype(config), BertConfig>, Bert, GptNeox>;
      torch::manual_seed(0);
      Encoder model(config);
      LayerNormOnly{}.prepare(model);
      CHECK(count_trainable(model) == layer_norm_parameters);
      CHECK(trainable_parameters(config, LayerNormOnly{}) == count_trainable(model));
      CHECK(trainable_non_embedding_parameters(config, LayerNormOnly{}) == count_trainable_non_embedding(model));
      const auto n = static_cast<double>(non_embedding_parameters(config));
      const auto nt = static_cast<double>(layer_norm_parameters);  // every LayerNorm is a non-embedding parameter
      CHECK(flops_per_token<LayerNormOnly>(n, nt) == 4.0 * n + 2.0 * nt);  // the paper's 4N + 2N_t
      CHECK(flops_per_token(LayerNormOnly{}, model) == 4.0 * n + 2.0 * nt);
      CHECK(training_flops_per_token(config, LayerNormOnly{}, 0) == flops_per_token(LayerNormOnly{}, model));
      // attention: 12 S d L (activation gradients through every block), S = 16
      CHECK(training_flops_per_token(config, LayerNormOnly{}, 16) == 4.0 * n + 2.0 * nt + 12.0 * 16 * 32 * 3);
      // the memory model: gradients (and AdamW's two states) for exactly these parameters, two towers
      const auto e = predict_step_memory(config, LayerNormOnly{}, {.micro_batch_size = 2, .query_length = 8,
                                                                   .passage_length = 12});
      CHECK(e.gradients == 2 * count_trainable(model) * 4);
      CHECK(e.optimizer_states == 2 * e.gradients);
      CHECK(e.parameters == 2 * count_parameters(model) * 4);
      CHECK(e.peak > e.parameters);
    };
    check(bert, (1 + 2 * 3) * 2 * 32, "bert: the embeddings' LayerNorm and two per layer");
    check(neox, (2 * 3 + 1) * 2 * 32, "neox: two per layer and the final LayerNorm");
  }
}
