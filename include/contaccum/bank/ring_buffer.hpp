#pragma once
/// \file
/// \brief A preallocated FIFO ring of embedding rows with a capacity in vectors.
///
/// Storage is allocated once, on the first push, with the dtype and device of the pushed
/// rows (and moved if later rows live elsewhere), or in a narrower storage dtype
/// (bf16/fp16: half the memory of fp32 rows) whose rows come back in the pushed rows' dtype
/// (`entries()`), so that they are scored in it. Pushing writes in place: no
/// re-concatenation per micro-batch. Pushes inside a transaction can be rolled back
/// exactly (the overwritten rows are kept until commit), so a failed optimizer step
/// leaves the bank as it was.

#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <vector>

namespace contaccum {

class RingBuffer {
public:
  /// \param storage_dtype the type rows are stored in (a floating type); none: the pushed rows' type.
  explicit RingBuffer(int64_t capacity = 0, const char* name = "bank",
                      std::optional<torch::ScalarType> storage_dtype = std::nullopt)
      : capacity_(capacity), name_(name), storage_dtype_(storage_dtype) {
    detail::require(capacity >= 0, name_, ": capacity must be >= 0, got ", capacity);
    detail::require(!storage_dtype || c10::isFloatingType(*storage_dtype), name_, ": the storage dtype must be a "
                    "floating type, got ", storage_dtype ? c10::toString(*storage_dtype) : "");
  }

  [[nodiscard]] int64_t capacity() const { return capacity_; }
  [[nodiscard]] int64_t size() const { return size_; }
  [[nodiscard]] int64_t width() const { return buf_.defined() ? buf_.size(1) : 0; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  /// \brief The storage (capacity, H) once allocated, in the storage dtype; undefined before the first push.
  [[nodiscard]] const torch::Tensor& storage() const { return buf_; }
  /// \brief The type rows are stored in, if one was set.
  [[nodiscard]] std::optional<torch::ScalarType> storage_dtype() const { return storage_dtype_; }
  /// \brief Device and dtype of the rows entries() returns: the storage's device and the
  ///        pushed rows' dtype (undefined options before the first push: the CPU's float).
  [[nodiscard]] torch::TensorOptions options() const {
    return buf_.defined() ? buf_.options().dtype(row_dtype_) : torch::TensorOptions();
  }

  /// \brief Live rows in storage order (size, H), in the pushed rows' dtype: a view, no copy,
  ///        unless a narrower storage dtype is set (then a converted copy). Row i of two
  ///        rings pushed in lockstep belongs to the same micro-batch slot.
  [[nodiscard]] torch::Tensor entries() const {
    return buf_.defined() ? widened(buf_.slice(0, 0, size_)) : torch::Tensor{};
  }
  /// \brief Live rows oldest first (size, H): the order of the reference implementation.
  [[nodiscard]] torch::Tensor oldest_first() const {
    if (!buf_.defined() || size_ < capacity_ || head_ == 0) return entries();
    return widened(torch::cat({buf_.slice(0, head_), buf_.slice(0, 0, head_)}));
  }

  /// \brief Appends rows x (n, H), detached; the oldest fall out beyond capacity.
  void push(const torch::Tensor& x) {
    detail::require(x.dim() == 2, name_, ": expected (n, H) embeddings, got ", x.sizes());
    if (capacity_ == 0 || x.size(0) == 0) return;
    const auto stored = x.options().dtype(storage_dtype_.value_or(x.scalar_type())).requires_grad(false);
    if (!buf_.defined()) {
      buf_ = torch::empty({capacity_, x.size(1)}, stored);
    } else {
      detail::require(x.size(1) == width(), name_, " holds ", width(), "-wide embeddings but got ", x.size(1),
                      "-wide ones (the embedding width changed)");
      if (x.device() != buf_.device() || stored.dtype() != buf_.dtype()) buf_ = buf_.to(stored);
    }
    row_dtype_ = x.scalar_type();
    torch::NoGradGuard no_grad;
    auto rows = x.detach();
    if (rows.size(0) > capacity_) rows = rows.slice(0, rows.size(0) - capacity_);
    last_push_begin_ = head_;
    last_push_rows_ = x.size(0);
    int64_t done = 0;
    while (done < rows.size(0)) {  // at most two contiguous writes
      const auto len = std::min(rows.size(0) - done, capacity_ - head_);
      auto dst = buf_.slice(0, head_, head_ + len);
      if (in_transaction_) undo_.push_back({head_, dst.clone()});
      dst.copy_(rows.slice(0, done, done + len));
      done += len;
      head_ = (head_ + len) % capacity_;
      size_ = std::min(capacity_, size_ + len);
    }
  }

  /// \brief Slot where the last push started, and how many rows it was given.
  [[nodiscard]] int64_t last_push_begin() const { return last_push_begin_; }
  [[nodiscard]] int64_t last_push_rows() const { return last_push_rows_; }

  void clear() {
    head_ = 0;
    size_ = 0;
    undo_.clear();
  }

  /// \brief Starts recording pushes so they can be undone.
  void begin() {
    undo_.clear();
    saved_head_ = head_;
    saved_size_ = size_;
    in_transaction_ = true;
  }
  /// \brief Keeps the pushes since begin().
  void commit() {
    undo_.clear();
    in_transaction_ = false;
  }
  /// \brief Undoes the pushes since begin(), restoring every overwritten row.
  void rollback() {
    if (!in_transaction_) return;
    torch::NoGradGuard no_grad;
    for (auto it = undo_.rbegin(); it != undo_.rend(); ++it)
      buf_.slice(0, it->first, it->first + it->second.size(0)).copy_(it->second);
    head_ = saved_head_;
    size_ = saved_size_;
    commit();
  }

  /// \brief Saves storage, head, size and the last push (a transaction must not be open).
  void save_state(StateDict& s, const std::string& prefix) const {
    detail::require(!in_transaction_, name_, ": cannot save its state inside an optimizer step");
    // the live rows only: before the first wrap they are rows [0, size) and the rest of the
    // storage was never written (uninitialized memory has no place in a checkpoint)
    if (buf_.defined()) s.put(prefix + "storage", buf_.slice(0, 0, size_));
    if (buf_.defined()) s.set(prefix + "row_dtype", std::string(c10::toString(row_dtype_)));
    s.set(prefix + "width", width());
    s.set(prefix + "capacity", capacity_);
    s.set(prefix + "head", head_);
    s.set(prefix + "size", size_);
    s.set(prefix + "last_push_begin", last_push_begin_);
    s.set(prefix + "last_push_rows", last_push_rows_);
  }
  /// \brief Restores a saved ring of the same capacity (checked, with the key named).
  void load_state(const StateReader& r, const std::string& prefix) {
    r.require_same(prefix + "capacity", capacity_);
    const auto head = r.value<int64_t>(prefix + "head");
    const auto size = r.value<int64_t>(prefix + "size");
    if (size < 0 || size > capacity_) r.fail(prefix + "size", "is ", size, ", outside [0, ", capacity_, "]");
    if (head < 0 || (capacity_ > 0 && head >= capacity_) || (capacity_ == 0 && head != 0))
      r.fail(prefix + "head", "is ", head, ", outside [0, ", capacity_, ")");
    torch::Tensor buf;
    auto row_dtype = row_dtype_;
    if (r.has_tensor(prefix + "storage")) {
      const auto& live = r.tensor(prefix + "storage");
      const auto width = r.value<int64_t>(prefix + "width");
      if (live.dim() != 2 || live.size(0) != size || live.size(1) != width)
        r.fail(prefix + "storage", "has shape ", live.sizes(), " but the ring holds ", size, " rows of width ", width);
      if (storage_dtype_ && live.scalar_type() != *storage_dtype_)
        r.fail(prefix + "storage", "holds ", c10::toString(live.scalar_type()), " rows but ", name_, " stores ",
               c10::toString(*storage_dtype_), " rows (BankConfig.storage_dtype)");
      if (!storage_dtype_ && !live.is_floating_point())
        r.fail(prefix + "storage", "holds ", c10::toString(live.scalar_type()), " rows, not embeddings");
      buf = torch::zeros({capacity_, width}, live.options());
      buf.slice(0, 0, size).copy_(live);
      // rows saved before the row dtype was recorded were stored as pushed
      row_dtype = live.scalar_type();
      if (r.has_value(prefix + "row_dtype")) {
        const auto name = r.value<std::string>(prefix + "row_dtype");
        const auto known = {torch::kFloat, torch::kDouble, torch::kBFloat16, torch::kHalf};
        const auto it = std::find_if(known.begin(), known.end(), [&](auto t) { return name == c10::toString(t); });
        if (it == known.end()) r.fail(prefix + "row_dtype", "is '", name, "', not a floating type");
        row_dtype = *it;
      }
    } else if (size > 0) {
      r.fail(prefix + "storage", "is missing but the ring has ", size, " rows");
    }
    const auto last_begin = r.value<int64_t>(prefix + "last_push_begin");
    const auto last_rows = r.value<int64_t>(prefix + "last_push_rows");
    buf_ = r.placed(buf);
    row_dtype_ = row_dtype;
    head_ = head;
    size_ = size;
    last_push_begin_ = last_begin;
    last_push_rows_ = last_rows;
    undo_.clear();
    in_transaction_ = false;
  }

private:
  [[nodiscard]] torch::Tensor widened(const torch::Tensor& rows) const {
    return rows.scalar_type() == row_dtype_ ? rows : rows.to(row_dtype_);
  }

  int64_t capacity_;
  const char* name_;
  std::optional<torch::ScalarType> storage_dtype_;
  torch::ScalarType row_dtype_ = torch::kFloat;  // the pushed rows' dtype: what entries() returns
  torch::Tensor buf_;
  int64_t head_ = 0;  // next slot to write
  int64_t size_ = 0;
  int64_t last_push_begin_ = 0, last_push_rows_ = 0;
  bool in_transaction_ = false;
  int64_t saved_head_ = 0, saved_size_ = 0;
  std::vector<std::pair<int64_t, torch::Tensor>> undo_;
};

}  // namespace contaccum
