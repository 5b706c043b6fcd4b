// The global functions chat templates call: transformers' raise_exception and strftime_now, and Jinja's range,
// namespace and dict (see builtins.h).
#include "core/limits.h"
#include "tokenizer/jinja/builtins.h"

namespace bq::jinja {

namespace {

Value raise_exception(CallArgs& a) {
  const Value* m = a.get(0, "message");
  runtime_fail("{}", m ? to_str(*m) : "raise_exception called");
}

Value range(CallArgs& a) {
  int64_t start = 0, stop = 0, step = 1;
  auto num = [](const Value& v) {
    if (v.kind != Value::Int && v.kind != Value::Bool) runtime_fail("range expects integers");
    return v.as_int();
  };
  if (a.pos.size() == 1) stop = num(a.pos[0]);
  else if (a.pos.size() >= 2) start = num(a.pos[0]), stop = num(a.pos[1]);
  if (a.pos.size() >= 3) step = num(a.pos[2]);
  if (a.pos.empty() || step == 0) runtime_fail("range: bad arguments");
  // 128-bit: stop - start and the last step overflow 64 bits for extreme arguments.
  __int128 span = __int128(stop) - start, count = 0;
  if (step > 0 && span > 0) count = (span + step - 1) / step;
  if (step < 0 && span < 0) count = (-span + -__int128(step) - 1) / -__int128(step);
  if (count > limits::kJinjaMaxRange) runtime_fail("range too big (more than {} items)", limits::kJinjaMaxRange);
  List out;
  for (__int128 k = 0; k < count; ++k) out.push_back(Value::integer(int64_t(start + k * step)));
  return Value::array(std::move(out));
}

// namespace(...) and dict(...): mappings and keyword arguments merged, later ones winning.
Value merged_dict(CallArgs& a, bool is_namespace) {
  Value d = Value::new_dict(is_namespace);
  for (auto& p : a.pos) {
    if (p.kind != Value::Dict) runtime_fail("expected a mapping argument");
    for (auto& [k, v] : p.dict->items) d.dict->set(k, v);
  }
  for (auto& [k, v] : a.kw) d.dict->set(k, v);
  return d;
}

}  // namespace

void install_globals(std::unordered_map<std::string, Value>& globals, const std::tm& now) {
  globals["raise_exception"] = Value::func(raise_exception);
  globals["strftime_now"] = Value::func([now](CallArgs& a) -> Value {
    const Value* f = a.get(0, "format");
    if (!f || f->kind != Value::Str) runtime_fail("strftime_now expects a format string");
    char buf[256];
    size_t n = std::strftime(buf, sizeof buf, f->s.c_str(), &now);
    return Value::str(std::string(buf, n));
  });
  globals["range"] = Value::func(range);
  globals["namespace"] = Value::func([](CallArgs& a) { return merged_dict(a, true); });
  globals["dict"] = Value::func([](CallArgs& a) { return merged_dict(a, false); });
}

}  // namespace bq::jinja
