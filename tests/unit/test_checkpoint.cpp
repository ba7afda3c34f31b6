// Training checkpoints in one process: a save / read / load round trip continues a run bit
// for bit; every kind of damaged or foreign checkpoint gives an invalid_input that names the
// file or the field, and leaves the trainer exactly as it was; the run folder's keep_last,
// latest and best; a checkpoint written again over itself; the text loader's resume; and
// StateReader's errors. (Resume across processes and SIGINT: test_resume.cpp.)
#include <torch/torch.h>  // before Catch, whose CHECK must win over c10's
#include <catch2/catch.hpp>

#include "support/helpers.hpp"
#include "support/tiny_trainer.hpp"

#include <contaccum/contaccum.hpp>

#include <nlohmann/json.hpp>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include <sys/resource.h>

namespace fs = std::filesystem;
using namespace contaccum;
using Catch::Contains;

namespace {

fs::path scratch(const std::string& name) {
  const auto dir = test::scratch_dir("contaccum_checkpoint") / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

// A trainer's whole state, copied: StateDict::put keeps a detached *alias* of each live
// tensor, so a snapshot that must not follow the trainer has to own its tensors.
template <class T>
StateDict snapshot(const T& trainer) {
  StateDict s;
  trainer.save_state(s);
  for (auto& [key, t] : s.tensors) t = t.to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true);
  return s;
}

// Same keys, same values, every tensor equal (shape, dtype and content).
void check_same_state(const StateDict& before, const StateDict& after) {
  CHECK(before.values == after.values);
  REQUIRE(before.tensors.size() == after.tensors.size());
  for (const auto& [key, t] : before.tensors) {
    INFO("tensor " << key);
    REQUIRE(after.tensors.contains(key));
    const auto& u = after.tensors.at(key);
    CHECK(t.scalar_type() == u.scalar_type());
    CHECK(torch::equal(t, u.to(torch::kCPU)));
  }
}

template <class A, class B>
void check_same_parameters(A& a, B& b) {
  const auto pa = a.model()->named_parameters();
  const auto pb = b.model()->named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (const auto& p : pa) {
    INFO("parameter " << p.key());
    REQUIRE(pb.contains(p.key()));
    CHECK(torch::equal(p.value(), pb[p.key()]));
  }
}

// Trains A for 3 steps, checkpoints it (and its loader), lets A run 2 more steps, then
// loads the checkpoint into a trainer with other initial weights and runs the same 2 steps.
// A continues first: B's construction reseeds the default generator, and B's load_state
// puts it back where A saved it.
template <class S>
void check_round_trip(const std::string& name) {
  const auto root = scratch(name);
  auto a = test::make_tiny_trainer<S>(3);
  auto loader = test::tiny_loader();
  for (int i = 0; i < 3; ++i) a.step(loader.next());

  StateDict s;
  a.save_state(s);
  loader.save_state(s, "loader.");
  CheckpointFolder run(root);
  const auto dir = run.save(a.steps_done(), s);
  CHECK(dir == root / "checkpoint-000003");
  REQUIRE(run.latest().has_value());
  CHECK(*run.latest() == dir);
  for (const char* file : {"model.safetensors", "optimizer.safetensors", "state.safetensors", "trainer_state.json"})
    CHECK(fs::exists(dir / file));

  std::vector<double> a_losses;
  for (int i = 0; i < 2; ++i) a_losses.push_back(a.step(loader.next()).loss);

  const Checkpoint c = read_checkpoint(dir);
  CHECK(c.step == 3);
  CHECK(c.path == dir);
  auto b = test::make_tiny_trainer<S>(17);
  auto b_loader = test::tiny_loader();
  {  // other initial weights: the load is what makes B equal A
    const auto first = b.model()->named_parameters().begin()->key();
    CHECK_FALSE(torch::equal(b.model()->named_parameters()[first], c.state.tensors.at("model." + first)));
  }
  b.load_state(c.reader());
  b_loader.load_state(c.reader(), "loader.");
  CHECK(b.steps_done() == 3);

  std::vector<double> b_losses;
  for (int i = 0; i < 2; ++i) b_losses.push_back(b.step(b_loader.next()).loss);

  REQUIRE(a_losses.size() == b_losses.size());
  for (std::size_t i = 0; i < a_losses.size(); ++i) {
    INFO("step " << 3 + i);
    CHECK(a_losses[i] == b_losses[i]);
  }
  CHECK(b.steps_done() == a.steps_done());
  CHECK(b.backward_calls() == a.backward_calls());
  check_same_parameters(a, b);
  const auto& bank_a = a.strategy().bank();
  const auto& bank_b = b.strategy().bank();
  REQUIRE(bank_a.queries().defined());
  REQUIRE(bank_b.queries().defined());
  CHECK(bank_a.queries().size(0) > 0);
  CHECK(torch::equal(bank_a.queries(), bank_b.queries()));
  CHECK(torch::equal(bank_a.positives(), bank_b.positives()));
  CHECK(torch::equal(bank_a.hard_negatives(), bank_b.hard_negatives()));
  // and the two loaders stand at the same place
  CHECK(torch::equal(loader.next().queries.input_ids, b_loader.next().queries.input_ids));
}

}  // namespace

TEST_CASE("A checkpoint round trip continues a ContAccum run bit for bit", "[checkpoint]") {
  SECTION("ContAccum<DualBank>") { check_round_trip<ContAccum<DualBank>>("round_trip_contaccum"); }
  SECTION("ContAccumOverGradCache<DualBank>") {
    check_round_trip<ContAccumOverGradCache<DualBank>>("round_trip_over_gradcache");
  }
}

TEST_CASE("Damaged, foreign and mismatched checkpoints give named errors and leave the trainer as it was",
          "[checkpoint][errors]") {
  using CA = ContAccum<DualBank>;
  const auto work = scratch("damaged");

  // The good checkpoint: a ContAccum trainer after 2 steps.
  auto good_trainer = test::make_tiny_trainer<CA>(3);
  {
    auto loader = test::tiny_loader();
    for (int i = 0; i < 2; ++i) good_trainer.step(loader.next());
  }
  StateDict good_state;
  good_trainer.save_state(good_state);
  const auto good = CheckpointFolder(work / "run").save(good_trainer.steps_done(), good_state);
  REQUIRE(read_checkpoint(good).step == 2);

  // A Hugging Face model folder (made here: building a model draws from the default
  // generator, which the victim's snapshot below holds).
  const auto hf_dir = work / "hf-model";
  save_bert(Bert(test::tiny_bert(0.1)), hf_dir);

  // The victim: same types and config, other weights, 1 step.
  auto v = test::make_tiny_trainer<CA>(11);
  {
    auto loader = test::tiny_loader(9);
    v.step(loader.next());
  }
  const StateDict v_before = snapshot(v);

  int copies = 0;
  auto fresh_copy = [&] {
    const auto dir = work / ("copy-" + std::to_string(copies++));
    fs::remove_all(dir);
    fs::copy(good, dir, fs::copy_options::recursive);
    return dir;
  };
  auto load_into_v = [&](const fs::path& dir) {
    return test::error_of([&] {
      const Checkpoint c = read_checkpoint(dir);
      v.load_state(c.reader());
    });
  };
  auto check_v_untouched = [&] {
    CHECK(v.steps_done() == 1);
    check_same_state(v_before, snapshot(v));
  };

  SECTION("a truncated file is named") {
    for (const char* file : {"model.safetensors", "optimizer.safetensors", "state.safetensors", "trainer_state.json"}) {
      INFO("truncated " << file);
      const auto dir = fresh_copy();
      fs::resize_file(dir / file, fs::file_size(dir / file) / 2);
      const auto msg = load_into_v(dir);
      CHECK_THAT(msg, Contains(std::string("contaccum: checkpoint ") + dir.string()));
      CHECK_THAT(msg, Contains(file));
      CHECK_THAT(msg, Contains("truncated?"));
      check_v_untouched();
    }
  }

  SECTION("a flipped byte in the model's tensor data") {
    const auto dir = fresh_copy();
    auto bytes = read_text(dir / "model.safetensors");
    REQUIRE(bytes.size() > 64);
    bytes[bytes.size() - 5] = static_cast<char>(bytes[bytes.size() - 5] ^ 0x10);
    write_text(dir / "model.safetensors", bytes);
    const auto msg = load_into_v(dir);
    CHECK_THAT(msg, Contains(dir.string()));
    CHECK_THAT(msg, Contains("model.safetensors is corrupt"));
    check_v_untouched();
  }

  SECTION("an edited value in trainer_state.json (still valid JSON)") {
    const auto dir = fresh_copy();
    auto text = read_text(dir / "trainer_state.json");
    auto at = text.find("\"step\":");
    REQUIRE(at != std::string::npos);
    at += 7;
    while (at < text.size() && text[at] == ' ') ++at;
    REQUIRE(at < text.size());
    REQUIRE(text[at] == '2');
    text[at] = '3';
    write_text(dir / "trainer_state.json", text);
    REQUIRE_NOTHROW(nlohmann::json::parse(text));
    const auto msg = load_into_v(dir);
    CHECK_THAT(msg, Contains(dir.string()));
    CHECK_THAT(msg, Contains("trainer_state.json is corrupt"));
    check_v_untouched();
  }

  SECTION("a missing file") {
    const auto dir = fresh_copy();
    fs::remove(dir / "optimizer.safetensors");
    const auto msg = load_into_v(dir);
    CHECK_THAT(msg, Contains(dir.string()));
    CHECK_THAT(msg, Contains("optimizer.safetensors is missing"));
    check_v_untouched();
  }

  SECTION("a Hugging Face model folder is not a checkpoint") {
    const auto dir = hf_dir;
    REQUIRE(fs::exists(dir / "config.json"));
    REQUIRE(fs::exists(dir / "model.safetensors"));
    const auto msg = load_into_v(dir);
    CHECK_THAT(msg, Contains(dir.string()));
    CHECK_THAT(msg, Contains("trainer_state.json is missing"));
    check_v_untouched();
    CHECK_THAT(load_into_v(work / "no-such-folder"), Contains("not a folder"));
    check_v_untouched();
  }

  // The trainers below differ from the one that wrote the checkpoint; each did one step
  // (weights, AdamW moments, a bank) and must keep all of it when the load is refused.
  auto refused = [&](auto& other, const std::string& expected) {
    {
      auto loader = test::tiny_loader(13);
      other.step(loader.next());
    }
    const StateDict before = snapshot(other);
    const Checkpoint c = read_checkpoint(good);
    const auto msg = test::error_of([&] { other.load_state(c.reader()); });
    CHECK_THAT(msg, Contains(std::string("contaccum: checkpoint ") + good.string()));
    CHECK_THAT(msg, Contains(expected));
    CHECK(other.steps_done() == 1);
    check_same_state(before, snapshot(other));
    return msg;
  };

  SECTION("another TrainerConfig") {
    auto other = test::make_tiny_trainer<CA>(19, test::tiny_trainer_config(2e-3));
    const auto msg = refused(other, "TrainerConfig.learning_rate");
    CHECK_THAT(msg, Contains("0.001 in the checkpoint, 0.002 in this trainer"));
  }

  SECTION("another model's checkpoint") {
    auto bert = test::tiny_bert(0.1);
    bert.hidden_size = 48;
    bert.intermediate_size = 96;
    bert.num_attention_heads = 4;
    auto other = test::make_tiny_trainer<CA>(19, test::tiny_trainer_config(), bert);
    const auto msg = refused(other, "does not match");
    CHECK_THAT(msg, Contains("mismatch: model.query_encoder.embeddings.word_embeddings.weight"));
  }

  SECTION("a bank of another capacity") {
    torch::manual_seed(19);
    test::TinyTrainer<CA> other(test::TinyDual(test::tiny_bert(0.1)), test::tiny_trainer_config(),
                                CA({.capacity = 4}), {}, InfoNCE<Cosine>{Cosine{0.1}});
    const auto msg = refused(other, "field 'strategy.bank.config.capacity'");
    CHECK_THAT(msg, Contains("is 6 in the checkpoint but 4 in this run"));
  }

  SECTION("another strategy") {
    auto other = test::make_tiny_trainer<GradAccum<>>(19);
    const auto msg = refused(other, "field 'trainer.types.strategy'");
    CHECK_THAT(msg, Contains("in the checkpoint but"));
  }

  SECTION("the good checkpoint itself loads into the victim") {
    const auto dir = fresh_copy();
    REQUIRE_NOTHROW(v.load_state(read_checkpoint(dir).reader()));
    CHECK(v.steps_done() == 2);
    check_same_parameters(v, good_trainer);
  }
}

TEST_CASE("CheckpointFolder keeps the last N, the latest and the best", "[checkpoint]") {
  const std::vector<double> ndcg{0.1, 0.5, 0.3, 0.2, 0.4};
  auto save_five = [&](const fs::path& root, bool higher_is_better) {
    CheckpointFolder run(root, {.keep_last = 2, .best_metric = "nDCG@10", .higher_is_better = higher_is_better});
    for (int64_t step = 1; step <= 5; ++step) {
      StateDict s;
      s.set("step", step);
      s.put("t", torch::full({3}, static_cast<double>(step)));
      run.save(step, s, {{"nDCG@10", ndcg[static_cast<std::size_t>(step - 1)]}, {"MRR@10", 0.9}});
    }
    return run;
  };

  SECTION("higher is better") {
    const auto root = scratch("folder_higher");
    const auto run = save_five(root, true);
    CHECK(run.list() == std::vector<fs::path>{root / "checkpoint-000002", root / "checkpoint-000004",
                                              root / "checkpoint-000005"});
    REQUIRE(run.latest().has_value());
    CHECK(*run.latest() == root / "checkpoint-000005");
    REQUIRE(run.best().has_value());
    CHECK(*run.best() == root / "checkpoint-000002");
    REQUIRE(run.best_value().has_value());
    CHECK(*run.best_value() == 0.5);
    for (const auto& dir : run.list()) {
      const auto c = read_checkpoint(dir);
      INFO(dir);
      CHECK(c.state.values.at("step").get<int64_t>() == c.step);
      CHECK(torch::equal(c.state.tensors.at("t"), torch::full({3}, static_cast<double>(c.step))));
    }
    // a second CheckpointFolder on the same root sees the same
    const CheckpointFolder again(root, {.keep_last = 2, .best_metric = "nDCG@10"});
    CHECK(again.list() == run.list());
    CHECK(again.best() == run.best());
  }

  SECTION("lower is better") {
    const auto root = scratch("folder_lower");
    const auto run = save_five(root, false);
    CHECK(run.list() == std::vector<fs::path>{root / "checkpoint-000001", root / "checkpoint-000004",
                                              root / "checkpoint-000005"});
    REQUIRE(run.best().has_value());
    CHECK(*run.best() == root / "checkpoint-000001");
    CHECK(run.best_value() == std::optional<double>(0.1));
    CHECK(run.latest() == std::optional<fs::path>(root / "checkpoint-000005"));
  }

  SECTION("no best metric: only the last keep_last remain, and no best") {
    const auto root = scratch("folder_nobest");
    CheckpointFolder run(root, {.keep_last = 2});
    for (int64_t step = 1; step <= 4; ++step) {
      StateDict s;
      s.set("step", step);
      run.save(step, s, {{"nDCG@10", 0.9}});
    }
    CHECK(run.list() == std::vector<fs::path>{root / "checkpoint-000003", root / "checkpoint-000004"});
    CHECK_FALSE(run.best().has_value());
    CHECK_FALSE(run.best_value().has_value());
  }

  SECTION("an empty or missing root has no checkpoint") {
    const CheckpointFolder run(scratch("folder_empty") / "not-yet");
    CHECK(run.list().empty());
    CHECK_FALSE(run.latest().has_value());
    CHECK_FALSE(run.best().has_value());
  }

  SECTION("leftovers of a killed write are removed and never listed") {
    const auto root = scratch("folder_leftover");
    {
      CheckpointFolder run(root);
      StateDict s;
      s.set("step", 3);
      run.save(3, s);
    }
    const auto tmp = root / ".tmp-checkpoint-000009-123";
    fs::create_directories(tmp);
    write_text(tmp / "model.safetensors", "half a file");
    const auto old = root / ".old-checkpoint-000002-123";
    fs::create_directories(old);
    const CheckpointFolder run(root);
    CHECK_FALSE(fs::exists(tmp));
    CHECK_FALSE(fs::exists(old));
    CHECK(fs::exists(root / "checkpoint-000003"));

    fs::create_directories(tmp);  // one that appears after the folder was opened
    write_text(tmp / "trainer_state.json", "{}");
    CHECK(run.list() == std::vector<fs::path>{root / "checkpoint-000003"});
    CHECK(run.latest() == std::optional<fs::path>(root / "checkpoint-000003"));
  }

  SECTION("a checkpoint killed between the two renames of a rewrite is put back") {
    const auto root = scratch("folder_rewrite_crash");
    {
      CheckpointFolder run(root);
      StateDict s;
      s.set("step", 3);
      run.save(3, s);
    }
    // what write_checkpoint leaves when killed after moving the old folder aside
    fs::rename(root / "checkpoint-000003", root / ".old-checkpoint-000003-2147483647");
    const CheckpointFolder run(root);
    REQUIRE(run.latest() == std::optional<fs::path>(root / "checkpoint-000003"));
    CHECK(read_checkpoint(*run.latest()).state.values.at("step") == 3);
    CHECK_FALSE(fs::exists(root / ".old-checkpoint-000003-2147483647"));
  }

  SECTION("a latest pointer to a missing folder is an error naming the pointer") {
    const auto root = scratch("folder_dangling");
    CheckpointFolder run(root);
    StateDict s;
    s.set("step", 1);
    run.save(1, s);
    write_text(root / "latest", "checkpoint-000077\n");
    const auto msg = test::error_of([&] { (void)run.latest(); });
    CHECK_THAT(msg, Contains((root / "latest").string()));
    CHECK_THAT(msg, Contains("checkpoint-000077"));
    CHECK_THAT(msg, Contains("does not exist"));
    write_text(root / "latest", "../elsewhere\n");
    CHECK_THAT(test::error_of([&] { (void)run.latest(); }), Contains("does not name a checkpoint folder"));
  }

  SECTION("keep_last must not be negative") {
    CHECK_THAT(test::error_of([&] { (void)CheckpointFolder(scratch("folder_bad"), {.keep_last = -1}); }),
               Contains("CheckpointOptions.keep_last must be >= 0"));
  }
}

TEST_CASE("write_checkpoint over an existing checkpoint of the same step replaces it whole", "[checkpoint]") {
  const auto root = scratch("rewrite");
  const auto dir = root / "checkpoint-000007";
  StateDict first;
  first.set("a", 1);
  first.set("only.first", true);
  first.put("t", torch::zeros({3}));
  first.put("model.w", torch::zeros({2, 2}));
  first.put("gone", torch::ones({1}));
  write_checkpoint(dir, 7, first);
  REQUIRE(read_checkpoint(dir).state.values.at("a") == 1);

  StateDict second;
  second.set("a", 2);
  second.put("t", torch::ones({3}));
  second.put("model.w", torch::full({2, 2}, 5.0));
  write_checkpoint(dir, 7, second);

  const Checkpoint c = read_checkpoint(dir);
  CHECK(c.step == 7);
  CHECK(c.state.values == nlohmann::json{{"a", 2}});
  CHECK(c.state.tensors.size() == 2);
  REQUIRE(c.state.tensors.contains("t"));
  CHECK(torch::equal(c.state.tensors.at("t"), torch::ones({3})));
  REQUIRE(c.state.tensors.contains("model.w"));
  CHECK(torch::equal(c.state.tensors.at("model.w"), torch::full({2, 2}, 5.0)));
  CHECK_FALSE(c.state.tensors.contains("gone"));
  // nothing of the swap is left beside it
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root)) names.push_back(e.path().filename().string());
  CHECK(names == std::vector<std::string>{"checkpoint-000007"});
}

TEST_CASE("A PairLoader resumes exactly and refuses another seed's state", "[checkpoint][data]") {
  const auto dir = scratch("pair_loader");
  {
    std::string vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nquery\nabout\npassage\nnegative\ntopic\n";
    for (int i = 0; i < 10; ++i) vocab += std::to_string(i) + "\n";
    write_text(dir / "vocab.txt", vocab);
  }
  const auto tok = tokenizers::WordPiece::from_vocab_file(dir / "vocab.txt");
  std::vector<TextExample> examples;
  for (int i = 0; i < 10; ++i) {
    std::string words;  // lengths vary, so padding differs from batch to batch
    for (int w = 0; w <= i; ++w) words += " topic " + std::to_string((i + w) % 10);
    const auto n = std::to_string(i);
    examples.push_back({"q" + n, "query about " + n + words, {{"p" + n, "", "passage " + n + words}},
                        {{"n" + n, "", "negative passage " + n}}, {}, {}});
  }
  using Loader = PairLoader<tokenizers::WordPiece>;
  auto make = [&](uint64_t seed) {
    return Loader(PairSampler(examples, {.seed = seed, .hard_negatives_per_query = 1}), tok, {.batch_size = 3});
  };
  auto same = [](const PairBatch& x, const PairBatch& y) {
    return torch::equal(x.queries.input_ids, y.queries.input_ids) &&
           torch::equal(x.queries.attention_mask, y.queries.attention_mask) &&
           torch::equal(x.positives.input_ids, y.positives.input_ids) &&
           torch::equal(x.hard_negatives.input_ids, y.hard_negatives.input_ids);
  };

  auto first = make(7);
  REQUIRE(first.steps_per_epoch() == 3);
  for (int i = 0; i < 5; ++i) (void)first.next();  // 3 batches of epoch 0, 2 of epoch 1
  CHECK(first.epoch() == 1);
  CHECK(first.position() == 6);

  StateDict s;
  first.save_state(s, "loader.");
  write_checkpoint(dir / "checkpoint-000005", 5, s);
  const Checkpoint c = read_checkpoint(dir / "checkpoint-000005");

  auto second = make(7);
  second.load_state(c.reader(), "loader.");
  CHECK(second.epoch() == 1);
  CHECK(second.position() == 6);
  for (int i = 0; i < 4; ++i) {  // crosses into epoch 2
    INFO("batch " << 5 + i);
    CHECK(same(first.next(), second.next()));
  }
  CHECK(first.epoch() == 2);
  CHECK(second.epoch() == 2);

  // without the load the batches would differ: the check above means something
  auto fresh = make(7);
  auto resumed = make(7);
  resumed.load_state(c.reader(), "loader.");
  CHECK_FALSE(same(fresh.next(), resumed.next()));

  auto other = make(8);
  const auto msg = test::error_of([&] { other.load_state(c.reader(), "loader."); });
  CHECK_THAT(msg, Contains(std::string("contaccum: checkpoint ") + c.path.string()));
  CHECK_THAT(msg, Contains("field 'loader.seed' is 7 in the checkpoint but 8 in this run"));
  CHECK(other.epoch() == 0);
  CHECK(other.position() == 0);

  auto wider = Loader(PairSampler(examples, {.seed = 7, .hard_negatives_per_query = 1}), tok, {.batch_size = 4});
  CHECK_THAT(test::error_of([&] { wider.load_state(c.reader(), "loader."); }), Contains("field 'loader.batch_size'"));

  // fit by epochs: two passes over the 10 examples are 2 x 3 full batches
  auto trainer = test::make_tiny_trainer<GradAccum<>>();
  auto by_epochs = make(7);
  const auto r = fit(trainer, by_epochs, {.epochs = 2, .progress = false});
  CHECK(r.steps_done == 6);
  CHECK(by_epochs.epoch() == 1);
  CHECK(by_epochs.position() == 9);
  auto synthetic = test::tiny_loader();
  CHECK_THAT(test::error_of([&] { fit(trainer, synthetic, {.steps = 7, .epochs = 1, .progress = false}); }),
             Contains("FitOptions.steps and FitOptions.epochs exclude each other"));
}

TEST_CASE("StateReader errors name the source and the key", "[checkpoint][errors]") {
  StateDict s;
  s.set("x.z", 1);
  s.set("x.name", std::string("text"));
  s.put("t.w", torch::zeros({3}));
  const StateReader r(s, "my-run/checkpoint-000004");
  CHECK(r.source() == "my-run/checkpoint-000004");
  CHECK(r.value<int>("x.z") == 1);
  CHECK_THAT(test::error_of([&] { (void)r.value<int>("x.y"); }),
             Contains("contaccum: checkpoint my-run/checkpoint-000004: field 'x.y' is missing"));
  CHECK_THAT(test::error_of([&] { (void)r.value<int64_t>("x.name"); }),
             Contains("field 'x.name' has the wrong type: \"text\""));
  CHECK_THAT(test::error_of([&] { (void)r.tensor("t.v"); }), Contains("field 't.v' is missing (tensor)"));
  CHECK_THAT(test::error_of([&] { (void)r.tensor("t.w", {2, 2}, torch::kFloat); }),
             Contains("field 't.w' has shape [3] but this run needs [2, 2]"));
  CHECK_THAT(test::error_of([&] { (void)r.tensor("t.w", {3}, torch::kDouble); }), Contains("field 't.w' has dtype"));
  CHECK_THAT(test::error_of([&] { r.require_same("x.z", 2); }),
             Contains("field 'x.z' is 1 in the checkpoint but 2 in this run"));
  CHECK_NOTHROW(r.require_same("x.z", 1));
  const auto keys = r.keys_under("x.");
  CHECK(keys.size() == 2);
  // a placed tensor is a copy, never the stored one
  auto placed = r.placed(s.tensors.at("t.w"));
  placed.fill_(1);
  CHECK(torch::equal(s.tensors.at("t.w"), torch::zeros({3})));
}

TEST_CASE("A write that fails (file size limit, as a full disk) is a clear error and leaves the last checkpoint whole",
          "[checkpoint][errors]") {
  const auto dir = test::scratch_dir("checkpoint_full_disk");
  auto trainer = test::make_tiny_trainer<GradAccum<>>();
  auto loader = test::tiny_loader();
  fit(trainer, loader, {.steps = 2, .out = dir, .save_every = 1, .progress = false});
  const auto before = CheckpointFolder(dir / "checkpoints").latest();
  REQUIRE(before);

  // Files may not grow past 4 KiB from here: every checkpoint file is larger, the log is not.
  // The kernel then fails write() with EFBIG, the way a full disk fails it with ENOSPC.
  rlimit old{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &old) == 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 4096;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string message;
  try {
    fit(trainer, loader, {.steps = 3, .out = dir, .save_every = 1, .resume = true, .progress = false});
  } catch (const contaccum::error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, old_handler);

  INFO(message);
  CHECK_THAT(message, Catch::Contains("failed: File too large"));
  CHECK_THAT(message, Catch::Contains((dir / "checkpoints").string()));
  CHECK(trainer.steps_done() == 3);  // the step ran; only its checkpoint could not be written
  CheckpointFolder folder(dir / "checkpoints");  // recovers the failed writer's leftovers
  CHECK(folder.latest() == before);
  const auto c = read_checkpoint(*before);  // whole: verified
  CHECK(c.step == 2);
  for (const auto& e : fs::directory_iterator(dir / "checkpoints"))
    CHECK(e.path().filename().string().rfind(".tmp-", 0) != 0);  // the temporary folder is gone

  // With room again the run goes on from the intact checkpoint.
  auto again = test::make_tiny_trainer<GradAccum<>>();
  auto loader2 = test::tiny_loader();
  const auto r = fit(again, loader2, {.steps = 3, .out = dir, .save_every = 1, .resume = true, .progress = false});
  CHECK(r.first_step == 2);
  CHECK(CheckpointFolder(dir / "checkpoints").latest() != before);
}
