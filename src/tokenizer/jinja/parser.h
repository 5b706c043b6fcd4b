// The Jinja parser and its AST: recursive descent over the lexer's tokens into one node type, whose fields
// mean what each kind's comment says.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/lexer.h"
#include "tokenizer/jinja/value.h"

namespace bq::jinja {

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum Kind {
    // statements
    Text,      // name: the text
    Output,    // kids[0]: the expression
    If,        // kids[0]: condition; body, else_body (an elif is a nested If in else_body)
    For,       // kids[0]: target (Name or Tuple), kids[1]: iterable, kids[2]: filter or null; body, else_body
    Set,       // kids[0]: target (Name, Tuple or Attr), kids[1]: value, or null with body for {% set x %}..{% endset %}
    Macro,     // name; names: parameters; kids: their defaults (null when none); body
    Block,     // body (the {% generation %} block)
    Break,
    Continue,
    // expressions
    Literal,   // value
    Name,      // name
    ListLit,   // kids: items
    Tuple,     // kids: items
    DictLit,   // kids: key, value, key, value...
    Attr,      // kids[0].name
    Index,     // kids[0][kids[1]]
    Slice,     // kids[0][kids[1]:kids[2]:kids[3]], absent parts null
    Call,      // kids[0](kids[1..]); names: keyword of each argument ("" for positional)
    Filter,    // kids[0] | name(kids[1..]); names as Call
    Test,      // kids[0] is [not] name(kids[1..]); negated
    Unary,     // name ("-", "+", "not") kids[0]
    Binary,    // kids[0] name kids[1]; name is the operator, "in", "notin", "and", "or"
    Cond,      // kids[0] if kids[1] else kids[2] (null: undefined)
  } kind;
  Location loc{};
  std::string name;
  Value value;
  std::vector<NodePtr> kids;
  std::vector<std::string> names;
  Body body, else_body;
  bool negated = false;
};

// The template's statements as the body of a Block node. Syntax errors throw bq::Error naming origin:line:column.
NodePtr parse(std::vector<Token> tokens, std::string_view src, const std::string& origin);

}  // namespace bq::jinja
