// Jinja values: the one dynamic type the evaluator computes with, and the Python semantics of it (truthiness,
// equality and ordering, str() and repr(), json.dumps) that every other part of the engine relies on.
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bq::jinja {

// Runtime errors carry no location; the evaluator adds the line of the node being evaluated.
struct RuntimeError {
  std::string message;
};
template <typename... Args>
[[noreturn]] void runtime_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw RuntimeError{fmt::format(f, std::forward<Args>(args)...)};
}

struct Value;
struct DictData;
struct CallArgs;
using List = std::vector<Value>;
using Function = std::function<Value(CallArgs&)>;

// Lists and dicts are shared by reference (a namespace set in a loop is seen after it), dicts keep insertion
// order like Python's.
struct Value {
  enum Kind : uint8_t { Undefined, None, Bool, Int, Float, Str, Array, Dict, Func };
  Kind kind = Undefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string s;  // the string; for Undefined, the name that was missing (for error messages)
  std::shared_ptr<List> list;
  std::shared_ptr<DictData> dict;
  std::shared_ptr<Function> fn;
  int list_nesting = 0;  // for Array: how deep lists and dicts nest inside it (1: no container inside)

  static Value undefined(std::string what = "") { Value v; v.s = std::move(what); return v; }
  static Value none() { Value v; v.kind = None; return v; }
  static Value boolean(bool x) { Value v; v.kind = Bool; v.b = x; return v; }
  static Value integer(int64_t x) { Value v; v.kind = Int; v.i = x; return v; }
  static Value number(double x) { Value v; v.kind = Float; v.f = x; return v; }
  static Value str(std::string x) { Value v; v.kind = Str; v.s = std::move(x); return v; }
  static Value array(List items = {});
  static Value new_dict(bool is_namespace = false);
  static Value func(Function f) { Value v; v.kind = Func; v.fn = std::make_shared<Function>(std::move(f)); return v; }

  bool is_num() const { return kind == Int || kind == Float || kind == Bool; }
  double as_double() const { return kind == Float ? f : kind == Bool ? double(b) : double(i); }
  int64_t as_int() const { return kind == Bool ? int64_t(b) : i; }
};

// Lists and dicts are built only through Value::array and DictData::set/add, which keep the nesting depth and the
// approximate size within limits.h: a template looping `ns.x = [ns.x]` would otherwise build a chain whose
// printing or destruction overflows the stack, and `[s, s, s, ...]` of large strings would exhaust memory.
// Nested containers are shared, not copied, so each counts only what it holds directly; what all containers
// of one render hold together is counted in container_bytes_built (reset by each render).
extern thread_local size_t container_bytes_built;
void check_container(int nest, size_t bytes, size_t added);
void check_string(size_t bytes);
int nesting(const Value& v);
size_t footprint(const Value& v);
// Whether a namespace is reachable from v. Namespaces are the only containers that change after they are built;
// keeping them out of each other's attributes rules out cycles and chains that outgrow the nesting count.
bool holds_namespace(const Value& v);

struct DictData {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;
  int nest = 1;      // as Value::list_nesting; only grows (an overwritten entry may have been deeper)
  size_t bytes = 0;  // approximate footprint of the entries

  // Appends without looking for the key (from_json: JSON objects have unique keys once parsed).
  void add(std::string key, Value v);
  const Value* get(std::string_view key) const;
  void set(const std::string& key, Value v);

 private:
  void account(const std::string& key, const Value& v, const Value* replaced = nullptr);
};

struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  // Argument `index` by position, else by keyword `name`; nullptr when absent.
  const Value* get(size_t index, std::string_view name) const {
    if (index < pos.size()) return &pos[index];
    for (auto& [k, v] : kw)
      if (k == name) return &v;
    return nullptr;
  }
};

const char* type_name(const Value& v);
Value from_json(const nlohmann::ordered_json& j, int depth = 0);
bool truthy(const Value& v);
bool equal(const Value& a, const Value& b);
// Three-way comparison for <, >, sort: numbers, strings (code point order = UTF-8 byte order), lists.
int compare(const Value& a, const Value& b);

// Python's repr(float): the shortest digits that round-trip; exponent form outside [1e-4, 1e16).
std::string float_repr(double x);
std::string repr(const Value& v);
// Python's str(): what {{ value }} prints.
std::string to_str(const Value& v);

// json.dumps(value, ensure_ascii=False, indent=indent, separators=..., sort_keys=...), as transformers' tojson.
struct JsonStyle {
  int indent = -1;  // -1: everything on one line
  std::string item_sep, key_sep;
  bool sort_keys = false;
};
void to_json(const Value& v, const JsonStyle& st, int level, std::string& out);

// What the evaluator and the builtins do with values alike. Their errors name no place; the caller knows it.
List iterate(const Value& v);  // a for loop's items: list items, dict keys, string characters
Value get_attr(const Value& obj, const std::string& name);  // a dict key (Jinja tries attribute, then item)
Value get_item(const Value& obj, const Value& key);
bool contains(const Value& container, const Value& item);  // Python's `item in container`
Value pairs(const Value& dict);                            // dict.items() as [key, value] lists
// Python's + - * / // % ** (+ and * of strings and lists too); comparisons and `in` are above.
Value arithmetic(const std::string& op, const Value& l, const Value& r);

}  // namespace bq::jinja
