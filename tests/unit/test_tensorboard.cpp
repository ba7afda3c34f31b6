// TensorBoardWriter: the curves read back by the official `tensorboard` package
// (tests/reference/tensorboard_reference.py), SessionLog START purging as each of its
// loaders really does it, TFRecord framing and CRC-32C checked byte by byte, and a
// contaccum::error naming the folder when it cannot be made.
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"

#include <contaccum/train/tensorboard.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

using namespace contaccum;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A fresh, empty folder for one test (a SECTION reruns its test case from the top).
fs::path fresh_dir(const std::string& name) {
  const auto dir = test::scratch_dir("contaccum_tensorboard") / name;
  fs::remove_all(dir);
  return dir;
}

// What the official package shows for a folder of event files.
json read_back(const fs::path& dir) {
  const auto out = dir.string() + ".json";
  REQUIRE(test::run_python_reference("tensorboard_reference.py", "read " + dir.string() + " " + out));
  return json::parse(std::ifstream(out));
}

using curve = std::vector<std::pair<int64_t, double>>;

curve curve_of(const json& points) {
  curve c;
  for (const auto& p : points) c.emplace_back(p[0].get<int64_t>(), p[1].get<double>());
  return c;
}

// The values as TensorBoard stores them: simple_value is a float.
curve as_floats(curve c) {
  for (auto& [step, v] : c) v = static_cast<float>(v);
  return c;
}

curve losses(int64_t first, int64_t last, double offset) {
  curve c;
  for (int64_t s = first; s <= last; ++s) c.emplace_back(s, offset + static_cast<double>(s));
  return c;
}

curve concat(curve a, const curve& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

uint64_t read_le(const std::string& bytes, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
  return v;
}

}  // namespace

TEST_CASE("TensorBoard reads the scalar curves TensorBoardWriter writes", "[tensorboard][python]") {
  const auto dir = fresh_dir("curves");
  curve loss, inverse;
  {
    TensorBoardWriter tb(dir);
    CHECK(tb.file().parent_path() == dir);
    for (int64_t step = 0; step < 10; ++step) {
      loss.emplace_back(step, 0.5 * static_cast<double>(step));
      inverse.emplace_back(step, 1.0 / static_cast<double>(step + 1));
      tb.scalar("train/loss", loss.back().second, step);
      tb.scalar("train/inverse", inverse.back().second, step);
    }
  }
  const auto ref = read_back(dir);
  CHECK(ref["events"] == 21);  // file_version + 2 x 10 scalars
  CHECK(ref["tags"].get<std::vector<std::string>>() == std::vector<std::string>{"train/inverse", "train/loss"});
  CHECK(curve_of(ref["scalars"]["train/loss"]) == as_floats(loss));
  CHECK(curve_of(ref["scalars"]["train/inverse"]) == as_floats(inverse));
  CHECK(ref["plugin_scalars"] == ref["scalars"]);
}

// A run logs loss = step for steps 0..5 and is killed; it resumes from its checkpoint at
// step 3 and logs loss = 100 + step for steps 3..7. What TensorBoard then shows depends on
// which SessionLog STARTs were written, and differs between its two Python loaders:
// event_accumulator purges at every START; plugin_event_accumulator (the Python server's)
// takes a run's first START as the start, not a restart, and purges only at later ones.
// Both drop the points with step >= the START's step, of every tag, and with file_version
// "brain.Event:2" neither purges on out-of-order steps alone.
TEST_CASE("session_start purges what a killed run wrote past the step it resumes from", "[tensorboard][python]") {
  const auto killed = losses(0, 5, 0), resumed = losses(3, 7, 100);
  const auto purged = as_floats(concat(losses(0, 2, 0), resumed));  // steps 0..7 once each
  const auto kept = as_floats(concat(killed, resumed));             // steps 3..5 twice

  SECTION("every run starts with session_start: both loaders purge, across files") {
    const auto dir = fresh_dir("resumed_two_files");
    fs::path first;
    {
      TensorBoardWriter tb(dir);
      first = tb.file();
      tb.session_start(0);
      for (const auto& [s, v] : killed) tb.scalar("loss", v, s);
    }
    {
      TensorBoardWriter tb(dir);  // the resumed process: a new file in the same folder
      CHECK(tb.file() != first);
      CHECK(tb.file().filename().string() > first.filename().string());  // read after the first
      tb.session_start(3);
      for (const auto& [s, v] : resumed) tb.scalar("loss", v, s);
    }
    const auto ref = read_back(dir);
    CHECK(ref["events"] == 1 + 1 + 6 + 1 + 1 + 5);
    CHECK(curve_of(ref["scalars"]["loss"]) == purged);
    CHECK(curve_of(ref["plugin_scalars"]["loss"]) == purged);
  }
  SECTION("the same within one file") {
    const auto dir = fresh_dir("resumed_one_file");
    {
      TensorBoardWriter tb(dir);
      tb.session_start(0);
      for (const auto& [s, v] : killed) tb.scalar("loss", v, s);
      tb.session_start(3);
      for (const auto& [s, v] : resumed) tb.scalar("loss", v, s);
    }
    const auto ref = read_back(dir);
    CHECK(curve_of(ref["scalars"]["loss"]) == purged);
    CHECK(curve_of(ref["plugin_scalars"]["loss"]) == purged);
  }
  SECTION("only the resume calls session_start: the Python server's loader keeps both") {
    const auto dir = fresh_dir("resumed_without_start0");
    {
      TensorBoardWriter tb(dir);
      for (const auto& [s, v] : killed) tb.scalar("loss", v, s);
    }
    {
      TensorBoardWriter tb(dir);
      tb.session_start(3);
      for (const auto& [s, v] : resumed) tb.scalar("loss", v, s);
    }
    const auto ref = read_back(dir);
    CHECK(curve_of(ref["scalars"]["loss"]) == purged);
    CHECK(curve_of(ref["plugin_scalars"]["loss"]) == kept);
  }
  SECTION("no session_start: nothing is purged") {
    const auto dir = fresh_dir("resumed_without_start");
    {
      TensorBoardWriter tb(dir);
      for (const auto& [s, v] : killed) tb.scalar("loss", v, s);
    }
    {
      TensorBoardWriter tb(dir);
      for (const auto& [s, v] : resumed) tb.scalar("loss", v, s);
    }
    const auto ref = read_back(dir);
    CHECK(curve_of(ref["scalars"]["loss"]) == kept);
    CHECK(curve_of(ref["plugin_scalars"]["loss"]) == kept);
  }
}

TEST_CASE("TensorBoard event files are well-framed TFRecords with CRC-32C checksums", "[tensorboard]") {
  CHECK(contaccum::detail::crc32c("123456789") == 0xE3069283u);  // the CRC-32C check value
  CHECK(contaccum::detail::crc32c("") == 0u);

  std::string varint;
  contaccum::detail::append_varint(varint, 300);
  CHECK(varint == "\xAC\x02");
  varint.clear();
  contaccum::detail::append_varint(varint, static_cast<uint64_t>(int64_t{-1}));  // int64 -1: 10 bytes
  CHECK(varint == std::string(9, '\xFF') + "\x01");

  const auto dir = fresh_dir("framing");
  fs::path file;
  {
    TensorBoardWriter tb(dir);
    file = tb.file();
    tb.session_start(-2);
    tb.scalar("train/loss", 0.25, 0);
    tb.scalar(std::string(200, 'x'), -1e300, int64_t{1} << 40);  // a length over one varint byte
    tb.flush();
  }
  const auto name = file.filename().string();
  CHECK(name.starts_with("events.out.tfevents."));
  CHECK(name.ends_with(".contaccum"));

  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> records;
  size_t at = 0;
  while (at < bytes.size()) {
    INFO("record " << records.size() << " at byte " << at);
    REQUIRE(bytes.size() - at >= 16);
    const auto length = read_le(bytes, at, 8);
    CHECK(read_le(bytes, at + 8, 4) == contaccum::detail::masked_crc32c(std::string_view(bytes).substr(at, 8)));
    REQUIRE(bytes.size() - at - 16 >= length);
    const auto data = bytes.substr(at + 12, length);
    CHECK(read_le(bytes, at + 12 + length, 4) == contaccum::detail::masked_crc32c(data));
    records.push_back(data);
    at += 16 + length;
  }
  CHECK(at == bytes.size());
  REQUIRE(records.size() == 4);
  // Event{wall_time (field 1, fixed64), file_version (field 3) = "brain.Event:2"}
  CHECK(records[0].size() == 1 + 8 + 2 + 13);
  CHECK(records[0][0] == '\x09');
  CHECK(records[0].substr(9) == std::string("\x1A\x0D") + "brain.Event:2");
  // Event{wall_time, step (field 2) = -2 as 10 varint bytes, session_log (field 7) = {status: START}}
  CHECK(records[1].substr(9) == "\x10" + std::string("\xFE") + std::string(8, '\xFF') + "\x01" + "\x3A\x02\x08\x01");
}

TEST_CASE("TensorBoardWriter names the folder it cannot create", "[tensorboard]") {
  const auto dir = fresh_dir("blocked");
  fs::create_directories(dir);
  const auto blocker = dir / "a_file";
  std::ofstream(blocker) << "not a folder";
  const auto target = blocker / "run";
  std::string message = "(no contaccum::error was thrown)";
  try {
    TensorBoardWriter tb(target);
  } catch (const contaccum::error& e) {
    message = e.what();
  }
  CHECK_THAT(message, Catch::Contains(target.string()) && Catch::Contains("TensorBoard"));
}
