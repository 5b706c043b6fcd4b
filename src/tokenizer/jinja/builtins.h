// What templates call by name: filters (x | f), tests (x is t), methods of strings and dicts (s.m()) and the
// global functions. Each kind is a table of small functions, name -> function. The evaluator sets the error
// location before calling one, so their errors (RuntimeError) name no place.
#pragma once
#include <ctime>
#include <string>
#include <unordered_map>

#include "tokenizer/jinja/value.h"

namespace bq::jinja {

Value apply_filter(const std::string& name, const Value& v, const CallArgs& a);
bool apply_test(const std::string& name, const Value& v, const CallArgs& a);
Value call_method(const Value& obj, const std::string& name, const CallArgs& a);
// raise_exception, strftime_now (reporting `now`), range, namespace, dict.
void install_globals(std::unordered_map<std::string, Value>& globals, const std::tm& now);

}  // namespace bq::jinja
