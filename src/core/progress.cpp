#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace bq {

namespace {

std::atomic<int>& enabled_flag() {  // -1: not decided yet (the environment decides)
  static std::atomic<int> flag{-1};
  return flag;
}

std::string hms(double s) {
  long t = std::lround(std::max(0.0, s));
  return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
}

std::string amount(double v) { return v == std::floor(v) && v < 1e15 ? fmt::format("{:.0f}", v) : fmt::format("{:.2f}", v); }

}  // namespace

void set_progress_enabled(bool on) { enabled_flag() = on ? 1 : 0; }

bool progress_enabled() {
  int f = enabled_flag();
  if (f < 0) {
    const char* e = std::getenv("BIOMEDQ_PROGRESS");
    f = e && std::strcmp(e, "0") == 0 ? 0 : 1;
    enabled_flag() = f;
  }
  return f == 1;
}

ProgressMeter::ProgressMeter(std::string what, double total, std::string unit, bool show)
    : what_(std::move(what)), unit_(std::move(unit)), total_(total), tty_(::isatty(2) == 1) {
  if (show && progress_enabled()) ticker_ = std::thread([this] { run(); });
}

ProgressMeter::~ProgressMeter() {
  if (!ticker_.joinable()) return;
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  ticker_.join();
  if (printed_) draw(true);
}

void ProgressMeter::advance(double units) { done_.fetch_add(units); }

void ProgressMeter::set_done_before(double units) {
  before_ = units;
  done_ = units;
}

void ProgressMeter::set_note(std::string note) {
  std::lock_guard lock(mu_);
  note_ = std::move(note);
}

std::string ProgressMeter::line() const {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double done = done_, rate = (done - before_) / std::max(elapsed, 1e-9);
  std::string s = fmt::format("{}: {}", what_, amount(done));
  if (total_ > 0) s += fmt::format("/{} {} ({:.0f}%)", amount(total_), unit_, 100.0 * done / total_);
  else s += " " + unit_;
  s += fmt::format(", {} elapsed, {:.3g} {}/s", hms(elapsed), rate, unit_);
  if (total_ > 0 && rate > 0 && done < total_) s += ", ETA " + hms((total_ - done) / rate);
  std::lock_guard lock(mu_);
  if (!note_.empty()) s += ", " + note_;
  return s;
}

void ProgressMeter::draw(bool closing) {
  std::string s = line();
  if (tty_)
    std::fprintf(stderr, "\r%s\x1b[K%s", s.c_str(), closing ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", s.c_str());
  std::fflush(stderr);
  printed_ = true;
}

void ProgressMeter::run() {
  // BIOMEDQ_PROGRESS_SECONDS sets the interval of plain lines (batch logs that want more or fewer).
  double seconds = 10;
  if (const char* e = std::getenv("BIOMEDQ_PROGRESS_SECONDS")) {
    char* end = nullptr;
    double v = std::strtod(e, &end);
    if (end != e && *end == '\0' && v >= 0.01 && v <= 86400) seconds = v;
  }
  const auto interval = std::chrono::duration<double>(tty_ ? std::min(seconds, 0.5) : seconds);
  std::unique_lock lock(mu_);
  while (!wake_.wait_for(lock, interval, [this] { return stop_; })) {
    lock.unlock();
    draw(false);
    lock.lock();
  }
}

}  // namespace bq
