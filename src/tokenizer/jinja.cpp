// Jinja for chat templates: see jinja.h. Values, lexer and parser are in jinja/; here the evaluator.
#include "tokenizer/jinja.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/error.h"
#include "core/files.h"
#include "core/limits.h"
#include "tokenizer/jinja/parser.h"
#include "tokenizer/jinja/strings.h"
#include "tokenizer/jinja/value.h"

namespace bq {
namespace jinja {

// ---------------------------------------------------------------------------------------------------------
// Evaluator.

struct BreakSignal {};
struct ContinueSignal {};

using Frame = std::unordered_map<std::string, Value>;

class Renderer {
 public:
  Renderer(const std::string& origin, std::tm now) : origin_(origin), now_(now) {
    container_bytes_built = 0;
    frames_.push_back(std::make_shared<Frame>());
    install_globals(*frames_.back());
  }

  void set_context(const std::string& name, Value v) { (*frames_[0])[name] = std::move(v); }

  std::string render(const Node& root) {
    std::string out;
    out_ = &out;
    try {
      exec_body(root.body);
    } catch (const RuntimeError& e) {
      fail("{}:{}:{}: {}", origin_, where_.line, where_.col, e.message);
    } catch (const BreakSignal&) {
      fail("{}:{}:{}: 'break' outside a loop", origin_, where_.line, where_.col);
    } catch (const ContinueSignal&) {
      fail("{}:{}:{}: 'continue' outside a loop", origin_, where_.line, where_.col);
    }
    return out;
  }

 private:
  void install_globals(Frame& g) {
    g["raise_exception"] = Value::func([](CallArgs& a) -> Value {
      const Value* m = a.get(0, "message");
      runtime_fail("{}", m ? to_str(*m) : "raise_exception called");
    });
    g["strftime_now"] = Value::func([this](CallArgs& a) -> Value {
      const Value* f = a.get(0, "format");
      if (!f || f->kind != Value::Str) runtime_fail("strftime_now expects a format string");
      char buf[256];
      size_t n = std::strftime(buf, sizeof buf, f->s.c_str(), &now_);
      return Value::str(std::string(buf, n));
    });
    g["range"] = Value::func([](CallArgs& a) -> Value {
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
    });
    auto make_dict = [](bool is_namespace) {
      return [is_namespace](CallArgs& a) -> Value {
        Value d = Value::new_dict(is_namespace);
        for (auto& p : a.pos) {
          if (p.kind != Value::Dict) runtime_fail("expected a mapping argument");
          for (auto& [k, v] : p.dict->items) d.dict->set(k, v);
        }
        for (auto& [k, v] : a.kw) d.dict->set(k, v);
        return d;
      };
    };
    g["namespace"] = Value::func(make_dict(true));
    g["dict"] = Value::func(make_dict(false));
  }

  [[noreturn]] void fail_at(const Node& n, const std::string& msg) {
    where_ = n.loc;
    throw RuntimeError{msg};
  }

  // Runs a value operation whose errors belong to `at` rather than to the node evaluated last.
  template <typename Fn>
  auto at_node(const Node& at, Fn&& fn) -> decltype(fn()) {
    try {
      return fn();
    } catch (const RuntimeError&) {
      where_ = at.loc;
      throw;
    }
  }

  const Value* lookup(const std::string& name) const {
    for (size_t k = frames_.size(); k-- > 0;) {
      auto it = frames_[k]->find(name);
      if (it != frames_[k]->end()) return &it->second;
    }
    return nullptr;
  }

  // Counts one level of evaluation for as long as it lives: eval and exec recurse per level of the template and
  // per macro call.
  struct Deeper {
    explicit Deeper(Renderer& r) : r_(r) {
      if (++r_.depth_ > limits::kJinjaMaxRenderDepth)
        runtime_fail("nested more than {} deep while rendering (a macro calling itself without end?)",
                     limits::kJinjaMaxRenderDepth);
    }
    ~Deeper() { --r_.depth_; }
    Renderer& r_;
  };

  void emit(const std::string& text) {
    check_string(out_->size() + text.size());
    *out_ += text;
  }

  // ---- statements

  void exec_body(const Body& body) {
    for (auto& n : body) exec(*n);
  }

  void exec(const Node& n) {
    where_ = n.loc;
    Deeper guard(*this);
    switch (n.kind) {
      case Node::Text: emit(n.name); return;
      case Node::Output: emit(to_str(eval(*n.kids[0]))); return;
      case Node::If: exec_body(truthy(eval(*n.kids[0])) ? n.body : n.else_body); return;
      case Node::For: exec_for(n); return;
      case Node::Set: {
        if (n.kids[1]) {
          assign(*n.kids[0], eval(*n.kids[1]));
        } else {
          assign(*n.kids[0], Value::str(capture(n.body)));
        }
        return;
      }
      case Node::Macro: define_macro(n); return;
      case Node::Block: exec_body(n.body); return;
      case Node::Break: throw BreakSignal{};
      case Node::Continue: throw ContinueSignal{};
      default: fail_at(n, "expression used as a statement");
    }
  }

  std::string capture(const Body& body) {
    std::string buf, *saved = out_;
    out_ = &buf;
    try {
      exec_body(body);
    } catch (...) {
      out_ = saved;
      throw;
    }
    out_ = saved;
    return buf;
  }

  void assign(const Node& target, Value v) {
    if (target.kind == Node::Name) {
      (*frames_.back())[target.name] = std::move(v);
    } else if (target.kind == Node::Attr) {
      Value obj = eval(*target.kids[0]);
      if (obj.kind != Value::Dict || !obj.dict->is_namespace)
        fail_at(target, fmt::format("cannot assign attribute '{}' on a {}", target.name, type_name(obj)));
      if (holds_namespace(v))
        fail_at(target, fmt::format("namespace attribute '{}' cannot hold a namespace", target.name));
      obj.dict->set(target.name, std::move(v));
    } else {
      List items = iterate(v, target);
      if (items.size() != target.kids.size())
        fail_at(target, fmt::format("cannot unpack {} values into {} names", items.size(), target.kids.size()));
      for (size_t k = 0; k < items.size(); ++k) assign(*target.kids[k], items[k]);
    }
  }

  List iterate(const Value& v, const Node& at) {
    return at_node(at, [&] { return jinja::iterate(v); });
  }

  void exec_for(const Node& n) {
    List all = iterate(eval(*n.kids[1]), n);
    frames_.push_back(std::make_shared<Frame>());
    List items;
    if (n.kids[2]) {
      for (auto& item : all) {
        count_iteration();
        assign(*n.kids[0], item);
        if (truthy(eval(*n.kids[2]))) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    try {
      for (size_t k = 0; k < items.size(); ++k) {
        count_iteration();
        Value loop = Value::new_dict();
        auto& d = *loop.dict;
        int64_t len = int64_t(items.size()), idx = int64_t(k);
        d.set("index", Value::integer(idx + 1));
        d.set("index0", Value::integer(idx));
        d.set("revindex", Value::integer(len - idx));
        d.set("revindex0", Value::integer(len - idx - 1));
        d.set("first", Value::boolean(k == 0));
        d.set("last", Value::boolean(k + 1 == items.size()));
        d.set("length", Value::integer(len));
        d.set("previtem", k > 0 ? items[k - 1] : Value::undefined("loop.previtem"));
        d.set("nextitem", k + 1 < items.size() ? items[k + 1] : Value::undefined("loop.nextitem"));
        d.set("cycle", Value::func([idx](CallArgs& a) -> Value {
          if (a.pos.empty()) runtime_fail("loop.cycle needs arguments");
          return a.pos[size_t(idx) % a.pos.size()];
        }));
        (*frames_.back())["loop"] = loop;
        assign(*n.kids[0], items[k]);
        try {
          exec_body(n.body);
        } catch (const ContinueSignal&) {
        }
      }
    } catch (const BreakSignal&) {
    } catch (...) {
      frames_.pop_back();
      throw;
    }
    if (items.empty()) exec_body(n.else_body);
    frames_.pop_back();
  }

  void count_iteration() {
    if (++iterations_ > limits::kJinjaMaxLoopIterations)
      runtime_fail("more than {} loop iterations", limits::kJinjaMaxLoopIterations);
  }

  // A macro sees the template's globals and its own arguments, not the caller's locals.
  void define_macro(const Node& n) {
    const Node* node = &n;
    (*frames_.back())[n.name] = Value::func([this, node](CallArgs& a) -> Value {
      auto frame = std::make_shared<Frame>();
      if (a.pos.size() > node->names.size()) runtime_fail("macro '{}' takes {} arguments", node->name, node->names.size());
      auto saved = frames_;
      frames_ = {saved[0], frame};
      try {
        for (size_t k = 0; k < node->names.size(); ++k) {
          const Value* v = a.get(k, node->names[k]);
          (*frame)[node->names[k]] = v ? *v : node->kids[k] ? eval(*node->kids[k]) : Value::undefined(node->names[k]);
        }
        Value out = Value::str(capture(node->body));
        frames_ = saved;
        return out;
      } catch (...) {
        frames_ = saved;
        throw;
      }
    });
  }

  // ---- expressions

  Value eval(const Node& n) {
    Deeper guard(*this);
    switch (n.kind) {
      case Node::Literal: return n.value;
      case Node::Name: {
        const Value* v = lookup(n.name);
        return v ? *v : Value::undefined(n.name);
      }
      case Node::ListLit:
      case Node::Tuple: {
        List items;
        for (auto& k : n.kids) items.push_back(eval(*k));
        return Value::array(std::move(items));
      }
      case Node::DictLit: {
        Value d = Value::new_dict();
        for (size_t k = 0; k + 1 < n.kids.size(); k += 2) {
          Value key = eval(*n.kids[k]);
          d.dict->set(key.kind == Value::Str ? key.s : to_str(key), eval(*n.kids[k + 1]));
        }
        return d;
      }
      case Node::Attr: return get_attr(eval(*n.kids[0]), n.name, n);
      case Node::Index: return get_item(eval(*n.kids[0]), eval(*n.kids[1]), n);
      case Node::Slice: return slice(n);
      case Node::Call: return call(n);
      case Node::Filter: {
        Value v = eval(*n.kids[0]);
        CallArgs a = eval_args(n);
        where_ = n.loc;
        return apply_filter(n.name, v, a, n);
      }
      case Node::Test: {
        Value v = eval(*n.kids[0]);
        CallArgs a = eval_args(n);
        where_ = n.loc;
        return Value::boolean(apply_test(n.name, v, a, n) != n.negated);
      }
      case Node::Unary: {
        Value v = eval(*n.kids[0]);
        if (n.name == "not") return Value::boolean(!truthy(v));
        if (!v.is_num()) fail_at(n, fmt::format("bad operand type for unary {}: {}", n.name, type_name(v)));
        if (n.name == "+") return v;
        if (v.kind == Value::Float) return Value::number(-v.f);
        if (v.as_int() == INT64_MIN) fail_at(n, "integer overflow in unary -");
        return Value::integer(-v.as_int());
      }
      case Node::Binary: return binary(n);
      case Node::Cond:
        if (truthy(eval(*n.kids[1]))) return eval(*n.kids[0]);
        return n.kids[2] ? eval(*n.kids[2]) : Value::undefined();
      default: fail_at(n, "statement used as an expression");
    }
  }

  CallArgs eval_args(const Node& n) {
    CallArgs a;
    for (size_t k = 1; k < n.kids.size(); ++k) {
      Value v = eval(*n.kids[k]);
      if (n.names[k - 1].empty()) a.pos.push_back(std::move(v));
      else a.kw.emplace_back(n.names[k - 1], std::move(v));
    }
    return a;
  }

  Value get_attr(const Value& obj, const std::string& name, const Node& at) {
    return at_node(at, [&] { return jinja::get_attr(obj, name); });
  }

  Value get_item(const Value& obj, const Value& key, const Node& at) {
    return at_node(at, [&] { return jinja::get_item(obj, key); });
  }

  Value slice(const Node& n) {
    Value obj = eval(*n.kids[0]);
    Value parts[3];
    for (int k = 0; k < 3; ++k)
      if (n.kids[size_t(k) + 1]) parts[k] = eval(*n.kids[size_t(k) + 1]);
    if (obj.kind == Value::Array) {
      List out;
      for (size_t k : slice_indices(int64_t(obj.list->size()), parts[0], parts[1], parts[2])) out.push_back((*obj.list)[k]);
      return Value::array(std::move(out));
    }
    if (obj.kind == Value::Str) {
      auto chars = utf8_chars(obj.s);
      std::string out;
      for (size_t k : slice_indices(int64_t(chars.size()), parts[0], parts[1], parts[2])) out += chars[k];
      return Value::str(out);
    }
    fail_at(n, fmt::format("cannot slice a {}", type_name(obj)));
  }

  Value call(const Node& n) {
    const Node& callee = *n.kids[0];
    if (callee.kind == Node::Attr) {
      Value obj = eval(*callee.kids[0]);
      CallArgs a = eval_args(n);
      where_ = n.loc;
      if (obj.kind == Value::Dict) {
        const Value* f = obj.dict->get(callee.name);
        if (f && f->kind == Value::Func) return (*f->fn)(a);
      }
      return call_method(obj, callee.name, a, n);
    }
    Value f = eval(callee);
    CallArgs a = eval_args(n);
    where_ = n.loc;
    if (f.kind != Value::Func)
      fail_at(n, fmt::format("'{}' is not callable ({})", callee.kind == Node::Name ? callee.name : "value", type_name(f)));
    return (*f.fn)(a);
  }

  Value call_method(const Value& obj, const std::string& name, const CallArgs& a, const Node& at) {
    auto str_arg = [&](size_t k, std::string_view nm) -> std::string {
      const Value* v = a.get(k, nm);
      if (!v || v->kind != Value::Str) fail_at(at, fmt::format("{}() expects a string argument", name));
      return v->s;
    };
    if (obj.kind == Value::Str) {
      const std::string& s = obj.s;
      if (name == "strip") return Value::str(strip(s, a.get(0, "chars"), true, true));
      if (name == "lstrip") return Value::str(strip(s, a.get(0, "chars"), true, false));
      if (name == "rstrip") return Value::str(strip(s, a.get(0, "chars"), false, true));
      if (name == "lower") return Value::str(lower(s));
      if (name == "upper") return Value::str(upper(s));
      if (name == "title") return Value::str(title(s));
      if (name == "capitalize") return Value::str(capitalize(s));
      if (name == "split") {
        const Value* maxsplit = a.get(1, "maxsplit");
        return Value::array(split(s, a.get(0, "sep"), maxsplit ? maxsplit->as_int() : -1));
      }
      if (name == "startswith" || name == "endswith") {
        const Value* p = a.get(0, "prefix");
        List options = p && p->kind == Value::Array ? *p->list : List{p ? *p : Value::undefined()};
        for (auto& o : options) {
          if (o.kind != Value::Str) fail_at(at, fmt::format("{}() expects strings", name));
          bool hit = o.s.size() <= s.size() &&
                     (name == "startswith" ? s.compare(0, o.s.size(), o.s) == 0
                                           : s.compare(s.size() - o.s.size(), o.s.size(), o.s) == 0);
          if (hit) return Value::boolean(true);
        }
        return Value::boolean(false);
      }
      if (name == "replace") {
        const Value* count = a.get(2, "count");
        return Value::str(replace_all(s, str_arg(0, "old"), str_arg(1, "new"), count ? count->as_int() : -1));
      }
      if (name == "find") {
        size_t pos = s.find(str_arg(0, "sub"));
        return Value::integer(pos == std::string::npos ? -1 : int64_t(utf8_chars(s.substr(0, pos)).size()));
      }
      if (name == "count") {
        std::string sub = str_arg(0, "sub");
        int64_t c = 0;
        if (sub.empty()) return Value::integer(int64_t(utf8_chars(s).size()) + 1);
        for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++c;
        return Value::integer(c);
      }
      if (name == "join") {
        const Value* items = a.get(0, "iterable");
        std::string out;
        List list = items ? iterate(*items, at) : List{};
        for (size_t k = 0; k < list.size(); ++k) {
          out += (k ? s : "") + to_str(list[k]);
          check_string(out.size());
        }
        return Value::str(out);
      }
    } else if (obj.kind == Value::Dict) {
      if (name == "get") {
        const Value* v = obj.dict->get(str_arg(0, "key"));
        const Value* dflt = a.get(1, "default");
        return v ? *v : dflt ? *dflt : Value::none();
      }
      if (name == "items") return pairs(obj);
      if (name == "keys" || name == "values") {
        List out;
        for (auto& [k, v] : obj.dict->items) out.push_back(name == "keys" ? Value::str(k) : v);
        return Value::array(std::move(out));
      }
    } else if (obj.kind == Value::Undefined) {
      fail_at(at, fmt::format("'{}' is undefined (calling method '{}')", obj.s.empty() ? "value" : obj.s, name));
    }
    fail_at(at, fmt::format("unknown method '{}' of a {}", name, type_name(obj)));
  }

  Value binary(const Node& n) {
    const std::string& op = n.name;
    Value l = eval(*n.kids[0]);
    if (op == "and") return truthy(l) ? eval(*n.kids[1]) : l;
    if (op == "or") return truthy(l) ? l : eval(*n.kids[1]);
    Value r = eval(*n.kids[1]);
    where_ = n.loc;
    if (op == "==") return Value::boolean(equal(l, r));
    if (op == "!=") return Value::boolean(!equal(l, r));
    if (op == "<") return Value::boolean(compare(l, r) < 0);
    if (op == ">") return Value::boolean(compare(l, r) > 0);
    if (op == "<=") return Value::boolean(compare(l, r) <= 0);
    if (op == ">=") return Value::boolean(compare(l, r) >= 0);
    if (op == "in" || op == "notin") return Value::boolean(contains(r, l, n) == (op == "in"));
    if (op == "~") {
      std::string a = to_str(l), b = to_str(r);
      check_string(a.size() + b.size());
      return Value::str(a + b);
    }
    return arithmetic(op, l, r, n);
  }

  bool contains(const Value& container, const Value& item, const Node& at) {
    return at_node(at, [&] { return jinja::contains(container, item); });
  }

  Value arithmetic(const std::string& op, const Value& l, const Value& r, const Node& at) {
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
    if (!l.is_num() || !r.is_num()) fail_at(at, type_error);
    bool ints = l.kind != Value::Float && r.kind != Value::Float;
    double x = l.as_double(), y = r.as_double();
    int64_t a = l.as_int(), b = r.as_int();
    int64_t c;
    auto exact = [&](bool overflowed) {
      if (overflowed) fail_at(at, fmt::format("integer overflow in {} {} {}", a, op, b));
      return Value::integer(c);
    };
    if (op == "+") return ints ? exact(__builtin_add_overflow(a, b, &c)) : Value::number(x + y);
    if (op == "-") return ints ? exact(__builtin_sub_overflow(a, b, &c)) : Value::number(x - y);
    if (op == "*") return ints ? exact(__builtin_mul_overflow(a, b, &c)) : Value::number(x * y);
    if (ints && (op == "//" || op == "%") && a == INT64_MIN && b == -1) exact(true);
    if ((op == "/" || op == "//" || op == "%") && y == 0) fail_at(at, "division by zero");
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
    fail_at(at, type_error);
  }

  // ---- filters and tests

  Value apply_filter(const std::string& name, const Value& v, const CallArgs& a, const Node& at) {
    auto need_str = [&]() -> const std::string& {
      if (v.kind != Value::Str) fail_at(at, fmt::format("filter '{}' expects a string, got {}", name, type_name(v)));
      return v.s;
    };
    auto flag = [&](size_t k, std::string_view nm) {
      const Value* f = a.get(k, nm);
      return f && truthy(*f);
    };
    if (name == "trim") return Value::str(strip(need_str(), a.get(0, "chars"), true, true));
    if (name == "length" || name == "count") {
      if (v.kind == Value::Str) return Value::integer(int64_t(utf8_chars(v.s).size()));
      if (v.kind == Value::Array) return Value::integer(int64_t(v.list->size()));
      if (v.kind == Value::Dict) return Value::integer(int64_t(v.dict->items.size()));
      if (v.kind == Value::Undefined) return Value::integer(0);
      fail_at(at, fmt::format("object of type {} has no len()", type_name(v)));
    }
    if (name == "tojson") {
      JsonStyle st;
      if (const Value* ind = a.get(0, "indent"); ind && ind->kind != Value::None)  // Python: negative is 0
        st.indent = int(std::clamp<int64_t>(ind->as_int(), 0, int64_t(limits::kJinjaMaxStringBytes)));
      st.item_sep = st.indent >= 0 ? "," : ", ";
      st.key_sep = ": ";
      if (const Value* seps = a.get(1, "separators"); seps && seps->kind == Value::Array && seps->list->size() == 2) {
        st.item_sep = to_str((*seps->list)[0]);
        st.key_sep = to_str((*seps->list)[1]);
      }
      st.sort_keys = flag(2, "sort_keys");
      std::string out;
      to_json(v, st, 0, out);
      return Value::str(out);
    }
    if (name == "lower") return Value::str(lower(to_str(v)));
    if (name == "upper") return Value::str(upper(to_str(v)));
    if (name == "title") return Value::str(title(to_str(v)));
    if (name == "capitalize") return Value::str(capitalize(to_str(v)));
    if (name == "first" || name == "last") {
      List items = iterate(v, at);
      if (items.empty()) return Value::undefined(name);
      return name == "first" ? items.front() : items.back();
    }
    if (name == "join") {
      const Value* sep = a.get(0, "d");
      const Value* attr = a.get(1, "attribute");
      std::string out;
      List items = iterate(v, at);
      for (size_t k = 0; k < items.size(); ++k) {
        out += (k && sep ? to_str(*sep) : "") + to_str(attr ? get_item(items[k], *attr, at) : items[k]);
        check_string(out.size());
      }
      return Value::str(out);
    }
    if (name == "default" || name == "d") {
      const Value* dflt = a.get(0, "default_value");
      bool use_default = v.kind == Value::Undefined || (flag(1, "boolean") && !truthy(v));
      return use_default ? (dflt ? *dflt : Value::str("")) : v;
    }
    if (name == "string") return Value::str(to_str(v));
    if (name == "safe") return v;
    if (name == "escape" || name == "e") {
      std::string out;
      for (char c : to_str(v)) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      check_string(out.size());
      return Value::str(out);
    }
    if (name == "int" || name == "float") {
      const Value* dflt = a.get(0, "default");
      Value fallback = dflt ? *dflt : name == "int" ? Value::integer(0) : Value::number(0);
      double x;
      if (v.is_num()) {
        x = v.as_double();
        if (name == "int" && v.kind != Value::Float) return Value::integer(v.as_int());
      } else if (v.kind == Value::Str) {
        std::string t = strip(v.s, nullptr, true, true);
        char* end = nullptr;
        x = std::strtod(t.c_str(), &end);
        if (t.empty() || *end) return fallback;
      } else {
        return fallback;
      }
      if (name == "float") return Value::number(x);
      if (!(x > -9.2e18 && x < 9.2e18)) return fallback;  // NaN, inf, beyond int64: not representable
      return Value::integer(int64_t(x));
    }
    if (name == "list") return Value::array(iterate(v, at));
    if (name == "items") {
      if (v.kind == Value::Undefined) return Value::array();
      if (v.kind != Value::Dict) fail_at(at, fmt::format("filter 'items' expects a mapping, got {}", type_name(v)));
      return pairs(v);
    }
    if (name == "replace") {
      const Value* count = a.get(2, "count");
      const Value* from = a.get(0, "old");
      const Value* to = a.get(1, "new");
      if (!from || !to) fail_at(at, "filter 'replace' needs two arguments");
      return Value::str(replace_all(to_str(v), to_str(*from), to_str(*to), count ? count->as_int() : -1));
    }
    if (name == "round") {
      if (!v.is_num()) fail_at(at, "filter 'round' expects a number");
      const Value* prec = a.get(0, "precision");
      const Value* method = a.get(1, "method");
      double scale = std::pow(10.0, prec ? double(prec->as_int()) : 0.0), x = v.as_double() * scale;
      std::string m = method ? to_str(*method) : "common";
      x = m == "ceil" ? std::ceil(x) : m == "floor" ? std::floor(x) : std::nearbyint(x);  // Python rounds half to even
      return Value::number(x / scale);
    }
    if (name == "abs") {
      if (!v.is_num()) fail_at(at, "filter 'abs' expects a number");
      if (v.kind == Value::Float) return Value::number(std::fabs(v.f));
      if (v.as_int() == INT64_MIN) fail_at(at, "integer overflow in abs");
      return Value::integer(std::llabs(v.as_int()));
    }
    if (name == "reverse") {
      if (v.kind == Value::Str) {
        auto chars = utf8_chars(v.s);
        std::string out;
        for (size_t k = chars.size(); k-- > 0;) out += chars[k];
        return Value::str(out);
      }
      List items = iterate(v, at);
      std::reverse(items.begin(), items.end());
      return Value::array(std::move(items));
    }
    if (name == "map") {
      List out;
      const Value* attr = a.get(SIZE_MAX, "attribute");
      for (auto& item : iterate(v, at)) {
        if (attr) {
          Value got = get_item(item, *attr, at);
          const Value* dflt = a.get(SIZE_MAX, "default");
          out.push_back(got.kind == Value::Undefined && dflt ? *dflt : got);
        } else {
          if (a.pos.empty()) fail_at(at, "filter 'map' needs a filter name or attribute=");
          CallArgs rest;
          rest.pos.assign(a.pos.begin() + 1, a.pos.end());
          rest.kw = a.kw;
          out.push_back(apply_filter(to_str(a.pos[0]), item, rest, at));
        }
      }
      return Value::array(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      bool by_attr = name.size() > 6, keep_if = name[0] == 's';
      size_t first = by_attr ? 1 : 0;
      if (by_attr && a.pos.empty()) fail_at(at, fmt::format("filter '{}' needs an attribute name", name));
      List out;
      for (auto& item : iterate(v, at)) {
        Value subject = by_attr ? get_item(item, a.pos[0], at) : item;
        bool ok;
        if (a.pos.size() > first) {
          CallArgs rest;
          rest.pos.assign(a.pos.begin() + long(first) + 1, a.pos.end());
          ok = apply_test(to_str(a.pos[first]), subject, rest, at);
        } else {
          ok = truthy(subject);
        }
        if (ok == keep_if) out.push_back(item);
      }
      return Value::array(std::move(out));
    }
    if (name == "unique" || name == "sort" || name == "dictsort") return sort_filter(name, v, a, at);
    if (name == "indent") {
      const Value* w = a.get(0, "width");
      int64_t width = w ? w->as_int() : 4;  // Python: ' ' * negative is ''
      check_string(size_t(std::max<int64_t>(width, 0)));
      std::string pad = w && w->kind == Value::Str ? w->s : std::string(size_t(std::max<int64_t>(width, 0)), ' ');
      bool first = flag(1, "first"), blank = flag(2, "blank");
      std::string s = to_str(v), out;
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
    fail_at(at, fmt::format("unknown filter '{}'", name));
  }

  // unique, sort and dictsort: strings compare case-insensitively unless case_sensitive=true (Jinja's default).
  Value sort_filter(const std::string& name, const Value& v, const CallArgs& a, const Node& at) {
    bool dictsort = name == "dictsort";
    bool case_sensitive = false, reverse = false;
    const Value* attr = nullptr;
    if (name == "sort") {
      const Value* r = a.get(0, "reverse");
      const Value* c = a.get(1, "case_sensitive");
      reverse = r && truthy(*r);
      case_sensitive = c && truthy(*c);
      attr = a.get(2, "attribute");
    } else if (name == "unique") {
      const Value* c = a.get(0, "case_sensitive");
      case_sensitive = c && truthy(*c);
      attr = a.get(1, "attribute");
    } else {
      const Value* c = a.get(0, "case_sensitive");
      const Value* by = a.get(1, "by");
      const Value* r = a.get(2, "reverse");
      case_sensitive = c && truthy(*c);
      reverse = r && truthy(*r);
      if (v.kind != Value::Dict) fail_at(at, "filter 'dictsort' expects a mapping");
      static const Value key_index = Value::integer(0), value_index = Value::integer(1);
      attr = by && to_str(*by) == "value" ? &value_index : &key_index;
    }
    List items = dictsort ? *pairs(v).list : iterate(v, at);
    auto key_of = [&](const Value& item) {
      Value k = attr ? get_item(item, *attr, at) : item;
      if (!case_sensitive && k.kind == Value::Str) k.s = lower(k.s);
      return k;
    };
    if (name == "unique") {
      List out, seen;
      for (auto& item : items) {
        Value k = key_of(item);
        if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, k); })) {
          seen.push_back(k);
          out.push_back(item);
        }
      }
      return Value::array(std::move(out));
    }
    std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
      int c = compare(key_of(x), key_of(y));
      return reverse ? c > 0 : c < 0;
    });
    return Value::array(std::move(items));
  }

  bool apply_test(const std::string& name, const Value& v, const CallArgs& a, const Node& at) {
    const Value* arg = a.get(0, "");
    auto need_arg = [&]() -> const Value& {
      if (!arg) fail_at(at, fmt::format("test '{}' needs an argument", name));
      return *arg;
    };
    if (name == "defined") return v.kind != Value::Undefined;
    if (name == "undefined") return v.kind == Value::Undefined;
    if (name == "none") return v.kind == Value::None;
    if (name == "string") return v.kind == Value::Str;
    if (name == "mapping") return v.kind == Value::Dict;
    if (name == "iterable") return v.kind == Value::Str || v.kind == Value::Array || v.kind == Value::Dict;
    if (name == "sequence") return v.kind == Value::Str || v.kind == Value::Array || v.kind == Value::Dict;
    if (name == "number") return v.is_num();
    if (name == "integer") return v.kind == Value::Int;
    if (name == "float") return v.kind == Value::Float;
    if (name == "boolean") return v.kind == Value::Bool;
    if (name == "true") return v.kind == Value::Bool && v.b;
    if (name == "false") return v.kind == Value::Bool && !v.b;
    if (name == "callable") return v.kind == Value::Func;
    if (name == "lower") return v.kind == Value::Str && lower(v.s) == v.s;
    if (name == "upper") return v.kind == Value::Str && upper(v.s) == v.s;
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (v.kind != Value::Int && v.kind != Value::Bool) fail_at(at, fmt::format("test '{}' expects an integer", name));
      int64_t d = name == "divisibleby" ? need_arg().as_int() : 2;
      if (d == 0) fail_at(at, "divisibleby 0");
      bool divisible = v.as_int() % d == 0;
      return name == "odd" ? !divisible : divisible;
    }
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, need_arg());
    if (name == "ne" || name == "!=") return !equal(v, need_arg());
    if (name == "lt" || name == "lessthan" || name == "<") return compare(v, need_arg()) < 0;
    if (name == "le" || name == "<=") return compare(v, need_arg()) <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, need_arg()) > 0;
    if (name == "ge" || name == ">=") return compare(v, need_arg()) >= 0;
    if (name == "in") return contains(need_arg(), v, at);
    fail_at(at, fmt::format("unknown test '{}'", name));
  }

  std::vector<std::shared_ptr<Frame>> frames_;  // [0]: globals and the context; then loop and macro scopes
  std::string* out_ = nullptr;
  int depth_ = 0;
  int64_t iterations_ = 0;
  const std::string& origin_;
  std::tm now_;
  Location where_{1, 1};  // the node being evaluated, for runtime error locations
};

}  // namespace jinja

JinjaTemplate::JinjaTemplate(std::string_view source, std::string origin_for_errors)
    : origin_(std::move(origin_for_errors)) {
  if (source.size() > limits::kChatTemplateBytes)
    fail("{}: a template of {} is larger than the {} allowed", origin_, size_str(source.size()),
         size_str(limits::kChatTemplateBytes));
  root_ = jinja::parse(jinja::lex(source, origin_), source, origin_);
}

std::string JinjaTemplate::render(const nlohmann::ordered_json& context, const JinjaRenderOptions& opt) const {
  std::tm now{};
  if (opt.now) {
    now = *opt.now;
  } else {
    std::time_t t = std::time(nullptr);
    localtime_r(&t, &now);
  }
  jinja::Renderer r(origin_, now);
  if (!context.is_object()) fail("{}: the render context must be a JSON object", origin_);
  try {
    for (auto it = context.begin(); it != context.end(); ++it) r.set_context(it.key(), jinja::from_json(it.value()));
  } catch (const jinja::RuntimeError& e) {  // a context too deep or too large
    fail("{}: {}", origin_, e.message);
  }
  return r.render(*root_);
}

}  // namespace bq
