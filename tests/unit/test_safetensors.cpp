// safetensors I/O: bit-exact round trips of every dtype, agreement with the official Python
// package in both directions (tests/reference/safetensors_reference.py), sharded folders,
// and a clear invalid_input (file name + problem) for every kind of corrupt file.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <contaccum/checkpoint/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <string>

using namespace contaccum;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path scratch_dir() { return test::scratch_dir("contaccum_safetensors"); }

void run_reference(const std::string& args) { REQUIRE(test::run_python_reference("safetensors_reference.py", args)); }

// Same dtype, same shape, same bytes (NaN payloads and -0.0 included).
bool same_bytes(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.sizes() != b.sizes()) return false;
  auto ca = a.contiguous(), cb = b.contiguous();
  return ca.nbytes() == cb.nbytes() && (ca.nbytes() == 0 || std::memcmp(ca.data_ptr(), cb.data_ptr(), ca.nbytes()) == 0);
}

std::string dtype_name(const torch::Tensor& t) {
  const auto* d = contaccum::detail::find_safetensors_dtype(t.scalar_type());
  return d ? std::string(d->name) : "?";
}

// A tensor as the reference JSON holds it: floats as double, everything else as int64.
torch::Tensor as_reference_values(const torch::Tensor& t) {
  return t.is_floating_point() ? t.to(torch::kDouble) : t.to(torch::kLong);
}

torch::Tensor from_reference_values(const json& entry) {
  const auto shape = entry["shape"].get<std::vector<int64_t>>();
  const auto& v = entry["values"];
  const bool is_float = entry["dtype"].get<std::string>().starts_with("F") ||
                        entry["dtype"].get<std::string>() == "BF16";
  auto t = is_float ? torch::tensor(v.get<std::vector<double>>(), torch::kDouble)
                    : torch::tensor(v.get<std::vector<int64_t>>(), torch::kLong);
  return t.reshape(shape);
}

torch::Tensor longs(const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); }

// One tensor of every supported dtype, with edge values, plus a 0-d, an empty and a
// non-contiguous tensor.
std::map<std::string, torch::Tensor> sample_tensors() {
  torch::manual_seed(3);
  std::map<std::string, torch::Tensor> t;
  t["f64"] = torch::tensor({1.0 / 3, -2.5, 1e300, -0.0, 5e-324, 7.0}, torch::kDouble).view({2, 3});
  t["f32"] = torch::randn({2, 3});
  t["f16"] = torch::randn({5}).to(torch::kHalf);
  t["bf16"] = torch::randn({2, 2}).to(torch::kBFloat16);
  t["f8_e4m3"] = torch::tensor({0.5, -1.75, 448.0}).to(c10::ScalarType::Float8_e4m3fn);
  t["f8_e5m2"] = torch::tensor({0.25, -3.0, 57344.0}).to(c10::ScalarType::Float8_e5m2);
  t["i64"] = longs({std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), 0, 42});
  t["i32"] = longs({-2147483648, 2147483647, 5, -6}).to(torch::kInt).view({2, 2});
  t["i16"] = longs({-32768, 32767, 3}).to(torch::kShort);
  t["i8"] = longs({-128, 127, 0}).to(torch::kChar);
  t["u64"] = longs({0, int64_t{1} << 62, 9}).to(c10::ScalarType::UInt64);
  t["u32"] = longs({0, 4294967295, 9}).to(c10::ScalarType::UInt32);
  t["u16"] = longs({0, 65535, 9}).to(c10::ScalarType::UInt16);
  t["u8"] = longs({0, 255, 17}).to(torch::kByte);
  t["bool"] = longs({1, 0, 0, 1}).to(torch::kBool).view({2, 2});
  t["scalar"] = torch::tensor(2.5f);
  t["empty"] = torch::empty({0, 3});
  t["transposed"] = torch::arange(6, torch::kFloat).view({2, 3}).t();  // non-contiguous
  return t;
}

// Raw file bytes: u64 length (the header's own unless `length` is given), header, buffer.
std::string raw_file(const std::string& header, size_t buffer_bytes, std::optional<uint64_t> length = {}) {
  const uint64_t n = length.value_or(header.size());
  std::string bytes(reinterpret_cast<const char*>(&n), 8);
  return bytes + header + std::string(buffer_bytes, '\0');
}

fs::path write_bytes(const std::string& name, const std::string& bytes) {
  const auto file = scratch_dir() / name;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  return file;
}

void check_rejected(const std::string& name, const std::string& bytes, const std::string& problem) {
  const auto file = write_bytes(name, bytes);
  INFO(name);
  try {
    (void)load_safetensors(file);
    FAIL("the corrupt file was accepted");
  } catch (const invalid_input& e) {
    CHECK_THAT(std::string(e.what()), Catch::Contains(file.string()) && Catch::Contains(problem));
  }
}

}  // namespace

TEST_CASE("safetensors round trip keeps every dtype, 0-d and empty tensors bit for bit", "[checkpoint]") {
  const auto tensors = sample_tensors();
  REQUIRE(tensors.size() == contaccum::detail::safetensors_dtypes.size() + 3);
  const auto file = scratch_dir() / "round_trip.safetensors";
  save_safetensors(file, tensors, {{"format", "pt"}, {"note", "round trip"}});

  const auto loaded = load_safetensors(file);
  REQUIRE(loaded.size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(loaded.contains(name));
    CHECK(same_bytes(loaded.at(name), t));
    CHECK(loaded.at(name).device().is_cpu());
  }
  CHECK(loaded.at("scalar").dim() == 0);
  CHECK(loaded.at("empty").sizes().vec() == std::vector<int64_t>{0, 3});
  CHECK(loaded.at("transposed").sizes().vec() == std::vector<int64_t>{3, 2});
  CHECK(load_safetensors_metadata(file) == std::map<std::string, std::string>{{"format", "pt"}, {"note", "round trip"}});

  // NaN and infinities survive (bitwise).
  constexpr double inf = std::numeric_limits<double>::infinity();
  const auto special = torch::tensor({std::nan(""), inf, -inf, 1.0});
  save_safetensors(file, {{"special", special}});
  CHECK(same_bytes(load_safetensors(file).at("special"), special));

  // Layout: header padded with spaces to a multiple of 8; file = 8 + header + data.
  std::ifstream in(file, std::ios::binary);
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  CHECK(n % 8 == 0);
  CHECK(fs::file_size(file) == 8 + n + special.nbytes());
}

TEST_CASE("safetensors files written by the Python package load with equal values", "[checkpoint][python]") {
  const auto file = scratch_dir() / "from_python.safetensors", values = scratch_dir() / "from_python.json";
  run_reference("write " + file.string() + " " + values.string());
  const auto ref = json::parse(std::ifstream(values));
  const auto loaded = load_safetensors(file);
  REQUIRE(loaded.size() == ref["tensors"].size());
  for (const auto& [name, entry] : ref["tensors"].items()) {
    INFO(name);
    REQUIRE(loaded.contains(name));
    const auto& t = loaded.at(name);
    CHECK(dtype_name(t) == entry["dtype"].get<std::string>());
    CHECK(t.sizes().vec() == entry["shape"].get<std::vector<int64_t>>());
    CHECK(torch::equal(as_reference_values(t), from_reference_values(entry)));
  }
  CHECK(load_safetensors_metadata(file) == ref["metadata"].get<std::map<std::string, std::string>>());
}

TEST_CASE("safetensors files we write load in the Python package with equal values", "[checkpoint][python]") {
  const auto tensors = sample_tensors();
  const auto file = scratch_dir() / "to_python.safetensors", values = scratch_dir() / "to_python.json";
  save_safetensors(file, tensors, {{"format", "pt"}, {"writer", "contaccum"}});
  run_reference("read " + file.string() + " " + values.string());
  const auto ref = json::parse(std::ifstream(values));
  REQUIRE(ref["tensors"].size() == tensors.size());
  for (const auto& [name, t] : tensors) {
    INFO(name);
    REQUIRE(ref["tensors"].contains(name));
    const auto& entry = ref["tensors"][name];
    CHECK(entry["dtype"].get<std::string>() == dtype_name(t));
    CHECK(entry["shape"].get<std::vector<int64_t>>() == t.sizes().vec());
    CHECK(torch::equal(from_reference_values(entry), as_reference_values(t)));
  }
  CHECK(ref["metadata"] == json{{"format", "pt"}, {"writer", "contaccum"}});
}

TEST_CASE("Malformed safetensors files give invalid_input naming the file and the problem", "[checkpoint]") {
  const std::string f32_2 = R"({"dtype": "F32", "shape": [2], "data_offsets": )";
  const std::string f32_1 = R"({"dtype": "F32", "shape": [1], "data_offsets": )";
  SECTION("shorter than the length field") { check_rejected("short.safetensors", "abcde", "shorter than 8 bytes"); }
  SECTION("header length past the end") {
    check_rejected("long_header.safetensors", raw_file("{}", 0, 1000), "header length 1000 is larger than the file");
  }
  SECTION("header that is not JSON") {
    check_rejected("bad_json.safetensors", raw_file(R"({"w": [)", 0), "not valid JSON");
  }
  SECTION("header that is not an object") {
    check_rejected("array_header.safetensors", raw_file("[1, 2]", 0), "not a JSON object");
  }
  SECTION("unknown dtype") {
    check_rejected("unknown_dtype.safetensors",
                   raw_file(R"({"w": {"dtype": "Q4_K", "shape": [1], "data_offsets": [0, 1]}})", 1),
                   "unknown dtype 'Q4_K'");
  }
  SECTION("shape and offsets disagree on the size") {
    check_rejected("size_mismatch.safetensors",
                   raw_file(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", 12),
                   "size mismatch");
  }
  SECTION("offsets past the buffer") {
    check_rejected("out_of_range.safetensors",
                   raw_file(R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8), "out of range");
  }
  SECTION("offsets that end before they begin") {
    check_rejected("reversed.safetensors",
                   raw_file(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8),
                   "end before they begin");
  }
  SECTION("negative shape") {
    check_rejected("negative_shape.safetensors",
                   raw_file(R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4), "non-negative");
  }
  SECTION("shape whose size overflows") {
    check_rejected("overflow.safetensors",
                   raw_file(R"({"w": {"dtype": "F32", "shape": [4611686018427387904, 4611686018427387904],
                                "data_offsets": [0, 0]}})", 0),
                   "overflows");
  }
  SECTION("overlapping tensors") {
    check_rejected("overlap.safetensors",
                   raw_file(R"({"a": )" + f32_2 + R"([0, 8]}, "b": )" + f32_2 + "[4, 12]}}", 12),
                   "tensors 'a' and 'b' overlap");
  }
  SECTION("a gap between tensors") {
    check_rejected("gap.safetensors", raw_file(R"({"a": )" + f32_1 + R"([0, 4]}, "b": )" + f32_1 + "[8, 12]}}", 12),
                   "gap: bytes [4, 8)");
  }
  SECTION("bytes after the last tensor") {
    check_rejected("trailing.safetensors", raw_file(R"({"a": )" + f32_1 + "[0, 4]}}", 8), "gap: bytes [4, 8)");
  }
  SECTION("metadata that is not strings") {
    check_rejected("metadata.safetensors", raw_file(R"({"__metadata__": {"n": 3}})", 0), "is not a string");
  }
  SECTION("a file that does not exist") {
    const auto file = scratch_dir() / "no_such_file.safetensors";
    fs::remove(file);
    CHECK_THROWS_WITH(load_safetensors(file), Catch::Contains(file.string()) && Catch::Contains("cannot open"));
  }
}

TEST_CASE("Truncated and bit-flipped safetensors files are rejected, never crash", "[checkpoint]") {
  const auto good = scratch_dir() / "fuzz_source.safetensors";
  save_safetensors(good, {{"a", torch::randn({3, 2})}, {"b", torch::arange(5)}, {"c", torch::ones({2}, torch::kBool)}});
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());

  int rejected = 0;
  for (size_t len = 0; len < bytes.size(); ++len) {  // every truncation
    const auto file = write_bytes("fuzz_truncated.safetensors", bytes.substr(0, len));
    CHECK_THROWS_AS(load_safetensors(file), invalid_input);
    ++rejected;
  }
  CHECK(rejected == static_cast<int>(bytes.size()));

  std::mt19937 rng(5);
  for (int trial = 0; trial < 300; ++trial) {  // random byte changes in the length and header
    auto corrupt = bytes;
    const auto header_end = std::min<size_t>(corrupt.size(), 8 + 200);
    for (int k = 0; k < 3; ++k) corrupt[rng() % header_end] = static_cast<char>(rng() % 256);
    const auto file = write_bytes("fuzz_flipped.safetensors", corrupt);
    try {
      (void)load_safetensors(file);  // a change that keeps the file valid may load
    } catch (const invalid_input&) {
    }
  }

  // A BOOL byte other than 0/1 loads as true instead of poisoning LibTorch.
  const auto header = std::string(R"({"m": {"dtype": "BOOL", "shape": [3], "data_offsets": [0, 3]}})");
  auto odd = raw_file(header, 0) + std::string("\x00\x07\x01", 3);
  const auto loaded = load_safetensors(write_bytes("odd_bool.safetensors", odd)).at("m");
  CHECK(torch::equal(loaded, longs({0, 1, 1}).to(torch::kBool)));
}

TEST_CASE("A sharded checkpoint folder loads through model.safetensors.index.json", "[checkpoint]") {
  const auto dir = scratch_dir() / "sharded";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::map<std::string, torch::Tensor> first{{"a.weight", torch::randn({4, 3})}, {"a.bias", torch::randn({4})}};
  const std::map<std::string, torch::Tensor> second{{"b.weight", torch::randn({2, 4}).to(torch::kBFloat16)}};
  save_safetensors(dir / "model-00001-of-00002.safetensors", first);
  save_safetensors(dir / "model-00002-of-00002.safetensors", second);
  json index = {{"metadata", {{"total_size", 76}}},
                {"weight_map", {{"a.weight", "model-00001-of-00002.safetensors"},
                                {"a.bias", "model-00001-of-00002.safetensors"},
                                {"b.weight", "model-00002-of-00002.safetensors"}}}};
  std::ofstream(dir / "model.safetensors.index.json") << index.dump(2);

  const auto loaded = load_checkpoint(dir);
  REQUIRE(loaded.size() == 3);
  for (const auto& part : {first, second})
    for (const auto& [name, t] : part) CHECK(same_bytes(loaded.at(name), t));

  SECTION("a shard that is missing") {
    fs::remove(dir / "model-00002-of-00002.safetensors");
    CHECK_THROWS_WITH(load_checkpoint(dir), Catch::Contains("model.safetensors.index.json") &&
                                                Catch::Contains("shard 'model-00002-of-00002.safetensors' is missing"));
  }
  SECTION("an index that names a tensor its shard lacks") {
    index["weight_map"]["c.weight"] = "model-00001-of-00002.safetensors";
    std::ofstream(dir / "model.safetensors.index.json", std::ios::trunc) << index.dump(2);
    CHECK_THROWS_WITH(load_checkpoint(dir), Catch::Contains("'c.weight'") && Catch::Contains("does not hold it"));
  }
  SECTION("a folder with no checkpoint") {
    const auto empty = scratch_dir() / "no_checkpoint";
    fs::create_directories(empty);
    CHECK_THROWS_WITH(load_checkpoint(empty), Catch::Contains("neither model.safetensors"));
  }
}
