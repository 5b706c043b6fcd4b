// String helpers with Python's semantics, for the methods and filters: Python strings index and case-map by
// code point, so these work on UTF-8 code points, not bytes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/jinja/value.h"

namespace bq::jinja {

std::vector<std::string> utf8_chars(const std::string& s);  // one string per code point

std::string lower(const std::string& s);
std::string upper(const std::string& s);
std::string title(const std::string& s);
std::string capitalize(const std::string& s);

// str.strip/lstrip/rstrip: `chars` as a string, else whitespace.
std::string strip(const std::string& s, const Value* chars, bool left, bool right);
// Python str.split(sep=None, maxsplit=-1).
List split(const std::string& s, const Value* sep, int64_t maxsplit);
// str.replace(from, to, count); count < 0: all.
std::string replace_all(const std::string& s, const std::string& from, const std::string& to, int64_t count);
// Python's sequence[start:stop:step] on n items: the selected indices.
std::vector<size_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step);

}  // namespace bq::jinja
