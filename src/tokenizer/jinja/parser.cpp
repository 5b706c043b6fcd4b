// The Jinja parser: see parser.h. Jinja's precedence: or < and < not < comparisons < + - < ~ < * / // % < ** <
// unary; filters and tests bind to the unary operand.
#include "tokenizer/jinja/parser.h"

#include <algorithm>

#include "core/error.h"
#include "core/limits.h"

namespace bq::jinja {

namespace {

NodePtr make(Node::Kind kind, Location loc) {
  auto n = std::make_unique<Node>();
  n->kind = kind;
  n->loc = loc;
  return n;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, std::string_view src, const std::string& origin)
      : t_(std::move(tokens)), src_(src), origin_(origin) {
    line_starts_.push_back(0);
    for (size_t k = 0; k < src.size(); ++k)
      if (src[k] == '\n') line_starts_.push_back(k + 1);
  }

  NodePtr parse_template() {
    auto root = make(Node::Block, {1, 1});
    root->body = parse_body({});
    if (peek().kind != Tok::Eof) fail_here("unexpected tag");
    return root;
  }

 private:
  const Token& peek(size_t ahead = 0) const { return t_[std::min(k_ + ahead, t_.size() - 1)]; }
  const Token& next() { return t_[k_ < t_.size() - 1 ? k_++ : k_]; }
  // Binary search over line starts: the parser asks for every node, so a linear scan would be quadratic.
  Location here() const {
    size_t pos = std::min(peek().pos, src_.size());
    size_t line = size_t(std::upper_bound(line_starts_.begin(), line_starts_.end(), pos) - line_starts_.begin());
    return {int(line), int(pos - line_starts_[line - 1]) + 1};
  }

  // Counts one level of statement or bracket nesting for as long as it lives; the parser recurses per level.
  struct Nesting {
    explicit Nesting(Parser& p) : p_(p) {
      if (++p_.nesting_ > limits::kMaxNesting)
        p_.fail_here(fmt::format("nested more than {} deep", limits::kMaxNesting));
    }
    ~Nesting() { --p_.nesting_; }
    Parser& p_;
  };

  [[noreturn]] void fail_here(std::string_view what) const {
    Location loc = here();
    const Token& t = peek();
    std::string near = t.kind == Tok::Eof ? "end of template" : t.text.empty() ? "" : "'" + t.text + "'";
    fail("{}:{}:{}: template syntax error: {}{}", origin_, loc.line, loc.col, what, near.empty() ? "" : " near " + near);
  }

  bool is_op(std::string_view op, size_t ahead = 0) const { return peek(ahead).kind == Tok::Op && peek(ahead).text == op; }
  bool is_name(std::string_view name, size_t ahead = 0) const {
    return peek(ahead).kind == Tok::Name && peek(ahead).text == name;
  }
  void expect_op(std::string_view op) {
    if (!is_op(op)) fail_here(fmt::format("expected '{}'", op));
    next();
  }
  std::string expect_name() {
    if (peek().kind != Tok::Name) fail_here("expected a name");
    return next().text;
  }
  void expect_block_end() {
    if (peek().kind != Tok::BlockEnd) fail_here("expected '%}'");
    next();
  }

  // Statements until a {% tag %} whose name is in `stops` (left unconsumed after the BlockBegin) or the end.
  Body parse_body(const std::vector<std::string_view>& stops) {
    Body body;
    while (true) {
      const Token& t = peek();
      if (t.kind == Tok::Eof) {
        if (!stops.empty()) fail_here(fmt::format("missing {{% {} %}}", stops.back()));
        return body;
      }
      if (t.kind == Tok::Text) {
        auto n = make(Node::Text, here());
        n->name = next().text;
        body.push_back(std::move(n));
      } else if (t.kind == Tok::VarBegin) {
        next();
        auto n = make(Node::Output, here());
        n->kids.push_back(parse_expression());
        if (peek().kind != Tok::VarEnd) fail_here("expected '}}'");
        next();
        body.push_back(std::move(n));
      } else if (t.kind == Tok::BlockBegin) {
        if (peek(1).kind == Tok::Name &&
            std::find(stops.begin(), stops.end(), peek(1).text) != stops.end()) {
          next();
          return body;
        }
        next();
        body.push_back(parse_statement());
      } else {
        fail_here("unexpected token");
      }
    }
  }

  NodePtr parse_statement() {
    Nesting guard(*this);
    Location loc = here();
    std::string tag = expect_name();
    if (tag == "if") return parse_if(loc);
    if (tag == "for") return parse_for(loc);
    if (tag == "set") return parse_set(loc);
    if (tag == "macro") return parse_macro(loc);
    if (tag == "generation") {
      auto n = make(Node::Block, loc);
      expect_block_end();
      n->body = parse_body({"endgeneration"});
      next();
      expect_block_end();
      return n;
    }
    if (tag == "break" || tag == "continue") {
      expect_block_end();
      return make(tag == "break" ? Node::Break : Node::Continue, loc);
    }
    k_--;
    fail_here("unknown tag");
  }

  NodePtr parse_if(Location loc) {
    auto n = make(Node::If, loc);
    n->kids.push_back(parse_expression());
    expect_block_end();
    n->body = parse_body({"elif", "else", "endif"});
    std::string tag = next().text;
    if (tag == "elif") {
      n->else_body.push_back(parse_if(here()));
      return n;  // the nested If consumed the endif
    }
    if (tag == "else") {
      expect_block_end();
      n->else_body = parse_body({"endif"});
      next();
    }
    expect_block_end();
    return n;
  }

  NodePtr parse_for(Location loc) {
    auto n = make(Node::For, loc);
    n->kids.push_back(parse_target(false));
    if (!is_name("in")) fail_here("expected 'in'");
    next();
    n->kids.push_back(parse_or());
    n->kids.push_back(nullptr);
    if (is_name("if")) {
      next();
      n->kids[2] = parse_expression();
    }
    if (is_name("recursive")) fail_here("recursive loops are not supported");
    expect_block_end();
    n->body = parse_body({"else", "endfor"});
    if (next().text == "else") {
      expect_block_end();
      n->else_body = parse_body({"endfor"});
      next();
    }
    expect_block_end();
    return n;
  }

  // A name, `ns.attr` (set only) or `a, b` tuple of names.
  NodePtr parse_target(bool allow_attr) {
    Location loc = here();
    bool paren = is_op("(");
    if (paren) next();
    std::vector<NodePtr> items;
    while (true) {
      auto n = make(Node::Name, here());
      n->name = expect_name();
      if (allow_attr && is_op(".")) {
        next();
        auto a = make(Node::Attr, n->loc);
        a->name = expect_name();
        a->kids.push_back(std::move(n));
        n = std::move(a);
      }
      items.push_back(std::move(n));
      if (!is_op(",")) break;
      next();
    }
    if (paren) expect_op(")");
    if (items.size() == 1 && !paren) return std::move(items[0]);
    auto t = make(Node::Tuple, loc);
    t->kids = std::move(items);
    return t;
  }

  NodePtr parse_set(Location loc) {
    auto n = make(Node::Set, loc);
    n->kids.push_back(parse_target(true));
    if (is_op("=")) {
      next();
      n->kids.push_back(parse_tuple_or_expression());
      expect_block_end();
      return n;
    }
    expect_block_end();
    n->kids.push_back(nullptr);
    n->body = parse_body({"endset"});
    next();
    expect_block_end();
    return n;
  }

  NodePtr parse_macro(Location loc) {
    auto n = make(Node::Macro, loc);
    n->name = expect_name();
    expect_op("(");
    while (!is_op(")")) {
      n->names.push_back(expect_name());
      if (is_op("=")) {
        next();
        n->kids.push_back(parse_expression());
      } else {
        n->kids.push_back(nullptr);
      }
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
    expect_block_end();
    n->body = parse_body({"endmacro"});
    next();
    if (peek().kind == Tok::Name) next();  // {% endmacro name %}
    expect_block_end();
    return n;
  }

  // `a, b` without parentheses is a tuple (as in {% set a = 1, 2 %}).
  NodePtr parse_tuple_or_expression() {
    Location loc = here();
    auto first = parse_expression();
    if (!is_op(",")) return first;
    auto t = make(Node::Tuple, loc);
    t->kids.push_back(std::move(first));
    while (is_op(",")) {
      next();
      if (peek().kind == Tok::BlockEnd || peek().kind == Tok::VarEnd) break;
      t->kids.push_back(parse_expression());
    }
    return t;
  }

  NodePtr parse_expression() {
    Nesting guard(*this);
    auto n = parse_or();
    while (is_name("if")) {
      Location loc = here();
      next();
      auto c = make(Node::Cond, loc);
      c->kids.push_back(std::move(n));
      c->kids.push_back(parse_or());
      if (is_name("else")) {
        next();
        c->kids.push_back(parse_expression());
      } else {
        c->kids.push_back(nullptr);
      }
      n = std::move(c);
    }
    return n;
  }

  NodePtr binary(std::string op, NodePtr l, NodePtr r, Location loc) {
    auto n = make(Node::Binary, loc);
    n->name = std::move(op);
    n->kids.push_back(std::move(l));
    n->kids.push_back(std::move(r));
    return n;
  }

  NodePtr parse_or() {
    auto n = parse_and();
    while (is_name("or")) {
      Location loc = here();
      next();
      n = binary("or", std::move(n), parse_and(), loc);
    }
    return n;
  }

  NodePtr parse_and() {
    auto n = parse_not();
    while (is_name("and")) {
      Location loc = here();
      next();
      n = binary("and", std::move(n), parse_not(), loc);
    }
    return n;
  }

  NodePtr parse_not() {
    if (is_name("not")) {
      Nesting guard(*this);
      auto n = make(Node::Unary, here());
      next();
      n->name = "not";
      n->kids.push_back(parse_not());
      return n;
    }
    return parse_compare();
  }

  NodePtr parse_compare() {
    auto n = parse_math1();
    while (true) {
      Location loc = here();
      if (peek().kind == Tok::Op && (peek().text == "==" || peek().text == "!=" || peek().text == "<" ||
                                     peek().text == ">" || peek().text == "<=" || peek().text == ">=")) {
        std::string op = next().text;
        n = binary(op, std::move(n), parse_math1(), loc);
      } else if (is_name("in")) {
        next();
        n = binary("in", std::move(n), parse_math1(), loc);
      } else if (is_name("not") && is_name("in", 1)) {
        next(), next();
        n = binary("notin", std::move(n), parse_math1(), loc);
      } else {
        return n;
      }
    }
  }

  NodePtr parse_math1() {
    auto n = parse_concat();
    while (is_op("+") || is_op("-")) {
      Location loc = here();
      std::string op = next().text;
      n = binary(op, std::move(n), parse_concat(), loc);
    }
    return n;
  }

  NodePtr parse_concat() {
    auto n = parse_math2();
    while (is_op("~")) {
      Location loc = here();
      next();
      n = binary("~", std::move(n), parse_math2(), loc);
    }
    return n;
  }

  NodePtr parse_math2() {
    auto n = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      Location loc = here();
      std::string op = next().text;
      n = binary(op, std::move(n), parse_pow(), loc);
    }
    return n;
  }

  NodePtr parse_pow() {
    auto n = parse_unary(true);
    while (is_op("**")) {
      Location loc = here();
      next();
      n = binary("**", std::move(n), parse_unary(true), loc);
    }
    return n;
  }

  NodePtr parse_unary(bool with_filter) {
    NodePtr n;
    if (is_op("-") || is_op("+")) {
      Nesting guard(*this);
      n = make(Node::Unary, here());
      n->name = next().text;
      n->kids.push_back(parse_unary(false));
    } else {
      n = parse_postfix(parse_primary());
    }
    if (with_filter) n = parse_filters(std::move(n));
    return n;
  }

  NodePtr parse_primary() {
    Location loc = here();
    const Token& t = peek();
    if (t.kind == Tok::Name) {
      std::string name = next().text;
      auto n = make(Node::Literal, loc);
      if (name == "true" || name == "True") n->value = Value::boolean(true);
      else if (name == "false" || name == "False") n->value = Value::boolean(false);
      else if (name == "none" || name == "None") n->value = Value::none();
      else n->kind = Node::Name, n->name = name;
      return n;
    }
    if (t.kind == Tok::String) {
      std::string s;
      while (peek().kind == Tok::String) s += next().text;  // adjacent literals concatenate
      auto n = make(Node::Literal, loc);
      n->value = Value::str(s);
      return n;
    }
    if (t.kind == Tok::Int || t.kind == Tok::Float) {
      auto n = make(Node::Literal, loc);
      n->value = next().number;
      return n;
    }
    if (is_op("(")) {
      next();
      if (is_op(")")) {
        next();
        return make(Node::Tuple, loc);
      }
      auto first = parse_expression();
      if (is_op(")")) {
        next();
        return first;
      }
      auto tup = make(Node::Tuple, loc);
      tup->kids.push_back(std::move(first));
      while (is_op(",")) {
        next();
        if (is_op(")")) break;
        tup->kids.push_back(parse_expression());
      }
      expect_op(")");
      return tup;
    }
    if (is_op("[")) {
      next();
      auto n = make(Node::ListLit, loc);
      while (!is_op("]")) {
        n->kids.push_back(parse_expression());
        if (!is_op(",")) break;
        next();
      }
      expect_op("]");
      return n;
    }
    if (is_op("{")) {
      next();
      auto n = make(Node::DictLit, loc);
      while (!is_op("}")) {
        n->kids.push_back(parse_expression());
        expect_op(":");
        n->kids.push_back(parse_expression());
        if (!is_op(",")) break;
        next();
      }
      expect_op("}");
      return n;
    }
    fail_here("expected an expression");
  }

  NodePtr parse_postfix(NodePtr n) {
    while (true) {
      Location loc = here();
      if (is_op(".")) {
        next();
        auto a = make(Node::Attr, loc);
        if (peek().kind == Tok::Int) {  // x.0 is x[0]
          a->kind = Node::Index;
          a->kids.push_back(std::move(n));
          auto lit = make(Node::Literal, loc);
          lit->value = next().number;
          a->kids.push_back(std::move(lit));
        } else {
          a->name = expect_name();
          a->kids.push_back(std::move(n));
        }
        n = std::move(a);
      } else if (is_op("[")) {
        next();
        n = parse_subscript(std::move(n), loc);
      } else if (is_op("(")) {
        n = parse_call(std::move(n), Node::Call, "", loc);
      } else {
        return n;
      }
    }
  }

  NodePtr parse_subscript(NodePtr target, Location loc) {
    NodePtr parts[3];
    bool slice = false;
    if (!is_op(":")) parts[0] = parse_expression();
    if (is_op(":")) {
      slice = true;
      next();
      if (!is_op(":") && !is_op("]")) parts[1] = parse_expression();
      if (is_op(":")) {
        next();
        if (!is_op("]")) parts[2] = parse_expression();
      }
    }
    expect_op("]");
    auto n = make(slice ? Node::Slice : Node::Index, loc);
    n->kids.push_back(std::move(target));
    n->kids.push_back(std::move(parts[0]));
    if (slice) {
      n->kids.push_back(std::move(parts[1]));
      n->kids.push_back(std::move(parts[2]));
    }
    return n;
  }

  // `(a, b, key=c)` after a callee, filter or test; kids[0] is `subject`.
  NodePtr parse_call(NodePtr subject, Node::Kind kind, std::string name, Location loc) {
    auto n = make(kind, loc);
    n->name = std::move(name);
    n->kids.push_back(std::move(subject));
    if (!is_op("(")) return n;
    next();
    while (!is_op(")")) {
      if (peek().kind == Tok::Name && is_op("=", 1)) {
        n->names.push_back(next().text);
        next();
      } else {
        n->names.emplace_back();
      }
      n->kids.push_back(parse_expression());
      if (!is_op(",")) break;
      next();
    }
    expect_op(")");
    return n;
  }

  NodePtr parse_filters(NodePtr n) {
    while (true) {
      Location loc = here();
      if (is_op("|")) {
        next();
        std::string name = expect_name();
        n = parse_call(std::move(n), Node::Filter, name, loc);
      } else if (is_name("is")) {
        next();
        bool negated = is_name("not");
        if (negated) next();
        std::string name = expect_name();
        const Token& t = peek();
        bool bare_arg = (t.kind == Tok::Name || t.kind == Tok::String || t.kind == Tok::Int || t.kind == Tok::Float ||
                         is_op("[") || is_op("{")) &&
                        !(t.kind == Tok::Name && (t.text == "else" || t.text == "or" || t.text == "and" ||
                                                  t.text == "if" || t.text == "is" || t.text == "in" || t.text == "not"));
        if (bare_arg) {
          auto test = make(Node::Test, loc);
          test->name = name;
          test->kids.push_back(std::move(n));
          test->kids.push_back(parse_postfix(parse_primary()));
          test->names.emplace_back();
          n = std::move(test);
        } else {
          n = parse_call(std::move(n), Node::Test, name, loc);
        }
        n->negated = negated;
      } else if (is_op("(")) {
        n = parse_call(std::move(n), Node::Call, "", loc);
      } else {
        return n;
      }
    }
  }

  std::vector<Token> t_;
  size_t k_ = 0;
  std::string_view src_;
  const std::string& origin_;
  std::vector<size_t> line_starts_;
  int nesting_ = 0;
};

}  // namespace

NodePtr parse(std::vector<Token> tokens, std::string_view src, const std::string& origin) {
  return Parser(std::move(tokens), src, origin).parse_template();
}

}  // namespace bq::jinja
