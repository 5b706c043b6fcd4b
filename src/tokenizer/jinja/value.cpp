// Jinja values: see value.h.
#include "tokenizer/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <unordered_set>

#include "core/limits.h"
#include "tokenizer/jinja/strings.h"

namespace bq::jinja {

thread_local size_t container_bytes_built = 0;
void check_container(int nest, size_t bytes, size_t added) {
  if (nest > limits::kMaxNesting) runtime_fail("lists and dicts nested more than {} deep", limits::kMaxNesting);
  if (bytes > limits::kJinjaMaxStringBytes)
    runtime_fail("a list or dict of more than {} MiB", limits::kJinjaMaxStringBytes >> 20);
  container_bytes_built += added;
  if (container_bytes_built > limits::kJinjaMaxBytesBuilt)
    runtime_fail("the template built more than {} MiB of lists and dicts", limits::kJinjaMaxBytesBuilt >> 20);
}

void DictData::account(const std::string& key, const Value& v, const Value* replaced) {
  nest = std::max(nest, 1 + nesting(v));
  size_t added = key.size() + footprint(v);
  bytes += added - (replaced ? key.size() + footprint(*replaced) : 0);
  check_container(nest, bytes, added);
}

void DictData::add(std::string key, Value v) {
  account(key, v);
  items.emplace_back(std::move(key), std::move(v));
}

const Value* DictData::get(std::string_view key) const {
  for (auto& [k, v] : items)
    if (k == key) return &v;
  return nullptr;
}

void DictData::set(const std::string& key, Value v) {
  for (auto& [k, old] : items)
    if (k == key) {
      account(key, v, &old);
      old = std::move(v);
      return;
    }
  account(key, v);
  items.emplace_back(key, std::move(v));
}

// Strings count their bytes, containers 16 bytes an item plus the strings they hold directly (nested lists and
// dicts are shared, not copied, so they count once, where they were built).
size_t footprint(const Value& v) {
  if (v.kind == Value::Str) return v.s.size();
  if (v.kind == Value::Array) {
    size_t n = 16 * v.list->size();
    for (auto& item : *v.list) n += item.kind == Value::Str ? item.s.size() : 0;
    return n;
  }
  return 16;
}

void check_string(size_t bytes) {
  if (bytes > limits::kJinjaMaxStringBytes)
    runtime_fail("a string of more than {} MiB", limits::kJinjaMaxStringBytes >> 20);
}

bool holds_namespace(const Value& v) {
  std::vector<const Value*> todo{&v};
  std::unordered_set<const void*> seen;  // shared containers are walked once
  while (!todo.empty()) {
    const Value* x = todo.back();
    todo.pop_back();
    if (x->kind != Value::Array && x->kind != Value::Dict) continue;
    const void* id = x->kind == Value::Array ? static_cast<const void*>(x->list.get()) : x->dict.get();
    if (!seen.insert(id).second) continue;
    if (x->kind == Value::Array) {
      for (auto& item : *x->list) todo.push_back(&item);
    } else {
      if (x->dict->is_namespace) return true;
      for (auto& kv : x->dict->items) todo.push_back(&kv.second);
    }
  }
  return false;
}

int nesting(const Value& v) {
  if (v.kind == Value::Array) return v.list_nesting;
  if (v.kind == Value::Dict) return v.dict->nest;
  return 0;
}

Value Value::array(List items) {
  Value v;
  v.kind = Array;
  v.list_nesting = 1;
  size_t bytes = 16 * items.size();
  for (auto& item : items) {
    v.list_nesting = std::max(v.list_nesting, 1 + nesting(item));
    bytes += item.kind == Str ? item.s.size() : 0;
  }
  check_container(v.list_nesting, bytes, bytes);
  v.list = std::make_shared<List>(std::move(items));
  return v;
}

Value Value::new_dict(bool is_namespace) {
  Value v;
  v.kind = Dict;
  v.dict = std::make_shared<DictData>();
  v.dict->is_namespace = is_namespace;
  return v;
}

const char* type_name(const Value& v) {
  switch (v.kind) {
    case Value::Undefined: return "undefined";
    case Value::None: return "none";
    case Value::Bool: return "bool";
    case Value::Int: return "int";
    case Value::Float: return "float";
    case Value::Str: return "string";
    case Value::Array: return "list";
    case Value::Dict: return v.dict->is_namespace ? "namespace" : "dict";
    case Value::Func: return "function";
  }
  return "?";
}

Value from_json(const nlohmann::ordered_json& j, int depth) {
  if (depth > limits::kMaxNesting) runtime_fail("template variables nested more than {} deep", limits::kMaxNesting);
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Value::none();
    case nlohmann::json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: return Value::integer(int64_t(j.get<uint64_t>()));
    case nlohmann::json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::json::value_t::string: return Value::str(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List items;
      for (auto& e : j) items.push_back(from_json(e, depth + 1));
      return Value::array(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Value d = Value::new_dict();
      for (auto it = j.begin(); it != j.end(); ++it) d.dict->add(it.key(), from_json(it.value(), depth + 1));
      return d;
    }
    default: return Value::undefined();
  }
}

bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Undefined:
    case Value::None: return false;
    case Value::Bool: return v.b;
    case Value::Int: return v.i != 0;
    case Value::Float: return v.f != 0;
    case Value::Str: return !v.s.empty();
    case Value::Array: return !v.list->empty();
    case Value::Dict: return !v.dict->items.empty();
    case Value::Func: return true;
  }
  return false;
}

std::string float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buf[40];
  for (int prec = 1; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
    if (std::strtod(buf, nullptr) == x) break;
  }
  std::string e(buf);
  bool neg = e[0] == '-';
  if (neg) e.erase(0, 1);
  size_t epos = e.find('e');
  int exp = std::atoi(e.c_str() + epos + 1);
  std::string digits = e.substr(0, 1) + (epos > 2 ? e.substr(2, epos - 2) : "");
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  std::string out;
  if (exp >= -4 && exp < 16) {
    if (exp < 0) {
      out = "0." + std::string(size_t(-exp - 1), '0') + digits;
    } else if (size_t(exp) + 1 >= digits.size()) {
      out = digits + std::string(size_t(exp) + 1 - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, size_t(exp) + 1) + "." + digits.substr(size_t(exp) + 1);
    }
  } else {
    // Appended in parts: GCC 12 warns falsely (-Wrestrict) about "literal" + std::string here and in to_json.
    out = digits.substr(0, 1);
    if (digits.size() > 1) out.append(".").append(digits, 1);
    out += fmt::format("e{}{:02d}", exp < 0 ? '-' : '+', std::abs(exp));
  }
  return neg ? "-" + out : out;
}

std::string repr(const Value& v) {
  if (v.kind != Value::Str) return to_str(v);
  char q = (v.s.find('\'') != std::string::npos && v.s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : v.s) {
    if (c == q || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  return out + q;
}

std::string to_str(const Value& v) {
  switch (v.kind) {
    case Value::Undefined: return "";
    case Value::None: return "None";
    case Value::Bool: return v.b ? "True" : "False";
    case Value::Int: return std::to_string(v.i);
    case Value::Float: return float_repr(v.f);
    case Value::Str: return v.s;
    case Value::Array: {
      std::string out = "[";
      for (size_t k = 0; k < v.list->size(); ++k) out += (k ? ", " : "") + repr((*v.list)[k]);
      return out + "]";
    }
    case Value::Dict: {
      std::string out = "{";
      for (size_t k = 0; k < v.dict->items.size(); ++k)
        out += (k ? ", " : "") + repr(Value::str(v.dict->items[k].first)) + ": " + repr(v.dict->items[k].second);
      return out + "}";
    }
    case Value::Func: return "<function>";
  }
  return "";
}

std::string json_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) out += fmt::format("\\u{:04x}", c);
        else out += char(c);
    }
  }
  return out + "\"";
}

void to_json(const Value& v, const JsonStyle& st, int level, std::string& out) {
  auto newline = [&](int lvl) {
    if (st.indent < 0) return;
    check_string(out.size() + size_t(st.indent) * size_t(lvl));
    out += '\n';
    out.append(size_t(st.indent) * size_t(lvl), ' ');
  };
  switch (v.kind) {
    case Value::Undefined:
    case Value::None: out += "null"; return;
    case Value::Bool: out += v.b ? "true" : "false"; return;
    case Value::Int: out += std::to_string(v.i); return;
    case Value::Float:
      out += std::isnan(v.f) ? "NaN" : std::isinf(v.f) ? (v.f > 0 ? "Infinity" : "-Infinity") : float_repr(v.f);
      return;
    case Value::Str: out += json_quote(v.s); return;
    case Value::Array: {
      if (v.list->empty()) { out += "[]"; return; }
      out += "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += st.item_sep;
        newline(level + 1);
        to_json((*v.list)[k], st, level + 1, out);
      }
      newline(level);
      out += "]";
      return;
    }
    case Value::Dict: {
      if (v.dict->items.empty()) { out += "{}"; return; }
      std::vector<const std::pair<std::string, Value>*> items;
      for (auto& kv : v.dict->items) items.push_back(&kv);
      if (st.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += "{";
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += st.item_sep;
        newline(level + 1);
        out += json_quote(items[k]->first) + st.key_sep;
        to_json(items[k]->second, st, level + 1, out);
      }
      newline(level);
      out += "}";
      return;
    }
    case Value::Func: runtime_fail("Object of type function is not JSON serializable");
  }
}

bool equal(const Value& a, const Value& b) {
  if (a.is_num() && b.is_num()) {
    if (a.kind == Value::Float || b.kind == Value::Float) return a.as_double() == b.as_double();
    return a.as_int() == b.as_int();
  }
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case Value::Undefined:
    case Value::None: return true;
    case Value::Str: return a.s == b.s;
    case Value::Array:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k)
        if (!equal((*a.list)[k], (*b.list)[k])) return false;
      return true;
    case Value::Dict:
      if (a.dict->items.size() != b.dict->items.size()) return false;
      for (auto& [k, v] : a.dict->items) {
        const Value* o = b.dict->get(k);
        if (!o || !equal(v, *o)) return false;
      }
      return true;
    default: return a.fn == b.fn;
  }
}

int compare(const Value& a, const Value& b) {
  if (a.is_num() && b.is_num()) {
    double x = a.as_double(), y = b.as_double();
    return x < y ? -1 : x > y ? 1 : 0;
  }
  if (a.kind == Value::Str && b.kind == Value::Str) return a.s < b.s ? -1 : a.s > b.s ? 1 : 0;
  if (a.kind == Value::Array && b.kind == Value::Array) {
    for (size_t k = 0; k < a.list->size() && k < b.list->size(); ++k)
      if (int c = compare((*a.list)[k], (*b.list)[k])) return c;
    return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size() ? 1 : 0;
  }
  runtime_fail("cannot compare {} with {}", type_name(a), type_name(b));
}

List iterate(const Value& v) {
  switch (v.kind) {
    case Value::Undefined: return {};
    case Value::Array: return *v.list;
    case Value::Dict: {
      List keys;
      for (auto& kv : v.dict->items) keys.push_back(Value::str(kv.first));
      return keys;
    }
    case Value::Str: {
      List chars;
      for (auto& c : utf8_chars(v.s)) chars.push_back(Value::str(c));
      return chars;
    }
    default: runtime_fail("'{}' object is not iterable", type_name(v));
  }
}

// Missing -> undefined, named after what was missing.
Value get_attr(const Value& obj, const std::string& name) {
  if (obj.kind == Value::Undefined)
    runtime_fail("'{}' is undefined (reading attribute '{}')", obj.s.empty() ? "value" : obj.s, name);
  if (obj.kind == Value::Dict) {
    if (const Value* v = obj.dict->get(name)) return *v;
  }
  return Value::undefined(name);
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.kind == Value::Undefined)
    runtime_fail("'{}' is undefined (reading item {})", obj.s.empty() ? "value" : obj.s, repr(key));
  if (obj.kind == Value::Dict) {
    std::string k = key.kind == Value::Str ? key.s : to_str(key);
    const Value* v = obj.dict->get(k);
    return v ? *v : Value::undefined(k);
  }
  if ((obj.kind == Value::Array || obj.kind == Value::Str) && (key.kind == Value::Int || key.kind == Value::Bool)) {
    std::vector<std::string> chars;
    if (obj.kind == Value::Str) chars = utf8_chars(obj.s);
    int64_t n = int64_t(obj.kind == Value::Array ? obj.list->size() : chars.size());
    int64_t k = key.as_int() < 0 ? key.as_int() + n : key.as_int();
    if (k < 0 || k >= n) return Value::undefined(fmt::format("index {}", key.as_int()));
    return obj.kind == Value::Array ? (*obj.list)[size_t(k)] : Value::str(chars[size_t(k)]);
  }
  if (key.kind == Value::Str) return get_attr(obj, key.s);
  return Value::undefined();
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind) {
    case Value::Str:
      if (item.kind != Value::Str) runtime_fail("'in <string>' requires a string, not {}", type_name(item));
      return container.s.find(item.s) != std::string::npos;
    case Value::Array:
      for (auto& v : *container.list)
        if (equal(v, item)) return true;
      return false;
    case Value::Dict: return item.kind == Value::Str && container.dict->get(item.s);
    case Value::Undefined: return false;
    default: runtime_fail("argument of type {} is not iterable", type_name(container));
  }
}

Value pairs(const Value& dict) {
  List out;
  for (auto& [k, v] : dict.dict->items) out.push_back(Value::array({Value::str(k), v}));
  return Value::array(std::move(out));
}

Value arithmetic(const std::string& op, const Value& l, const Value& r) {
  if (op == "+") {
    if (l.kind == Value::Str && r.kind == Value::Str) {
      check_string(l.s.size() + r.s.size());
      return Value::str(l.s + r.s);
    }
    if (l.kind == Value::Array && r.kind == Value::Array) {
      List out = *l.list;
      out.insert(out.end(), r.list->begin(), r.list->end());
      return Value::array(std::move(out));
    }
  }
  if (op == "*" && (l.kind == Value::Str || l.kind == Value::Array) && r.kind == Value::Int) {
    // The size first: 'ab' * 10**10 must fail at once, '' * 10**15 must not loop.
    size_t unit = footprint(l), total;
    if (r.i > 0 && unit > 0 && __builtin_mul_overflow(unit, size_t(r.i), &total)) total = SIZE_MAX;
    if (r.i > 0 && unit > 0 && l.kind == Value::Str) check_string(total);
    if (r.i > 0 && unit > 0 && l.kind == Value::Array) check_container(nesting(l), total, 0);
    if (r.i <= 0 || unit == 0) return l.kind == Value::Str ? Value::str("") : Value::array();
    if (l.kind == Value::Str) {
      std::string out;
      for (int64_t k = 0; k < r.i; ++k) out += l.s;
      return Value::str(std::move(out));
    }
    List out;
    for (int64_t k = 0; k < r.i; ++k) out.insert(out.end(), l.list->begin(), l.list->end());
    return Value::array(std::move(out));
  }
  std::string type_error = fmt::format("unsupported operand types for {}: {} and {}", op, type_name(l), type_name(r));
  if (!l.is_num() || !r.is_num()) runtime_fail("{}", type_error);
  bool ints = l.kind != Value::Float && r.kind != Value::Float;
  double x = l.as_double(), y = r.as_double();
  int64_t a = l.as_int(), b = r.as_int();
  int64_t c;
  auto exact = [&](bool overflowed) {
    if (overflowed) runtime_fail("integer overflow in {} {} {}", a, op, b);
    return Value::integer(c);
  };
  if (op == "+") return ints ? exact(__builtin_add_overflow(a, b, &c)) : Value::number(x + y);
  if (op == "-") return ints ? exact(__builtin_sub_overflow(a, b, &c)) : Value::number(x - y);
  if (op == "*") return ints ? exact(__builtin_mul_overflow(a, b, &c)) : Value::number(x * y);
  if (ints && (op == "//" || op == "%") && a == INT64_MIN && b == -1) exact(true);
  if ((op == "/" || op == "//" || op == "%") && y == 0) runtime_fail("division by zero");
  if (op == "/") return Value::number(x / y);
  if (op == "//") {
    if (ints) return Value::integer(a / b - ((a % b != 0) && ((a < 0) != (b < 0))));
    return Value::number(std::floor(x / y));
  }
  if (op == "%") {
    if (ints) {
      int64_t m = a % b;
      return Value::integer(m != 0 && ((m < 0) != (b < 0)) ? m + b : m);
    }
    double m = std::fmod(x, y);
    return Value::number(m != 0 && ((m < 0) != (y < 0)) ? m + y : m);
  }
  if (op == "**") {
    if (ints && b >= 0) {
      int64_t p = 1;  // by squaring: a huge exponent must not loop for ages (overflow wraps)
      for (uint64_t base = uint64_t(a), e = uint64_t(b); e; e >>= 1, base *= base)
        if (e & 1) p = int64_t(uint64_t(p) * base);
      return Value::integer(p);
    }
    return Value::number(std::pow(x, y));
  }
  runtime_fail("{}", type_error);
}

}  // namespace bq::jinja
