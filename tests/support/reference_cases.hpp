#pragma once
// What the parity tests against a Python reference share: the reference's cases made
// once per process, JSON arrays read back as tensors, errors measured on real tokens.

#include "support/helpers.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace test {

/// Runs tests/reference/<script> `make <dir>` once per process and returns the cases.json
/// it wrote. `dir` is private to the process (see scratch_dir).
inline const nlohmann::json& reference_cases(const std::string& script, const std::filesystem::path& dir) {
  static std::map<std::string, nlohmann::json> made;
  if (const auto it = made.find(script); it != made.end()) return it->second;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  REQUIRE(run_python_reference(script, "make " + dir.string()));
  return made[script] = nlohmann::json::parse(std::ifstream(dir / "cases.json"));
}

/// `j[key]`, a flat list of ids, as a (rows, T) int64 tensor; the rows and T come from
/// `j["shape"]`.
inline torch::Tensor ids_of(const nlohmann::json& j, const char* key) {
  const auto rows = j["shape"][0].get<int64_t>(), t = j["shape"][1].get<int64_t>();
  return torch::tensor(j[key].get<std::vector<int64_t>>(), torch::kLong).view({rows, t});
}

/// `j[key]`, a flat list of numbers, as a (rows, T, D) double tensor (D inferred), e.g.
/// hidden states (B, T, H) or logits (B, T, V).
inline torch::Tensor values_of(const nlohmann::json& j, const char* key) {
  const auto rows = j["shape"][0].get<int64_t>(), t = j["shape"][1].get<int64_t>();
  return torch::tensor(j[key].get<std::vector<double>>(), torch::kDouble).view({rows, t, -1});
}

/// Max |a - b| over real (unpadded) tokens; a, b: (B, T, D), mask: (B, T).
inline double max_error_on_real_tokens(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& mask) {
  const auto keep = mask.to(torch::kBool);
  return (a.to(torch::kDouble).index({keep}) - b.to(torch::kDouble).index({keep})).abs().max().item<double>();
}

/// Writes `config` as dir/config.json (the folder is made).
inline void write_config(const std::filesystem::path& dir, const nlohmann::json& config) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json", std::ios::trunc) << config.dump(2);
}

}  // namespace test
