// Progress of long work on stderr, so no command is silent for long: on a terminal one line redrawn about twice a
// second, otherwise (logs of batch jobs) a plain line every 10 s (BIOMEDQ_PROGRESS_SECONDS changes it). Work that ends within the first interval prints
// nothing; work that printed anything ends with a closing line. A background thread draws, so the line keeps moving
// while one step (a huge tensor, one long generation) is under way.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace bq {

// Every meter of the process is on or off together (eval --no-progress, and BIOMEDQ_PROGRESS=0 in the environment).
void set_progress_enabled(bool on);
bool progress_enabled();

class ProgressMeter {
 public:
  // `what`: the work ("quantizing to nf4"); `total` units of `unit` ("GB", "tensors", "examples"), 0 if unknown.
  // `show` false: silent whatever progress_enabled() says.
  ProgressMeter(std::string what, double total, std::string unit, bool show = true);
  ~ProgressMeter();
  ProgressMeter(const ProgressMeter&) = delete;
  ProgressMeter& operator=(const ProgressMeter&) = delete;

  void advance(double units);  // thread-safe
  // Units already done before this meter started (a resumed run): shown, but not counted in the rate.
  void set_done_before(double units);
  // Free text after the figures ("task 2/8 chemprot, 1,204 tokens generated"); thread-safe.
  void set_note(std::string note);
  // The line as it would be drawn now (for tests and the closing line).
  std::string line() const;

 private:
  void draw(bool closing);
  void run();

  std::string what_, unit_;
  double total_;
  std::atomic<double> done_{0}, before_{0};
  mutable std::mutex mu_;
  std::string note_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  bool tty_, printed_ = false, stop_ = false;
  std::condition_variable wake_;
  std::thread ticker_;
};

}  // namespace bq
