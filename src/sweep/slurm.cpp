#include "sweep/slurm.h"

#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "core/files.h"

namespace bq::sweep {

namespace {

constexpr double kGiB = double(size_t(1) << 30);

// A value written into an #SBATCH line: one word of safe characters (sbatch does not unquote there, a newline
// would start a new directive and % is its file-name pattern).
const std::string& directive_value(const std::string& option, const std::string& value, bool path = false) {
  const std::string safe = std::string("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+.,:=") +
                           (path ? "/@" : "");
  if (value.empty() || value.size() > (path ? 4000 : 200) || value.find_first_not_of(safe) != std::string::npos)
    fail("{} '{}': expected one word of letters, digits and {}", option, value, safe.substr(62));
  return value;
}

}  // namespace

std::string slurm_script(const SweepFile& s, const std::vector<Cell>& cells, const SlurmOptions& o) {
  const std::string partition = directive_value("--partition", o.partition);
  size_t runnable = 0, host_bytes = 0, gpu_bytes = 0;
  std::string largest;
  for (const Cell& c : cells) {
    if (!unrunnable_reason(s, c).empty()) continue;
    runnable++;
    host_bytes = std::max(host_bytes, s.device == "cpu" ? *c.planned_bytes : c.host_bytes.value_or(0));
    if (*c.planned_bytes > gpu_bytes) {
      gpu_bytes = *c.planned_bytes;
      largest = c.name;
    }
  }
  if (runnable == 0) fail("{}: no cell can run (see `biomedq sweep plan`)", s.file.string());
  if (o.shards < 0 || o.shards > 100000) fail("--shards {}: expected 1 to 100000", o.shards);
  if (o.cpus_per_task < 1 || o.cpus_per_task > 1024) fail("--cpus-per-task {}: expected 1 to 1024", o.cpus_per_task);
  const int shards = int(std::min<size_t>(o.shards ? size_t(o.shards) : runnable, runnable));
  // Host memory: the largest cell's (its weights as read, on CUDA), a fifth more and 1 GiB for the process itself.
  const std::string mem = o.mem.empty() ? fmt::format("{}M", size_t(std::ceil((double(host_bytes) * 1.2 + kGiB) / double(1 << 20))))
                                        : directive_value("--mem", o.mem);
  const fs::path logs = s.out / "slurm";
  std::string out = "#!/bin/bash\n";
  out += fmt::format("# Written by `biomedq sweep slurm` for {}: {} cells ({} runnable) in {} shards, dealt largest "
                     "first.\n",
                     s.file.string(), cells.size(), runnable, shards);
  if (s.device == "cuda") {
    const GpuClass* g = gpu_class_for(gpu_bytes);
    out += fmt::format("# Largest cell {}: {:.1f} GiB per GPU, a {} GPU or larger.\n", largest,
                       double(gpu_bytes) / kGiB, g ? std::string(g->name) : "?");
  }
  out += "# Each array task runs its shard's cells; a requeued task resumes them from their run folders.\n";
  auto line = [&out](const std::string& d) { out += "#SBATCH " + d + "\n"; };
  line("--job-name=biomedq-" + directive_value("the sweep file's name", s.file.stem().string()));
  line("--partition=" + partition);
  if (!o.account.empty()) line("--account=" + directive_value("--account", o.account));
  line(fmt::format("--array=0-{}", shards - 1));
  line("--ntasks=1");
  line(fmt::format("--cpus-per-task={}", o.cpus_per_task));
  line("--mem=" + mem);
  if (s.device == "cuda")
    line(o.gpu_type.empty() ? fmt::format("--gres=gpu:{}", s.gpus_per_job)
                            : fmt::format("--gres=gpu:{}:{}", directive_value("--gpu-type", o.gpu_type), s.gpus_per_job));
  if (!o.time.empty()) line("--time=" + directive_value("--time", o.time));
  line("--requeue");
  line("--open-mode=append");  // a requeued task's log continues its first attempt's
  line("--output=" + directive_value("the sweep's out folder", logs.string(), true) + "/%A_%a.out");
  out += "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}\n";
  out += fmt::format("exec {} sweep run {}{} --shard $((SLURM_ARRAY_TASK_ID + 1))/{}\n", shell_quote(o.binary.string()),
                     shell_quote(s.file.string()),
                     s.device != "cuda"  ? ""
                     : s.gpu_memory      ? fmt::format(" --gpus-per-job {} --gpu-memory {}MiB", s.gpus_per_job, s.gpu_memory >> 20)
                                         : fmt::format(" --gpus-per-job {}", s.gpus_per_job),
                     shards);
  return out;
}

std::string submit_script(const fs::path& script) {
  const std::string command = "sbatch --parsable " + shell_quote(script.string()) + " 2>&1";
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) fail("cannot run sbatch: {}", std::strerror(errno));
  std::string output;
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, n);
  const int status = ::pclose(pipe);
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
      fail("sbatch not found: submit from a Slurm login node, or submit {} there by hand", script.string());
    fail("sbatch {} failed: {}", script.string(), output.empty() ? "no message" : output);
  }
  const std::string id = output.substr(0, output.find(';'));  // "<id>" or "<id>;<cluster>"
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    fail("sbatch {}: unexpected answer '{}'", script.string(), output);
  return id;
}

}  // namespace bq::sweep
