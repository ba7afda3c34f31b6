#pragma once
/// \file
/// \brief The safetensors format (Hugging Face's tensor file): reading, writing, and the
///        checkpoint layouts of a model folder (one `model.safetensors`, or shards listed
///        by `model.safetensors.index.json`).
///
/// Layout of a file: u64 little-endian header length N; N bytes of JSON
/// `{name: {"dtype", "shape", "data_offsets": [begin, end)}, "__metadata__": {str: str}}`;
/// then the byte buffer. Offsets are relative to the buffer; the tensors tile it with no
/// gap and no overlap; data is row-major little-endian. A file that breaks any of these
/// rules is rejected with contaccum::invalid_input naming the file and the rule.

#include <contaccum/detail/error.hpp>
#include <contaccum/detail/input_file.hpp>
#include <contaccum/detail/json_file.hpp>
#include <contaccum/state/detail/files.hpp>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <vector>

namespace contaccum {
namespace detail {

static_assert(std::endian::native == std::endian::little,
              "====> contaccum: safetensors I/O reads and writes raw bytes and needs a little-endian host");

/// \brief One safetensors dtype name and the LibTorch type it stores.
struct SafetensorsDtype {
  std::string_view name;
  c10::ScalarType type;
  uint64_t size;  // bytes per element
};

// Every safetensors dtype LibTorch can hold (the format also names types LibTorch lacks).
inline constexpr std::array<SafetensorsDtype, 15> safetensors_dtypes{{
    {"F64", c10::ScalarType::Double, 8},
    {"F32", c10::ScalarType::Float, 4},
    {"F16", c10::ScalarType::Half, 2},
    {"BF16", c10::ScalarType::BFloat16, 2},
    {"F8_E4M3", c10::ScalarType::Float8_e4m3fn, 1},
    {"F8_E5M2", c10::ScalarType::Float8_e5m2, 1},
    {"I64", c10::ScalarType::Long, 8},
    {"I32", c10::ScalarType::Int, 4},
    {"I16", c10::ScalarType::Short, 2},
    {"I8", c10::ScalarType::Char, 1},
    {"U64", c10::ScalarType::UInt64, 8},
    {"U32", c10::ScalarType::UInt32, 4},
    {"U16", c10::ScalarType::UInt16, 2},
    {"U8", c10::ScalarType::Byte, 1},
    {"BOOL", c10::ScalarType::Bool, 1},
}};

[[nodiscard]] inline const SafetensorsDtype* find_safetensors_dtype(std::string_view name) {
  for (const auto& d : safetensors_dtypes)
    if (d.name == name) return &d;
  return nullptr;
}

[[nodiscard]] inline const SafetensorsDtype* find_safetensors_dtype(c10::ScalarType type) {
  for (const auto& d : safetensors_dtypes)
    if (d.type == type) return &d;
  return nullptr;
}

/// \brief Throws invalid_input "contaccum: safetensors file 'F': ..." when `ok` is false.
template <class... Parts>
void require_safetensors(bool ok, const std::filesystem::path& file, Parts&&... parts) {
  if (!ok) throw invalid_input(cat("contaccum: safetensors file '", file.string(), "': ", std::forward<Parts>(parts)...));
}

/// \brief One validated header entry.
struct SafetensorsEntry {
  std::string name;
  const SafetensorsDtype* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;  // [begin, end) within the byte buffer
};

/// \brief A validated header: entries sorted by offset, metadata, where the buffer starts.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t buffer_start = 0;
};

// A header field that must be a non-negative JSON integer.
[[nodiscard]] inline uint64_t safetensors_count(const nlohmann::json& j, const std::filesystem::path& file,
                                                const std::string& name, const char* field) {
  require_safetensors(j.is_number_unsigned(), file, "tensor '", name, "': ", field,
                      " must hold non-negative integers, got ", j.dump());
  return j.get<uint64_t>();
}

[[nodiscard]] inline SafetensorsEntry parse_safetensors_entry(const std::string& name, const nlohmann::json& j,
                                                              uint64_t buffer_size,
                                                              const std::filesystem::path& file) {
  require_safetensors(j.is_object(), file, "tensor '", name, "': header entry is not a JSON object");
  require_safetensors(j.contains("dtype") && j["dtype"].is_string(), file, "tensor '", name,
                      "': no \"dtype\" string");
  const auto dtype_name = j["dtype"].get<std::string>();
  const auto* dtype = find_safetensors_dtype(dtype_name);
  require_safetensors(dtype != nullptr, file, "tensor '", name, "': unknown dtype '", dtype_name, "'");
  require_safetensors(j.contains("shape") && j["shape"].is_array(), file, "tensor '", name,
                      "': no \"shape\" array");
  require_safetensors(j.contains("data_offsets") && j["data_offsets"].is_array() && j["data_offsets"].size() == 2,
                      file, "tensor '", name, "': \"data_offsets\" must be [begin, end]");

  SafetensorsEntry e{name, dtype, {}, 0, 0};
  // numel * size, checked against overflow: a corrupt shape must not wrap around.
  uint64_t bytes = dtype->size;
  constexpr auto max_dim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  for (const auto& d : j["shape"]) {
    const auto n = safetensors_count(d, file, name, "shape");
    require_safetensors(n <= max_dim && (n == 0 || bytes <= std::numeric_limits<uint64_t>::max() / n), file,
                        "tensor '", name, "': shape ", j["shape"].dump(), " overflows");
    bytes *= n;
    e.shape.push_back(static_cast<int64_t>(n));
  }
  e.begin = safetensors_count(j["data_offsets"][0], file, name, "data_offsets");
  e.end = safetensors_count(j["data_offsets"][1], file, name, "data_offsets");
  require_safetensors(e.begin <= e.end, file, "tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                      ") end before they begin");
  require_safetensors(e.end <= buffer_size, file, "tensor '", name, "': data_offsets [", e.begin, ", ", e.end,
                      ") out of range of the ", buffer_size, "-byte data buffer");
  require_safetensors(e.end - e.begin == bytes, file, "tensor '", name, "': ", dtype_name, " shape ",
                      j["shape"].dump(), " needs ", bytes, " bytes but data_offsets [", e.begin, ", ", e.end,
                      ") hold ", e.end - e.begin, " (size mismatch)");
  return e;
}

/// \brief Reads and validates the header of an open safetensors file.
[[nodiscard]] inline SafetensorsHeader read_safetensors_header(std::ifstream& in, const std::filesystem::path& file) {
  std::error_code ec;
  const auto file_size = static_cast<uint64_t>(std::filesystem::file_size(file, ec));
  require_safetensors(!ec, file, "cannot read its size: ", ec.message());
  require_safetensors(file_size >= 8, file, "file is ", file_size,
                      " bytes, shorter than 8 bytes (the header length alone is 8)");
  uint64_t n = 0;  // little-endian on disk and (static_assert above) in memory
  in.read(reinterpret_cast<char*>(&n), 8);
  require_safetensors(in.gcount() == 8, file, "cannot read the header length");
  require_safetensors(n <= file_size - 8, file, "header length ", n, " is larger than the file (", file_size,
                      " bytes)");
  std::string text(n, '\0');
  in.read(text.data(), static_cast<std::streamsize>(n));
  require_safetensors(static_cast<uint64_t>(in.gcount()) == n, file, "cannot read the ", n, "-byte header");

  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& err) {
    require_safetensors(false, file, "header is not valid JSON (", err.what(), ")");
  }
  require_safetensors(j.is_object(), file, "header is not a JSON object");

  SafetensorsHeader h;
  h.buffer_start = 8 + n;
  const uint64_t buffer_size = file_size - h.buffer_start;
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") {
      require_safetensors(value.is_object(), file, "\"__metadata__\" is not a JSON object");
      for (const auto& [k, v] : value.items()) {
        require_safetensors(v.is_string(), file, "\"__metadata__\" value of '", k, "' is not a string");
        h.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    h.entries.push_back(parse_safetensors_entry(name, value, buffer_size, file));
  }

  // The tensors must tile the buffer: sorted by offset, each begins where the last ended.
  std::sort(h.entries.begin(), h.entries.end(),
            [](const auto& a, const auto& b) { return std::tie(a.begin, a.end) < std::tie(b.begin, b.end); });
  uint64_t covered = 0;
  const SafetensorsEntry* last = nullptr;
  for (const auto& e : h.entries) {
    require_safetensors(e.begin <= covered, file, "gap: bytes [", covered, ", ", e.begin,
                        ") of the data buffer belong to no tensor (before '", e.name, "')");
    require_safetensors(e.begin >= covered, file, "tensors '", last ? last->name : "", "' and '", e.name,
                        "' overlap: [", last ? last->begin : 0, ", ", covered, ") and [", e.begin, ", ", e.end, ")");
    covered = e.end;
    if (e.end > e.begin) last = &e;
  }
  require_safetensors(covered == buffer_size, file, "gap: bytes [", covered, ", ", buffer_size,
                      ") at the end of the data buffer belong to no tensor");
  return h;
}

}  // namespace detail

/// \brief Reads every tensor of a safetensors file into CPU tensors that own their memory.
///
/// Every rule of the format is checked before any data is read; a corrupt file gives
/// contaccum::invalid_input naming the file and the problem.
/// \code
/// auto tensors = contaccum::load_safetensors("model.safetensors");
/// auto w = tensors.at("embeddings.word_embeddings.weight");  // (vocab, hidden)
/// \endcode
[[nodiscard]] inline std::map<std::string, torch::Tensor> load_safetensors(const std::filesystem::path& file) {
  const auto why = detail::unreadable_file_reason(file);
  detail::require_safetensors(why.empty(), file, "cannot open it: ", why);
  std::ifstream in(file, std::ios::binary);
  detail::require_safetensors(in.is_open(), file, "cannot open it");
  const auto header = detail::read_safetensors_header(in, file);
  std::map<std::string, torch::Tensor> out;
  for (const auto& e : header.entries) {
    // BOOL is read as bytes and compared with 0: a byte other than 0/1 in a bool tensor
    // would be undefined behaviour in LibTorch's kernels.
    const bool is_bool = e.dtype->type == c10::ScalarType::Bool;
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(is_bool ? c10::ScalarType::Byte : e.dtype->type));
    const auto bytes = e.end - e.begin;
    if (bytes > 0) {
      in.seekg(static_cast<std::streamoff>(header.buffer_start + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(bytes));
      detail::require_safetensors(in.good() && static_cast<uint64_t>(in.gcount()) == bytes, file,
                                  "tensor '", e.name, "': file ended while reading its ", bytes, " bytes");
    }
    out.emplace(e.name, is_bool ? t.ne(0) : t);
  }
  return out;
}

/// \brief The "__metadata__" map of a safetensors file (the file is validated, not loaded).
[[nodiscard]] inline std::map<std::string, std::string> load_safetensors_metadata(const std::filesystem::path& file) {
  const auto why = detail::unreadable_file_reason(file);
  detail::require_safetensors(why.empty(), file, "cannot open it: ", why);
  std::ifstream in(file, std::ios::binary);
  detail::require_safetensors(in.is_open(), file, "cannot open it");
  return detail::read_safetensors_header(in, file).metadata;
}

namespace detail {
/// \brief The bytes of a safetensors file holding `tensors` (`file` names it in errors).
[[nodiscard]] inline std::string safetensors_bytes(const std::filesystem::path& file,
                                                   const std::map<std::string, torch::Tensor>& tensors,
                                                   const std::map<std::string, std::string>& metadata) {
  auto header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    require_safetensors(name != "__metadata__", file, "'__metadata__' is reserved and cannot name a tensor");
    require_safetensors(tensor.defined(), file, "tensor '", name, "' is undefined");
    const auto* dtype = find_safetensors_dtype(tensor.scalar_type());
    require_safetensors(dtype != nullptr, file, "tensor '", name, "': dtype ", tensor.scalar_type(),
                        " has no safetensors name");
    auto c = tensor.detach().to(torch::kCPU).contiguous();
    const auto bytes = static_cast<uint64_t>(c.nbytes());
    header[name] = {{"dtype", std::string(dtype->name)},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", nlohmann::json::array({offset, offset + bytes})}};
    offset += bytes;
    data.push_back(std::move(c));
  }
  auto text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  const uint64_t n = text.size();
  std::string out;
  out.reserve(8 + n + offset);
  out.append(reinterpret_cast<const char*>(&n), 8);
  out.append(text);
  for (const auto& c : data)
    if (c.nbytes() > 0) out.append(static_cast<const char*>(c.data_ptr()), c.nbytes());
  return out;
}
}  // namespace detail

/// \brief Writes tensors (any device, any layout) as a safetensors file.
///
/// Data are contiguous CPU copies laid out in name order; the header is padded with
/// spaces to a multiple of 8 bytes, as the official writer does, so the buffer is aligned.
/// The file is written beside the target, fsynced and renamed (every write checked), so a
/// failed or killed write leaves the old file or none, never half of one.
/// \code
/// contaccum::save_safetensors("w.safetensors", {{"w", torch::randn({2, 3})}}, {{"format", "pt"}});
/// \endcode
inline void save_safetensors(const std::filesystem::path& file, const std::map<std::string, torch::Tensor>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  detail::write_file_atomically(file, detail::safetensors_bytes(file, tensors, metadata));
}

/// \brief All tensors of a Hugging Face model folder (or of one safetensors file).
///
/// Reads `dir/model.safetensors`, or else the shards named by
/// `dir/model.safetensors.index.json` ({"weight_map": {tensor: shard file}}); every shard
/// must exist and hold the tensors the index gives it.
/// \code
/// auto tensors = contaccum::load_checkpoint("bge-small-en");  // name -> tensor
/// \endcode
[[nodiscard]] inline std::map<std::string, torch::Tensor> load_checkpoint(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  if (fs::is_regular_file(dir)) return load_safetensors(dir);
  if (fs::is_regular_file(dir / "model.safetensors")) return load_safetensors(dir / "model.safetensors");
  const auto index_file = dir / "model.safetensors.index.json";
  detail::require(fs::is_regular_file(index_file), "checkpoint '", dir.string(),
                  "' has neither model.safetensors nor model.safetensors.index.json",
                  " (PyTorch .bin checkpoints are not read: save them as safetensors)");

  const auto index = detail::read_json_file(index_file, "shard index");
  detail::require(index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
                  "shard index '", index_file.string(), "' has no \"weight_map\" object");
  std::map<std::string, std::vector<std::string>> by_shard;  // shard file -> tensor names
  for (const auto& [name, shard] : index["weight_map"].items()) {
    detail::require(shard.is_string(), "shard index '", index_file.string(), "': shard of '", name,
                    "' is not a string");
    const auto shard_name = shard.get<std::string>();
    detail::require(!shard_name.empty() && !fs::path(shard_name).is_absolute(), "shard index '",
                    index_file.string(), "': shard '", shard_name, "' of '", name,
                    "' is not a file name relative to the folder");
    by_shard[shard_name].push_back(name);
  }
  std::map<std::string, torch::Tensor> out;
  for (const auto& [shard_name, names] : by_shard) {
    const auto shard_file = dir / shard_name;
    detail::require(fs::is_regular_file(shard_file), "shard index '", index_file.string(), "': shard '", shard_name,
                    "' is missing (", names.size(), " tensors, e.g. '", names.front(), "')");
    auto tensors = load_safetensors(shard_file);
    for (const auto& name : names) {
      auto it = tensors.find(name);
      detail::require(it != tensors.end(), "shard index '", index_file.string(), "' puts tensor '", name,
                      "' in shard '", shard_name, "', which does not hold it");
      out.emplace(name, std::move(it->second));
    }
  }
  return out;
}

}  // namespace contaccum
