// The Jinja evaluator: see render.h. Filters, tests, methods and globals are in builtins.h.
#include "tokenizer/jinja/render.h"

#include <memory>
#include <unordered_map>

#include "core/error.h"
#include "core/limits.h"
#include "tokenizer/jinja/builtins.h"
#include "tokenizer/jinja/strings.h"

namespace bq::jinja {

namespace {

struct BreakSignal {};
struct ContinueSignal {};

using Frame = std::unordered_map<std::string, Value>;

class Renderer {
 public:
  Renderer(const std::string& origin, const std::tm& now) : origin_(origin) {
    container_bytes_built = 0;
    frames_.push_back(std::make_shared<Frame>());
    install_globals(*frames_.back(), now);
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

  List iterate(const Value& v, const Node& at) {
    return at_node(at, [&] { return jinja::iterate(v); });
  }
  Value get_attr(const Value& obj, const std::string& name, const Node& at) {
    return at_node(at, [&] { return jinja::get_attr(obj, name); });
  }
  Value get_item(const Value& obj, const Value& key, const Node& at) {
    return at_node(at, [&] { return jinja::get_item(obj, key); });
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
        return apply_filter(n.name, v, a);
      }
      case Node::Test: {
        Value v = eval(*n.kids[0]);
        CallArgs a = eval_args(n);
        where_ = n.loc;
        return Value::boolean(apply_test(n.name, v, a) != n.negated);
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
      return call_method(obj, callee.name, a);
    }
    Value f = eval(callee);
    CallArgs a = eval_args(n);
    where_ = n.loc;
    if (f.kind != Value::Func)
      fail_at(n, fmt::format("'{}' is not callable ({})", callee.kind == Node::Name ? callee.name : "value", type_name(f)));
    return (*f.fn)(a);
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
    if (op == "in" || op == "notin") return Value::boolean(contains(r, l) == (op == "in"));
    if (op == "~") {
      std::string a = to_str(l), b = to_str(r);
      check_string(a.size() + b.size());
      return Value::str(a + b);
    }
    return arithmetic(op, l, r);
  }

  std::vector<std::shared_ptr<Frame>> frames_;  // [0]: globals and the context; then loop and macro scopes
  std::string* out_ = nullptr;
  int depth_ = 0;
  int64_t iterations_ = 0;
  const std::string& origin_;
  Location where_{1, 1};  // the node being evaluated, for runtime error locations
};

}  // namespace

std::string render(const Node& root, const nlohmann::ordered_json& context, const std::string& origin,
                   const std::tm& now) {
  Renderer r(origin, now);
  if (!context.is_object()) fail("{}: the render context must be a JSON object", origin);
  try {
    for (auto it = context.begin(); it != context.end(); ++it) r.set_context(it.key(), from_json(it.value()));
  } catch (const RuntimeError& e) {  // a context too deep or too large
    fail("{}: {}", origin, e.message);
  }
  return r.render(root);
}

}  // namespace bq::jinja
