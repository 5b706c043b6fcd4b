// sweep: the study's matrix from one file (src/sweep/): its cells planned, and their state from the run folders.
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/error.h"
#include "sweep/sweep.h"

namespace bq::cli {

namespace {

std::string gib(size_t bytes) { return fmt::format("{:.1f} GiB", double(bytes) / double(size_t(1) << 30)); }

void print_plan(const sweep::SweepFile& s, const std::vector<sweep::Cell>& cells, bool json) {
  nlohmann::json out = nlohmann::json::array();
  int unplaceable = 0;
  if (!json) std::printf("%-48s %12s  %s\n", "cell", "per GPU", "needs");
  for (const sweep::Cell& c : cells) {
    const sweep::GpuClass* g = c.planned_bytes ? sweep::gpu_class_for(*c.planned_bytes) : nullptr;
    unplaceable += g == nullptr;
    const std::string needs = !c.planned_bytes ? "not planned: " + c.plan_note
                              : g            ? fmt::format("{} x {}", s.gpus_per_job, g->name)
                                             : "fits no GPU class: not run";
    if (json) {
      nlohmann::json j = {{"cell", c.name}, {"dir", c.dir.string()}, {"gpus", s.gpus_per_job}};
      if (c.planned_bytes) j["planned_bytes_per_gpu"] = *c.planned_bytes;
      j["gpu_class"] = g ? nlohmann::json(std::string(g->name)) : nlohmann::json(nullptr);
      if (!c.plan_note.empty()) j["note"] = c.plan_note;
      out.push_back(j);
    } else {
      std::printf("%-48s %12s  %s\n", c.name.c_str(), c.planned_bytes ? gib(*c.planned_bytes).c_str() : "-",
                  needs.c_str());
    }
  }
  if (json) std::printf("%s\n", out.dump(1).c_str());
  else
    std::printf("%zu cells (%zu models x %zu precisions x %zu promptings), %zu tasks each; %d fit no GPU class\n",
                cells.size(), s.models.size(), s.precisions.size(), s.promptings.size(), s.tasks.size(),
                unplaceable);
}

void print_status(const std::vector<sweep::Cell>& cells, bool json) {
  std::map<std::string_view, int> counts;
  nlohmann::json out = nlohmann::json::array();
  for (const sweep::Cell& c : cells) {
    const std::string_view state = sweep::state_name(sweep::cell_state(c.dir));
    counts[state]++;
    if (json) out.push_back({{"cell", c.name}, {"state", state}, {"dir", c.dir.string()}});
    else std::printf("%-8s %s\n", std::string(state).c_str(), c.name.c_str());
  }
  if (json) {
    std::printf("%s\n", out.dump(1).c_str());
    return;
  }
  std::printf("%d done, %d running, %d failed, %d pending (of %zu cells)\n", counts["done"], counts["running"],
              counts["failed"], counts["pending"], cells.size());
}

}  // namespace

void register_sweep_commands(CLI::App& app) {
  auto* sweep_cmd = app.add_subcommand("sweep", "The study's matrix from one sweep file: plan its cells, see their state");
  sweep_cmd->require_subcommand(1);
  auto file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);

  auto* plan = sweep_cmd->add_subcommand("plan", "Every cell with the memory it needs per GPU and the GPU class that holds it");
  plan->add_option("file", *file, "sweep file (YAML)")->required();
  plan->add_flag("--json", *json, "print the cells as JSON");
  plan->callback([file, json] {
    const sweep::SweepFile s = sweep::read_sweep(*file);
    print_plan(s, sweep::plan_cells(s), *json);
  });

  auto* status = sweep_cmd->add_subcommand("status", "Cells done, running, failed and pending, from the run folders alone");
  status->add_option("file", *file, "sweep file (YAML)")->required();
  status->add_flag("--json", *json, "print the cells' states as JSON");
  status->callback([file, json] {
    const sweep::SweepFile s = sweep::read_sweep(*file);
    print_status(sweep::plan_cells(s), *json);
  });
}

}  // namespace bq::cli
