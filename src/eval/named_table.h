// Lookups in the tables of named parts a task file picks from (readers, answer extractors, metrics, presets):
// every entry has a `name`, and an unknown name is answered with the known ones.
#pragma once
#include <string>
#include <string_view>
#include <vector>

namespace bq::eval {

template <typename T>
const T* find_named(const std::vector<T>& table, std::string_view name) {
  for (const T& entry : table)
    if (entry.name == name) return &entry;
  return nullptr;
}

template <typename T>
std::string known_names(const std::vector<T>& table) {
  std::string names;
  for (const T& entry : table) names += (names.empty() ? "" : ", ") + std::string(entry.name);
  return names;
}

}  // namespace bq::eval
