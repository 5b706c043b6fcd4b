// A sequence's KV page table (kv_layout.h) as both backends hold it: the pages, made as positions are first written
// and shared between sequences where a prompt prefix is, and the bytes they hold. Mem owns one page's memory:
// tracked_vector<float> on the CPU, cuda::DeviceArray<uint16_t> on a GPU.
#pragma once
#include <algorithm>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "backend/kv_layout.h"

namespace bq {

// The bytes a backend's pages hold now and at most; a page several sequences share counts once.
struct KvPageAccount {
  size_t held = 0, peak = 0;
};

// The OutOfMemory of a page that the KV cache limit (ForwardBackend::set_kv_cache_limit) leaves no room for.
[[noreturn]] void kv_limit_reached(size_t limit, size_t held, size_t page);

// One page, counted in its backend's account while it lives (as long as a table holds it).
template <class Mem>
struct KvPage {
  Mem mem;
  size_t bytes;
  std::shared_ptr<KvPageAccount> account;
  KvPage(Mem m, size_t b, std::shared_ptr<KvPageAccount> a) : mem(std::move(m)), bytes(b), account(std::move(a)) {
    account->held += bytes;
    account->peak = std::max(account->peak, account->held);
  }
  ~KvPage() { account->held -= bytes; }
  KvPage(const KvPage&) = delete;
  KvPage& operator=(const KvPage&) = delete;
};

template <class T, class Mem>
class KvPageTable {
 public:
  using Page = KvPage<Mem>;
  KvPageTable(const KvShape& s, int capacity)
      : pages_(size_t(s.table_pages(capacity))), first_(pages_.size(), nullptr) {}

  bool has(int i) const { return pages_.at(size_t(i)) != nullptr; }
  void set(int i, std::shared_ptr<Page> page, T* first) {
    pages_.at(size_t(i)) = std::move(page);
    first_[size_t(i)] = first;
  }
  // Entry i holds the page of entry j of `from` (the same memory, not a copy).
  void share(int i, const KvPageTable& from, int j) { set(i, from.pages_.at(size_t(j)), from.first_.at(size_t(j))); }
  T* page(int i) const { return first_.at(size_t(i)); }
  // The first element of every entry's page (null: none yet), as kv_key and kv_value read them.
  T* const* data() const { return first_.data(); }
  int size() const { return int(pages_.size()); }

 private:
  std::vector<std::shared_ptr<Page>> pages_;
  std::vector<T*> first_;
};

}  // namespace bq
