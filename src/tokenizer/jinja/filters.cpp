// Jinja filters: one small function each, found through one table (see builtins.h).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "core/limits.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/strings.h"

namespace bq::jinja {

namespace {

// One filter call: the value filtered, its arguments, and the argument checks the filters share. An argument is
// read by position, else by keyword (as Jinja binds them); an absent one is nullptr.
struct FilterCall {
  const std::string& name;  // as the template spelled it (an alias too), for messages
  const Value& v;
  const CallArgs& a;

  const Value* arg(size_t index, std::string_view keyword) const { return a.get(index, keyword); }
  bool flag(size_t index, std::string_view keyword) const {
    const Value* f = a.get(index, keyword);
    return f && truthy(*f);
  }
  const std::string& need_str() const {
    if (v.kind != Value::Str) runtime_fail("filter '{}' expects a string, got {}", name, type_name(v));
    return v.s;
  }
  void need_number() const {
    if (!v.is_num()) runtime_fail("filter '{}' expects a number", name);
  }
};

using FilterFn = Value (*)(const FilterCall&);

Value trim(const FilterCall& c) { return Value::str(strip(c.need_str(), c.arg(0, "chars"), true, true)); }

Value length(const FilterCall& c) {
  const Value& v = c.v;
  if (v.kind == Value::Str) return Value::integer(int64_t(utf8_chars(v.s).size()));
  if (v.kind == Value::Array) return Value::integer(int64_t(v.list->size()));
  if (v.kind == Value::Dict) return Value::integer(int64_t(v.dict->items.size()));
  if (v.kind == Value::Undefined) return Value::integer(0);
  runtime_fail("object of type {} has no len()", type_name(v));
}

Value tojson(const FilterCall& c) {
  JsonStyle st;
  if (const Value* ind = c.arg(0, "indent"); ind && ind->kind != Value::None)  // Python: negative is 0
    st.indent = int(std::clamp<int64_t>(ind->as_int(), 0, int64_t(limits::kJinjaMaxStringBytes)));
  st.item_sep = st.indent >= 0 ? "," : ", ";
  st.key_sep = ": ";
  if (const Value* seps = c.arg(1, "separators"); seps && seps->kind == Value::Array && seps->list->size() == 2) {
    st.item_sep = to_str((*seps->list)[0]);
    st.key_sep = to_str((*seps->list)[1]);
  }
  st.sort_keys = c.flag(2, "sort_keys");
  std::string out;
  to_json(c.v, st, 0, out);
  return Value::str(out);
}

Value filter_lower(const FilterCall& c) { return Value::str(lower(to_str(c.v))); }
Value filter_upper(const FilterCall& c) { return Value::str(upper(to_str(c.v))); }
Value filter_title(const FilterCall& c) { return Value::str(title(to_str(c.v))); }
Value filter_capitalize(const FilterCall& c) { return Value::str(capitalize(to_str(c.v))); }

Value first(const FilterCall& c) {
  List items = iterate(c.v);
  return items.empty() ? Value::undefined(c.name) : items.front();
}

Value last(const FilterCall& c) {
  List items = iterate(c.v);
  return items.empty() ? Value::undefined(c.name) : items.back();
}

Value join(const FilterCall& c) {
  const Value* sep = c.arg(0, "d");
  const Value* attr = c.arg(1, "attribute");
  std::string out;
  List items = iterate(c.v);
  for (size_t k = 0; k < items.size(); ++k) {
    out += (k && sep ? to_str(*sep) : "") + to_str(attr ? get_item(items[k], *attr) : items[k]);
    check_string(out.size());
  }
  return Value::str(out);
}

Value default_value(const FilterCall& c) {
  const Value* dflt = c.arg(0, "default_value");
  bool use_default = c.v.kind == Value::Undefined || (c.flag(1, "boolean") && !truthy(c.v));
  return use_default ? (dflt ? *dflt : Value::str("")) : c.v;
}

Value string(const FilterCall& c) { return Value::str(to_str(c.v)); }
Value safe(const FilterCall& c) { return c.v; }

Value escape(const FilterCall& c) {
  std::string out;
  for (char ch : to_str(c.v)) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += ch;
    }
  }
  check_string(out.size());
  return Value::str(out);
}

// int and float: numbers convert, strings parse (surrounding whitespace allowed), anything else is the default.
Value to_number(const FilterCall& c, bool to_int) {
  const Value& v = c.v;
  const Value* dflt = c.arg(0, "default");
  Value fallback = dflt ? *dflt : to_int ? Value::integer(0) : Value::number(0);
  double x;
  if (v.is_num()) {
    x = v.as_double();
    if (to_int && v.kind != Value::Float) return Value::integer(v.as_int());
  } else if (v.kind == Value::Str) {
    std::string t = strip(v.s, nullptr, true, true);
    char* end = nullptr;
    x = std::strtod(t.c_str(), &end);
    if (t.empty() || *end) return fallback;
  } else {
    return fallback;
  }
  if (!to_int) return Value::number(x);
  if (!(x > -9.2e18 && x < 9.2e18)) return fallback;  // NaN, inf, beyond int64: not representable
  return Value::integer(int64_t(x));
}

Value filter_int(const FilterCall& c) { return to_number(c, true); }
Value filter_float(const FilterCall& c) { return to_number(c, false); }
Value list(const FilterCall& c) { return Value::array(iterate(c.v)); }

Value items(const FilterCall& c) {
  if (c.v.kind == Value::Undefined) return Value::array();
  if (c.v.kind != Value::Dict) runtime_fail("filter 'items' expects a mapping, got {}", type_name(c.v));
  return pairs(c.v);
}

Value replace(const FilterCall& c) {
  const Value* count = c.arg(2, "count");
  const Value* from = c.arg(0, "old");
  const Value* to = c.arg(1, "new");
  if (!from || !to) runtime_fail("filter 'replace' needs two arguments");
  return Value::str(replace_all(to_str(c.v), to_str(*from), to_str(*to), count ? count->as_int() : -1));
}

Value round(const FilterCall& c) {
  c.need_number();
  const Value* prec = c.arg(0, "precision");
  const Value* method = c.arg(1, "method");
  double scale = std::pow(10.0, prec ? double(prec->as_int()) : 0.0), x = c.v.as_double() * scale;
  std::string m = method ? to_str(*method) : "common";
  x = m == "ceil" ? std::ceil(x) : m == "floor" ? std::floor(x) : std::nearbyint(x);  // Python rounds half to even
  return Value::number(x / scale);
}

Value abs(const FilterCall& c) {
  c.need_number();
  if (c.v.kind == Value::Float) return Value::number(std::fabs(c.v.f));
  if (c.v.as_int() == INT64_MIN) runtime_fail("integer overflow in abs");
  return Value::integer(std::llabs(c.v.as_int()));
}

Value reverse(const FilterCall& c) {
  if (c.v.kind == Value::Str) {
    auto chars = utf8_chars(c.v.s);
    std::string out;
    for (size_t k = chars.size(); k-- > 0;) out += chars[k];
    return Value::str(out);
  }
  List items = iterate(c.v);
  std::reverse(items.begin(), items.end());
  return Value::array(std::move(items));
}

// map(attribute=name, default=x) takes an attribute of each item; map(filter, args...) applies a filter to each.
Value map(const FilterCall& c) {
  const CallArgs& a = c.a;
  List out;
  const Value* attr = a.get(SIZE_MAX, "attribute");
  for (auto& item : iterate(c.v)) {
    if (attr) {
      Value got = get_item(item, *attr);
      const Value* dflt = a.get(SIZE_MAX, "default");
      out.push_back(got.kind == Value::Undefined && dflt ? *dflt : got);
    } else {
      if (a.pos.empty()) runtime_fail("filter 'map' needs a filter name or attribute=");
      CallArgs rest;
      rest.pos.assign(a.pos.begin() + 1, a.pos.end());
      rest.kw = a.kw;
      out.push_back(apply_filter(to_str(a.pos[0]), item, rest));
    }
  }
  return Value::array(std::move(out));
}

// select and reject test each item, selectattr and rejectattr an attribute of it: with the test named by the
// next argument (its arguments after it), else for truthiness.
Value select_items(const FilterCall& c, bool by_attr, bool keep_if) {
  const CallArgs& a = c.a;
  size_t first = by_attr ? 1 : 0;
  if (by_attr && a.pos.empty()) runtime_fail("filter '{}' needs an attribute name", c.name);
  List out;
  for (auto& item : iterate(c.v)) {
    Value subject = by_attr ? get_item(item, a.pos[0]) : item;
    bool ok;
    if (a.pos.size() > first) {
      CallArgs rest;
      rest.pos.assign(a.pos.begin() + long(first) + 1, a.pos.end());
      ok = apply_test(to_str(a.pos[first]), subject, rest);
    } else {
      ok = truthy(subject);
    }
    if (ok == keep_if) out.push_back(item);
  }
  return Value::array(std::move(out));
}

Value select(const FilterCall& c) { return select_items(c, false, true); }
Value reject(const FilterCall& c) { return select_items(c, false, false); }
Value selectattr(const FilterCall& c) { return select_items(c, true, true); }
Value rejectattr(const FilterCall& c) { return select_items(c, true, false); }

// What unique, sort and dictsort compare: the item, or its `attr`; strings case-insensitively unless
// case_sensitive=true (Jinja's default).
struct SortKey {
  const Value* attr;
  bool case_sensitive;
  Value operator()(const Value& item) const {
    Value k = attr ? get_item(item, *attr) : item;
    if (!case_sensitive && k.kind == Value::Str) k.s = lower(k.s);
    return k;
  }
};

Value sorted(List items, const SortKey& key, bool reverse) {
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    int c = compare(key(x), key(y));
    return reverse ? c > 0 : c < 0;
  });
  return Value::array(std::move(items));
}

Value sort(const FilterCall& c) {
  SortKey key{c.arg(2, "attribute"), c.flag(1, "case_sensitive")};
  return sorted(iterate(c.v), key, c.flag(0, "reverse"));
}

Value dictsort(const FilterCall& c) {
  if (c.v.kind != Value::Dict) runtime_fail("filter 'dictsort' expects a mapping");
  static const Value key_index = Value::integer(0), value_index = Value::integer(1);
  const Value* by = c.arg(1, "by");
  SortKey key{by && to_str(*by) == "value" ? &value_index : &key_index, c.flag(0, "case_sensitive")};
  return sorted(*pairs(c.v).list, key, c.flag(2, "reverse"));
}

Value unique(const FilterCall& c) {
  SortKey key{c.arg(1, "attribute"), c.flag(0, "case_sensitive")};
  List out, seen;
  for (auto& item : iterate(c.v)) {
    Value k = key(item);
    if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, k); })) {
      seen.push_back(k);
      out.push_back(item);
    }
  }
  return Value::array(std::move(out));
}

Value indent(const FilterCall& c) {
  const Value* w = c.arg(0, "width");
  int64_t width = w ? w->as_int() : 4;  // Python: ' ' * negative is ''
  check_string(size_t(std::max<int64_t>(width, 0)));
  std::string pad = w && w->kind == Value::Str ? w->s : std::string(size_t(std::max<int64_t>(width, 0)), ' ');
  bool first = c.flag(1, "first"), blank = c.flag(2, "blank");
  std::string s = to_str(c.v), out;
  size_t line_no = 0;
  for (size_t k = 0; k <= s.size();) {
    size_t e = s.find('\n', k);
    std::string line = s.substr(k, e == std::string::npos ? std::string::npos : e - k);
    bool indent = line_no == 0 ? first : (blank || !line.empty());
    check_string(out.size() + pad.size() + line.size());
    out += (indent ? pad : "") + line;
    if (e == std::string::npos) break;
    out += '\n';
    k = e + 1;
    ++line_no;
  }
  return Value::str(out);
}

const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> table = {
      {"trim", trim},
      {"length", length},
      {"count", length},
      {"tojson", tojson},
      {"lower", filter_lower},
      {"upper", filter_upper},
      {"title", filter_title},
      {"capitalize", filter_capitalize},
      {"first", first},
      {"last", last},
      {"join", join},
      {"default", default_value},
      {"d", default_value},
      {"string", string},
      {"safe", safe},
      {"escape", escape},
      {"e", escape},
      {"int", filter_int},
      {"float", filter_float},
      {"list", list},
      {"items", items},
      {"replace", replace},
      {"round", round},
      {"abs", abs},
      {"reverse", reverse},
      {"map", map},
      {"select", select},
      {"reject", reject},
      {"selectattr", selectattr},
      {"rejectattr", rejectattr},
      {"unique", unique},
      {"sort", sort},
      {"dictsort", dictsort},
      {"indent", indent},
  };
  return table;
}

}  // namespace

Value apply_filter(const std::string& name, const Value& v, const CallArgs& a) {
  auto it = filters().find(name);
  if (it == filters().end()) runtime_fail("unknown filter '{}'", name);
  return it->second(FilterCall{name, v, a});
}

}  // namespace bq::jinja
