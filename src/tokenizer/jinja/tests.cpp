// Jinja tests (`x is name`, `x is name(arg)`): one small function each, found through one table (see
// builtins.h).
#include <string_view>

#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/strings.h"

namespace bq::jinja {

namespace {

// One test: the value tested and its argument (tests take one, by position only).
struct TestCall {
  const std::string& name;  // as the template spelled it, for messages
  const Value& v;
  const CallArgs& a;

  const Value& need_arg() const {
    const Value* arg = a.get(0, "");
    if (!arg) runtime_fail("test '{}' needs an argument", name);
    return *arg;
  }
  int64_t need_integer() const {
    if (v.kind != Value::Int && v.kind != Value::Bool) runtime_fail("test '{}' expects an integer", name);
    return v.as_int();
  }
};

using TestFn = bool (*)(const TestCall&);

bool divisible(int64_t x, int64_t d) {
  if (d == 0) runtime_fail("divisibleby 0");
  return d == -1 || x % d == 0;  // INT64_MIN % -1 traps on x86
}

bool divisibleby(const TestCall& t) {
  int64_t x = t.need_integer();  // checked before the argument
  return divisible(x, t.need_arg().as_int());
}

bool is_container(const TestCall& t) {
  return t.v.kind == Value::Str || t.v.kind == Value::Array || t.v.kind == Value::Dict;
}

bool eq(const TestCall& t) { return equal(t.v, t.need_arg()); }
bool ne(const TestCall& t) { return !equal(t.v, t.need_arg()); }
bool lt(const TestCall& t) { return compare(t.v, t.need_arg()) < 0; }
bool le(const TestCall& t) { return compare(t.v, t.need_arg()) <= 0; }
bool gt(const TestCall& t) { return compare(t.v, t.need_arg()) > 0; }
bool ge(const TestCall& t) { return compare(t.v, t.need_arg()) >= 0; }

const std::unordered_map<std::string_view, TestFn>& tests() {
  static const std::unordered_map<std::string_view, TestFn> table = {
      {"defined", [](const TestCall& t) { return t.v.kind != Value::Undefined; }},
      {"undefined", [](const TestCall& t) { return t.v.kind == Value::Undefined; }},
      {"none", [](const TestCall& t) { return t.v.kind == Value::None; }},
      {"string", [](const TestCall& t) { return t.v.kind == Value::Str; }},
      {"mapping", [](const TestCall& t) { return t.v.kind == Value::Dict; }},
      {"iterable", is_container},
      {"sequence", is_container},
      {"number", [](const TestCall& t) { return t.v.is_num(); }},
      {"integer", [](const TestCall& t) { return t.v.kind == Value::Int; }},
      {"float", [](const TestCall& t) { return t.v.kind == Value::Float; }},
      {"boolean", [](const TestCall& t) { return t.v.kind == Value::Bool; }},
      {"true", [](const TestCall& t) { return t.v.kind == Value::Bool && t.v.b; }},
      {"false", [](const TestCall& t) { return t.v.kind == Value::Bool && !t.v.b; }},
      {"callable", [](const TestCall& t) { return t.v.kind == Value::Func; }},
      {"lower", [](const TestCall& t) { return t.v.kind == Value::Str && lower(t.v.s) == t.v.s; }},
      {"upper", [](const TestCall& t) { return t.v.kind == Value::Str && upper(t.v.s) == t.v.s; }},
      {"odd", [](const TestCall& t) { return !divisible(t.need_integer(), 2); }},
      {"even", [](const TestCall& t) { return divisible(t.need_integer(), 2); }},
      {"divisibleby", divisibleby},
      {"eq", eq},
      {"equalto", eq},
      {"==", eq},
      {"ne", ne},
      {"!=", ne},
      {"lt", lt},
      {"lessthan", lt},
      {"<", lt},
      {"le", le},
      {"<=", le},
      {"gt", gt},
      {"greaterthan", gt},
      {">", gt},
      {"ge", ge},
      {">=", ge},
      {"in", [](const TestCall& t) { return contains(t.need_arg(), t.v); }},
  };
  return table;
}

}  // namespace

bool apply_test(const std::string& name, const Value& v, const CallArgs& a) {
  auto it = tests().find(name);
  if (it == tests().end()) runtime_fail("unknown test '{}'", name);
  return it->second(TestCall{name, v, a});
}

}  // namespace bq::jinja
