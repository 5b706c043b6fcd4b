// The Jinja lexer: template text and tags become one token stream. Whitespace control (-), trim_blocks and
// lstrip_blocks are applied to the text tokens here, {% raw %} bodies become plain text.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace bq::jinja {

enum class Tok { Text, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok kind;
  std::string text;  // text, name, string value, operator
  Value number;
  size_t pos;  // offset in the source, for error locations
};

struct Location {  // in the template source, from 1
  int line, col;
};

// Syntax errors throw bq::Error naming origin:line:column.
std::vector<Token> lex(std::string_view src, const std::string& origin);

}  // namespace bq::jinja
