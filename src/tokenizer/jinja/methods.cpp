// Python methods of strings and dicts (s.strip(), d.items(), ...): one small function each, one table per type
// (see builtins.h).
#include <string_view>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/strings.h"

namespace bq::jinja {

namespace {

// One method call: the object, its arguments (by position, else by keyword, as Python binds them).
struct MethodCall {
  const std::string& name;
  const Value& obj;
  const CallArgs& a;

  const Value* arg(size_t index, std::string_view keyword) const { return a.get(index, keyword); }
  const std::string& str_arg(size_t index, std::string_view keyword) const {
    const Value* v = a.get(index, keyword);
    if (!v || v->kind != Value::Str) runtime_fail("{}() expects a string argument", name);
    return v->s;
  }
};

using MethodFn = Value (*)(const MethodCall&);
using MethodTable = std::unordered_map<std::string_view, MethodFn>;

// startswith and endswith take one string or a list of them.
bool affix_matches(const MethodCall& m, bool at_start) {
  const std::string& s = m.obj.s;
  const Value* p = m.arg(0, "prefix");
  List options = p && p->kind == Value::Array ? *p->list : List{p ? *p : Value::undefined()};
  for (auto& o : options) {
    if (o.kind != Value::Str) runtime_fail("{}() expects strings", m.name);
    bool hit = o.s.size() <= s.size() && (at_start ? s.compare(0, o.s.size(), o.s) == 0
                                                   : s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0);
    if (hit) return true;
  }
  return false;
}

Value str_split(const MethodCall& m) {
  const Value* maxsplit = m.arg(1, "maxsplit");
  return Value::array(split(m.obj.s, m.arg(0, "sep"), maxsplit ? maxsplit->as_int() : -1));
}

Value str_replace(const MethodCall& m) {
  const Value* count = m.arg(2, "count");
  const std::string& from = m.str_arg(0, "old");
  const std::string& to = m.str_arg(1, "new");
  return Value::str(replace_all(m.obj.s, from, to, count ? count->as_int() : -1));
}

// Positions and counts are in code points, as Python's.
Value str_find(const MethodCall& m) {
  const std::string& s = m.obj.s;
  size_t pos = s.find(m.str_arg(0, "sub"));
  return Value::integer(pos == std::string::npos ? -1 : int64_t(utf8_chars(s.substr(0, pos)).size()));
}

Value str_count(const MethodCall& m) {
  const std::string& s = m.obj.s;
  const std::string& sub = m.str_arg(0, "sub");
  int64_t c = 0;
  if (sub.empty()) return Value::integer(int64_t(utf8_chars(s).size()) + 1);
  for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
  return Value::integer(c);
}

Value str_join(const MethodCall& m) {
  const Value* items = m.arg(0, "iterable");
  std::string out;
  List list = items ? iterate(*items) : List{};
  for (size_t k = 0; k < list.size(); ++k) {
    out += (k ? m.obj.s : "") + to_str(list[k]);
    check_string(out.size());
  }
  return Value::str(out);
}

const MethodTable& string_methods() {
  static const MethodTable table = {
      {"strip", [](const MethodCall& m) { return Value::str(strip(m.obj.s, m.arg(0, "chars"), true, true)); }},
      {"lstrip", [](const MethodCall& m) { return Value::str(strip(m.obj.s, m.arg(0, "chars"), true, false)); }},
      {"rstrip", [](const MethodCall& m) { return Value::str(strip(m.obj.s, m.arg(0, "chars"), false, true)); }},
      {"lower", [](const MethodCall& m) { return Value::str(lower(m.obj.s)); }},
      {"upper", [](const MethodCall& m) { return Value::str(upper(m.obj.s)); }},
      {"title", [](const MethodCall& m) { return Value::str(title(m.obj.s)); }},
      {"capitalize", [](const MethodCall& m) { return Value::str(capitalize(m.obj.s)); }},
      {"split", str_split},
      {"startswith", [](const MethodCall& m) { return Value::boolean(affix_matches(m, true)); }},
      {"endswith", [](const MethodCall& m) { return Value::boolean(affix_matches(m, false)); }},
      {"replace", str_replace},
      {"find", str_find},
      {"count", str_count},
      {"join", str_join},
  };
  return table;
}

Value dict_get(const MethodCall& m) {
  const Value* v = m.obj.dict->get(m.str_arg(0, "key"));
  const Value* dflt = m.arg(1, "default");
  return v ? *v : dflt ? *dflt : Value::none();
}

Value dict_keys(const MethodCall& m) {
  List out;
  for (auto& kv : m.obj.dict->items) out.push_back(Value::str(kv.first));
  return Value::array(std::move(out));
}

Value dict_values(const MethodCall& m) {
  List out;
  for (auto& kv : m.obj.dict->items) out.push_back(kv.second);
  return Value::array(std::move(out));
}

const MethodTable& dict_methods() {
  static const MethodTable table = {
      {"get", dict_get},
      {"items", [](const MethodCall& m) { return pairs(m.obj); }},
      {"keys", dict_keys},
      {"values", dict_values},
  };
  return table;
}

}  // namespace

Value call_method(const Value& obj, const std::string& name, const CallArgs& a) {
  if (obj.kind == Value::Undefined)
    runtime_fail("'{}' is undefined (calling method '{}')", obj.s.empty() ? "value" : obj.s, name);
  const MethodTable* table = obj.kind == Value::Str    ? &string_methods()
                             : obj.kind == Value::Dict ? &dict_methods()
                                                       : nullptr;
  if (table) {
    auto it = table->find(name);
    if (it != table->end()) return it->second(MethodCall{name, obj, a});
  }
  runtime_fail("unknown method '{}' of a {}", name, type_name(obj));
}

}  // namespace bq::jinja
