// The server's one decode thread: it owns the engine's DecodeLoop and steps it while any request is live. HTTP
// handler threads submit jobs (one prompt, n answers) and read tokens and ends from the job's channel.
#pragma once
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "generate/engine.h"

namespace bq::serve {

// What the decode thread reports for one answer (choice) of a job: a new token, or its end.
struct JobEvent {
  int choice = 0;
  bool ended = false;
  int32_t token = 0;                  // when !ended
  std::string finish_reason, error;   // when ended: "eos" | "stop" | "length" | "cancelled"; error: the engine failed
  size_t generated = 0;               // when ended: tokens generated

  static JobEvent new_token(int choice, int32_t token) { return {choice, false, token, "", "", 0}; }
  static JobEvent end(int choice, std::string reason, size_t generated = 0, std::string error = "") {
    return {choice, true, 0, std::move(reason), std::move(error), generated};
  }
};

// One request's answers, shared by its handler thread (reader) and the decode thread (writer).
class Job {
 public:
  Job(std::vector<int32_t> prompt, std::vector<SamplingOptions> choices)
      : prompt_(std::move(prompt)), choices_(std::move(choices)) {}
  const std::vector<int32_t>& prompt() const { return prompt_; }
  const std::vector<SamplingOptions>& choices() const { return choices_; }

  // Waits up to `timeout` for events; returns those that arrived (none on timeout).
  std::vector<JobEvent> wait(std::chrono::milliseconds timeout);
  void post(JobEvent e);

 private:
  std::vector<int32_t> prompt_;
  std::vector<SamplingOptions> choices_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<JobEvent> events_;
};

class Scheduler {
 public:
  // max_batch: sequences decoded together; max_pending: answers queued or live at once (beyond: submit refuses).
  Scheduler(Engine& engine, int max_batch, int max_pending);
  ~Scheduler();  // cancels what is left and joins the thread
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a job; false when its answers would exceed max_pending (the caller answers 503).
  bool submit(const std::shared_ptr<Job>& job);
  // Ends every answer of the job now (its client went away); each still reports its end.
  void cancel(const std::shared_ptr<Job>& job);
  void cancel_all();
  size_t pending() const;

 private:
  std::unique_ptr<DecodeLoop> make_loop();
  void run();
  void admit(const std::shared_ptr<Job>& job);
  void fail_live(const std::string& error);

  Engine& engine_;
  const int max_pending_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<Job>> incoming_, cancels_;
  size_t pending_ = 0;  // answers submitted and not yet ended
  bool stopping_ = false, cancel_everything_ = false;
  // Decode-thread state: the loop and which job and choice each of its request ids belongs to.
  struct Answer {
    std::shared_ptr<Job> job;
    int choice;
  };
  int max_batch_;
  std::unique_ptr<DecodeLoop> loop_;
  std::unordered_map<size_t, Answer> answers_;
  std::thread thread_;
};

}  // namespace bq::serve
