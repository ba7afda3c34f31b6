#pragma once
// Shared test fixtures: tiny models, a lookup bi-encoder whose embeddings are table rows
// (so gradients w.r.t. embeddings can be read off the tables), gradient comparison.

#include <contaccum/contaccum.hpp>

#include <torch/torch.h>

#include <cstdlib>
#include <unistd.h>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace test {

// A scratch folder under the system temp directory, private to this process: ctest runs
// test cases as parallel processes, which must not read each other's half-written files.
inline std::filesystem::path scratch_dir(const std::string& name) {
  const auto dir = std::filesystem::temp_directory_path() / (name + "." + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// The message of the invalid_input `f` throws, or "(no invalid_input was thrown)": a
// CHECK_THAT on it fails both when the error is missing and when its text is wrong.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const contaccum::invalid_input& e) {
    return e.what();
  }
  return "(no invalid_input was thrown)";
}

// The line run_python_reference prints when there is no virtualenv Python: ctest marks the
// test skipped when its output has it (SKIP_REGULAR_EXPRESSION in tests/CMakeLists.txt).
inline constexpr const char* python_skip_message =
    "SKIPPED: the Python references need the project's virtualenv (.venv); run scripts/setup.sh";

// Runs tests/reference/<script> with the project's virtualenv Python; true on exit 0.
// Without that Python (CONTACCUM_PYTHON is "" when CMake found no .venv, or the file has
// gone since) it prints python_skip_message and returns false: the calling REQUIRE fails,
// so the test never passes silently, and ctest reports it as skipped. Such test cases carry
// the [python] tag (contaccum_tests "~[python]" runs the rest).
inline bool run_python_reference(const std::string& script, const std::string& args) {
  const std::string python = CONTACCUM_PYTHON;
  if (python.empty() || !std::filesystem::exists(python)) {
    std::cout << python_skip_message << " (needed for tests/reference/" << script << ")" << std::endl;
    return false;
  }
  const auto cmd = python + " " + CONTACCUM_TEST_DIR + "/reference/" + script + " " + args;
  return std::system(cmd.c_str()) == 0;
}

inline contaccum::BertConfig tiny_bert(double dropout = 0.1) {
  return {.vocab_size = 120, .hidden_size = 32, .num_hidden_layers = 2, .num_attention_heads = 4,
          .intermediate_size = 64, .max_position_embeddings = 64, .hidden_dropout_prob = dropout,
          .attention_probs_dropout_prob = dropout};
}

inline contaccum::SyntheticPairs tiny_data(int64_t m = 1, uint64_t seed = 1) {
  return contaccum::SyntheticPairs(
      {.vocab_size = 120, .passage_length = 12, .query_length = 6, .hard_negatives = m, .seed = seed});
}

// Embeddings are rows of two tables: a query table and a passage table (separate towers).
// A token batch of ids (B, 1) selects rows; the tables' gradients are then exactly the
// gradients w.r.t. the embeddings of each micro-batch (ids never repeat within a test).
struct LookupBiEncoderImpl : torch::nn::Module {
  LookupBiEncoderImpl(int64_t rows, int64_t width, torch::Dtype dtype = torch::kFloat64) {
    queries = register_parameter("queries", torch::randn({rows, width}, dtype));
    passages = register_parameter("passages", torch::randn({rows, width}, dtype));
  }
  torch::Tensor encode_queries(const contaccum::TokenBatch& b) { return queries.index_select(0, b.input_ids.select(1, 0)); }
  torch::Tensor encode_passages(const contaccum::TokenBatch& b) { return passages.index_select(0, b.input_ids.select(1, 0)); }
  std::vector<torch::Tensor> query_parameters() const { return {queries}; }
  std::vector<torch::Tensor> passage_parameters() const { return {passages}; }
  torch::Tensor queries, passages;
};
TORCH_MODULE(LookupBiEncoder);

// ids [first, first + n) as a (n, 1) token batch.
inline contaccum::TokenBatch id_rows(int64_t first, int64_t n) {
  auto ids = torch::arange(first, first + n, torch::kLong).unsqueeze(1);
  return {ids, torch::ones_like(ids)};
}

// A lookup batch: queries use query-table rows, positives/negatives passage-table rows.
inline contaccum::PairBatch lookup_batch(int64_t first_query, int64_t first_passage, int64_t n, int64_t m) {
  contaccum::PairBatch b{id_rows(first_query, n), id_rows(first_passage, n), {}};
  if (m > 0) b.hard_negatives = id_rows(first_passage + n, n * m);
  return b;
}

inline std::vector<torch::Tensor> grads_of(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return out;
}

// ||a - b|| / ||b|| over all tensors together.
inline double relative_error(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]).to(torch::kDouble).pow(2).sum().item<double>();
    den += b[i].to(torch::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(num / den);
}

inline void zero_grads(const std::vector<torch::Tensor>& params) {
  for (auto p : params)
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
}

}  // namespace test
