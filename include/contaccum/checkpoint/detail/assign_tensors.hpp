#pragma once
/// \file
/// \brief Shared by the checkpoint loaders: copying a state dict into a model's parameters
///        all or nothing, with one error that lists every problem at once.
///
/// A loader first maps checkpoint names to the model's names (its own spelling rules:
/// prefixes, old names, heads to skip) into a CheckpointNameMap; assign_checkpoint_tensors
/// then checks every target and copies only when nothing is wrong.

#include <contaccum/detail/error.hpp>

#include <torch/torch.h>

#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace contaccum::detail {

/// \brief Checkpoint names matched to a model's parameter names by a loader's rules.
struct CheckpointNameMap {
  std::map<std::string, std::string> to_source;  // our name -> checkpoint name
  std::vector<std::string> unexpected;           // body names the model has no parameter for
  std::vector<std::string> duplicated;           // two checkpoint names for one parameter

  // Our tensor `name` comes from the checkpoint's `source`. When `ours` has no `name`, the
  // source is unexpected if `in_body` (the config does not describe the checkpoint, e.g.
  // more layers) and otherwise a head we do not have, left out.
  void add(const std::string& name, const std::string& source, const std::map<std::string, torch::Tensor>& ours,
           bool in_body) {
    if (!ours.contains(name)) {
      if (in_body) unexpected.push_back(source);
      return;
    }
    auto [it, fresh] = to_source.emplace(name, source);
    if (!fresh) duplicated.push_back(it->second + " and " + source);
  }
};

// Whether any checkpoint name starts with `prefix` (a ...ForMaskedLM / ...ForCausalLM
// checkpoint saves the body under one: "bert.", "gpt_neox.", "model.").
[[nodiscard]] inline bool any_name_starts_with(const std::map<std::string, torch::Tensor>& tensors,
                                               std::string_view prefix) {
  for (const auto& entry : tensors)
    if (entry.first.starts_with(prefix)) return true;
  return false;
}

// "[a, b]" for a shape.
[[nodiscard]] inline std::string shape_string(c10::IntArrayRef shape) {
  std::ostringstream os;
  os << shape;
  return os.str();
}

// "n what: a, b, c" on its own line, or nothing for an empty list.
inline void list_problems(std::ostringstream& os, const std::vector<std::string>& items, const char* what) {
  if (items.empty()) return;
  os << "\n  " << items.size() << " " << what << ":";
  for (const auto& s : items) os << "\n    " << s;
}

/// \brief Copies `tensors[names.to_source[name]]` into every `targets[name]` (dtype
///        converted, device kept), or throws one invalid_input and copies nothing.
///
/// The error starts "contaccum: <source> does not fit <model>:" and lists every missing
/// tensor, shape mismatch ("name: expected [a, b], got [c, d]"), non-floating tensor,
/// unexpected and duplicated name; `notes` (hints for the user) follow the lists. A
/// checkpoint that fits but holds NaN or Inf values is refused too, each tensor named.
inline void assign_checkpoint_tensors(const std::map<std::string, torch::Tensor>& targets,
                                      const std::map<std::string, torch::Tensor>& tensors,
                                      const CheckpointNameMap& names, std::string_view source,
                                      std::string_view model, const std::vector<std::string>& notes = {}) {
  std::vector<std::string> missing, mismatched, non_finite;
  for (const auto& [name, target] : targets) {
    auto it = names.to_source.find(name);
    if (it == names.to_source.end()) {
      missing.push_back(name);
      continue;
    }
    const auto& t = tensors.at(it->second);
    if (!t.defined()) {
      mismatched.push_back(cat(it->second, ": undefined tensor"));
    } else if (t.sizes() != target.sizes()) {
      mismatched.push_back(
          cat(it->second, ": expected ", shape_string(target.sizes()), ", got ", shape_string(t.sizes())));
    } else if (!t.is_floating_point()) {
      mismatched.push_back(cat(it->second, ": dtype ", t.scalar_type(), " is not a floating type"));
    } else if (const auto bad = t.numel() - torch::isfinite(t).sum().item<int64_t>(); bad > 0) {
      non_finite.push_back(cat(it->second, ": ", bad, " of ", t.numel(), " values are NaN or Inf"));
    }
  }
  if (!missing.empty() || !mismatched.empty() || !names.unexpected.empty() || !names.duplicated.empty()) {
    std::ostringstream os;
    os << "contaccum: " << source << " does not fit " << model << ":";
    list_problems(os, missing, "missing tensors");
    list_problems(os, mismatched, "shape mismatches");
    list_problems(os, names.unexpected, "unexpected tensors");
    list_problems(os, names.duplicated, "tensors given twice");
    list_problems(os, non_finite, "tensors with NaN or Inf values");
    for (const auto& note : notes) os << "\n  " << note;
    throw invalid_input(os.str());
  }
  if (!non_finite.empty()) {  // every name and shape fits, but the values are unusable
    std::ostringstream os;
    os << "contaccum: " << source << " holds NaN or Inf weights (a damaged file, or a run that diverged):";
    list_problems(os, non_finite, "tensors with NaN or Inf values");
    throw invalid_input(os.str());
  }
  torch::NoGradGuard no_grad;
  for (const auto& [name, target] : targets) {
    auto t = target;  // a handle on the parameter's storage
    t.copy_(tensors.at(names.to_source.at(name)));
  }
}

}  // namespace contaccum::detail
