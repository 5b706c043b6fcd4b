// Readers for the benchmark's file formats: tab-separated tables with CSV-style quoting, CoNLL-style token/tag
// columns, and the Python literals (lists, dicts, strings) some columns hold.
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "eval/task.h"

namespace bq::eval {

namespace fs = std::filesystem;

struct TsvRow {
  size_t line = 0;  // 1-based line where the row starts
  std::vector<std::string> cells;
};

struct TsvTable {
  std::vector<std::string> header;
  std::vector<TsvRow> rows;
  size_t skipped = 0;                 // malformed rows dropped in lenient mode
  std::vector<std::string> problems;  // one message per skipped row
};

// Python csv conventions with delimiter '\t': a field that starts with '"' is quoted and may hold tabs and line
// breaks, "" inside it is one quote; a quote inside an unquoted field is literal. LF or CRLF ends a row; a UTF-8
// BOM is ignored; blank lines are skipped; CRLF inside quoted fields becomes LF. A row whose cell count differs
// from the header's, or a quote left open at the end of the file, is malformed: Error naming name:line, or
// skipped and counted when lenient.
TsvTable parse_tsv(std::string_view text, const std::string& name, bool lenient);

struct ConllSentence {
  size_t line = 0;  // line of the first token
  std::vector<std::string> tokens, tags;
};

// `token<TAB>tag` per line (split on tabs only: tokens may hold spaces), blank lines between sentences, tags
// B/I/O (a B-TYPE/I-TYPE suffix is accepted). Malformed lines: Error with name:line, or (lenient) the whole
// sentence is skipped and counted in *skipped.
std::vector<ConllSentence> parse_conll(std::string_view text, const std::string& name, bool lenient,
                                       size_t* skipped);

// The literal subset of Python found in the data: lists, tuples, dicts, strings (both quote styles, escapes,
// adjacent literals concatenated), ints, floats, True/False/None. Throws Error naming `name` and the offset.
nlohmann::json parse_python_literal(std::string_view text, const std::string& name = "literal");

// Removes a leading UTF-8 byte-order mark and turns CRLF into LF.
std::string normalize_text_file(std::string text);

// A data reader, named by `reader:` in a task file (`format:` is its older name): turns a split file into examples.
struct DataReader {
  std::string_view name;
  GoldKind gold;                        // what its examples' gold is
  std::vector<std::string_view> needs;  // task file keys it reads that must be there
  // Fills ds.examples, ds.skipped and ds.problems from the bytes of ds.file (ds.split names the split).
  void (*read)(const TaskConfig& task, std::string_view bytes, bool lenient, Dataset& ds);
};
// conll: token/tag columns, one example per sentence, gold entity spans (its "sentence" field: the tokens joined by
// spaces). tsv: one example per row, its columns as fields, gold labels from label_field (split on label_separator
// when the task has one), options from options_field.
const std::vector<DataReader>& data_readers();
// The reader named `name`; Error naming the known ones when there is none.
const DataReader& data_reader(std::string_view name);

}  // namespace bq::eval
