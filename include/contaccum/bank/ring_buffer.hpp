#pragma once
/// \file
/// \brief A preallocated FIFO ring of embedding rows with a capacity in vectors.
///
/// Storage is allocated once, on the first push, with the dtype and device of the pushed
/// rows (and moved if later rows live elsewhere). Pushing writes in place: no
/// re-concatenation per micro-batch. Pushes inside a transaction can be rolled back
/// exactly (the overwritten rows are kept until commit), so a failed optimizer step
/// leaves the bank as it was.

#include <contaccum/detail/error.hpp>
#include <contaccum/state/state_dict.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <vector>

namespace contaccum {

class RingBuffer {
public:
  explicit RingBuffer(int64_t capacity = 0, const char* name = "bank") : capacity_(capacity), name_(name) {
    detail::require(capacity >= 0, name_, ": capacity must be >= 0, got ", capacity);
  }

  [[nodiscard]] int64_t capacity() const { return capacity_; }
  [[nodiscard]] int64_t size() const { return size_; }
  [[nodiscard]] int64_t width() const { return buf_.defined() ? buf_.size(1) : 0; }
  [[nodiscard]] bool empty() const { return size_ == 0; }
  /// \brief The storage (capacity, H) once allocated; undefined before the first push.
  [[nodiscard]] const torch::Tensor& storage() const { return buf_; }

  /// \brief Live rows in storage order (size, H): a view, no copy. Row i of two rings
  ///        pushed in lockstep belongs to the same micro-batch slot.
  [[nodiscard]] torch::Tensor entries() const {
    return buf_.defined() ? buf_.slice(0, 0, size_) : torch::Tensor{};
  }
  /// \brief Live rows oldest first (size, H): the order of the reference implementation.
  [[nodiscard]] torch::Tensor oldest_first() const {
    if (!buf_.defined() || size_ < capacity_ || head_ == 0) return entries();
    return torch::cat({buf_.slice(0, head_), buf_.slice(0, 0, head_)});
  }

  /// \brief Appends rows x (n, H), detached; the oldest fall out beyond capacity.
  void push(const torch::Tensor& x) {
    detail::require(x.dim() == 2, name_, ": expected (n, H) embeddings, got ", x.sizes());
    if (capacity_ == 0 || x.size(0) == 0) return;
    if (!buf_.defined()) {
      buf_ = torch::empty({capacity_, x.size(1)}, x.options().requires_grad(false));
    } else {
      detail::require(x.size(1) == width(), name_, " holds ", width(), "-wide embeddings but got ", x.size(1),
                      "-wide ones (the embedding width changed)");
      if (x.device() != buf_.device() || x.scalar_type() != buf_.scalar_type())
        buf_ = buf_.to(x.options().requires_grad(false));
    }
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
    if (r.has_tensor(prefix + "storage")) {
      const auto& live = r.tensor(prefix + "storage");
      const auto width = r.value<int64_t>(prefix + "width");
      if (live.dim() != 2 || live.size(0) != size || live.size(1) != width)
        r.fail(prefix + "storage", "has shape ", live.sizes(), " but the ring holds ", size, " rows of width ", width);
      buf = torch::zeros({capacity_, width}, live.options());
      buf.slice(0, 0, size).copy_(live);
    } else if (size > 0) {
      r.fail(prefix + "storage", "is missing but the ring has ", size, " rows");
    }
    const auto last_begin = r.value<int64_t>(prefix + "last_push_begin");
    const auto last_rows = r.value<int64_t>(prefix + "last_push_rows");
    buf_ = r.placed(buf);
    head_ = head;
    size_ = size;
    last_push_begin_ = last_begin;
    last_push_rows_ = last_rows;
    undo_.clear();
    in_transaction_ = false;
  }

private:
  int64_t capacity_;
  const char* name_;
  torch::Tensor buf_;
  int64_t head_ = 0;  // next slot to write
  int64_t size_ = 0;
  int64_t last_push_begin_ = 0, last_push_rows_ = 0;
  bool in_transaction_ = false;
  int64_t saved_head_ = 0, saved_size_ = 0;
  std::vector<std::pair<int64_t, torch::Tensor>> undo_;
};

}  // namespace contaccum
