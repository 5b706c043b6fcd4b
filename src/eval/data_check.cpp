#include "eval/data_check.h"

#include <fmt/format.h>

#include "eval/readers.h"

namespace bq::eval {

nlohmann::ordered_json data_check(const std::vector<TaskConfig>& tasks, const fs::path& data_dir, bool lenient) {
  nlohmann::ordered_json report = {{"data_dir", data_dir.string()}, {"tasks", nlohmann::ordered_json::array()}};
  for (auto& task : tasks) {
    nlohmann::ordered_json t = {{"task", task.name}, {"type", task.type}, {"folder", task.data_folder},
                        {"splits", nlohmann::ordered_json::object()}};
    for (const char* split : {"train", "dev", "test"}) {
      if (!has_split(task, data_dir, split)) continue;
      Dataset ds = load_split(task, data_dir, split, lenient);
      nlohmann::ordered_json s = {{"file", ds.file.string()}, {"sha256", ds.sha256}, {"examples", ds.examples.size()}};
      if (auto note = task.split_notes.find(split); note != task.split_notes.end()) s["note"] = note->second;
      if (data_reader(task.reader).gold == GoldKind::spans) {
        size_t entities = 0, tokens = 0;
        for (auto& ex : ds.examples) {
          entities += ex.entities.size();
          tokens += ex.tokens.size();
        }
        s["tokens"] = tokens;
        s["entities"] = entities;
      } else {
        nlohmann::ordered_json dist = nlohmann::ordered_json::object();
        for (auto& l : task.labels) dist[l] = 0;
        size_t none = 0;
        for (auto& ex : ds.examples) {
          for (auto& l : ex.gold) dist[l] = dist[l].get<size_t>() + 1;
          none += ex.gold.empty();
        }
        if (none) dist["(no label)"] = none;
        s["labels"] = dist;
      }
      s["skipped"] = ds.skipped;
      if (!ds.problems.empty()) s["problems"] = ds.problems;
      t["splits"][split] = s;
    }
    report["tasks"].push_back(t);
  }
  return report;
}

std::string format_data_check(const nlohmann::ordered_json& report) {
  std::string out = fmt::format("data directory: {}\n", report["data_dir"].get<std::string>());
  for (auto& t : report["tasks"]) {
    out += fmt::format("\n{} ({}, folder {})\n", t["task"].get<std::string>(), t["type"].get<std::string>(),
                       t["folder"].get<std::string>());
    if (t["splits"].empty()) out += "  no split files found\n";
    for (auto& [split, s] : t["splits"].items()) {
      out += fmt::format("  {:<5} {:>6} {}", split, s["examples"].get<size_t>(),
                         s.contains("entities") ? "sentences" : "examples");
      if (s.contains("entities")) out += fmt::format(", {} entities", s["entities"].get<size_t>());
      if (s["skipped"].get<size_t>()) out += fmt::format(", {} malformed skipped", s["skipped"].get<size_t>());
      if (s.contains("note")) out += fmt::format("  [{}]", s["note"].get<std::string>());
      out += "\n";
      if (s.contains("labels")) {
        std::string dist;
        for (auto& [l, n] : s["labels"].items()) dist += fmt::format("{}{}: {}", dist.empty() ? "" : ", ", l, n.get<size_t>());
        out += "        " + dist + "\n";
      }
      if (s.contains("problems"))
        for (auto& p : s["problems"]) out += "        skipped: " + p.get<std::string>() + "\n";
    }
  }
  return out;
}

}  // namespace bq::eval
