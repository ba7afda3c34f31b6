#pragma once
/// \file
/// \brief Private byte formats behind TensorBoardWriter: CRC-32C, TFRecord framing and
///        the few protobuf wire-format encodings that an Event needs.

#include <array>
#include <bit>
#include <cstdint>
#include <string>
#include <string_view>

namespace contaccum::detail {

/// \brief CRC-32C (Castagnoli): reflected polynomial 0x82F63B78, initial value and final
///        xor 0xFFFFFFFF, one table lookup per byte. The table is built at compile time.
inline constexpr std::array<uint32_t, 256> crc32c_table = [] {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int bit = 0; bit < 8; ++bit) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}();

[[nodiscard]] constexpr uint32_t crc32c(std::string_view bytes) noexcept {
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = crc32c_table[(c ^ static_cast<unsigned char>(ch)) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}
static_assert(crc32c("123456789") == 0xE3069283u, "contaccum: CRC-32C check value");

/// \brief TFRecord's masked CRC: rotate right by 15, add a constant, so that a CRC stored
///        inside checksummed data does not checksum to a fixed value.
[[nodiscard]] constexpr uint32_t masked_crc32c(std::string_view bytes) noexcept {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xA282EAD8u;
}

/// \brief Appends the low `bytes` bytes of `v`, little-endian.
inline void append_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

/// \brief One TFRecord: u64 LE length, u32 LE masked CRC of those 8 bytes, the data,
///        u32 LE masked CRC of the data.
[[nodiscard]] inline std::string tfrecord(std::string_view data) {
  std::string r;
  r.reserve(data.size() + 16);
  append_le(r, data.size(), 8);
  append_le(r, masked_crc32c(r), 4);
  r.append(data);
  append_le(r, masked_crc32c(data), 4);
  return r;
}

// Protobuf wire format: each field is a key varint (field_number << 3 | wire_type), then
// a varint (type 0), 8 bytes LE (type 1), a varint length and bytes (type 2), or 4 bytes
// LE (type 5).
enum class wire_type : uint32_t { varint = 0, fixed64 = 1, length_delimited = 2, fixed32 = 5 };

/// \brief Base-128 varint, low group first. A negative int64 goes in as its two's
///        complement uint64 (10 bytes), as protobuf encodes int64.
inline void append_varint(std::string& out, uint64_t v) {
  while (v >= 0x80u) {
    out.push_back(static_cast<char>((v & 0x7Fu) | 0x80u));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline void append_key(std::string& out, uint32_t field, wire_type type) {
  append_varint(out, (uint64_t{field} << 3) | static_cast<uint32_t>(type));
}

inline void append_varint_field(std::string& out, uint32_t field, int64_t v) {
  append_key(out, field, wire_type::varint);
  append_varint(out, static_cast<uint64_t>(v));
}

inline void append_double_field(std::string& out, uint32_t field, double v) {
  append_key(out, field, wire_type::fixed64);
  append_le(out, std::bit_cast<uint64_t>(v), 8);
}

inline void append_float_field(std::string& out, uint32_t field, float v) {
  append_key(out, field, wire_type::fixed32);
  append_le(out, std::bit_cast<uint32_t>(v), 4);
}

/// \brief A string, bytes or embedded message field.
inline void append_bytes_field(std::string& out, uint32_t field, std::string_view bytes) {
  append_key(out, field, wire_type::length_delimited);
  append_varint(out, bytes.size());
  out.append(bytes);
}

}  // namespace contaccum::detail
