#include "serve/scheduler.h"

#include <algorithm>
#include <utility>

namespace bq::serve {

std::vector<JobEvent> Job::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(m_);
  cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
  std::vector<JobEvent> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

void Job::post(JobEvent e) {
  {
    std::lock_guard lock(m_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

Scheduler::Scheduler(Engine& engine, int max_batch, int max_pending)
    : engine_(engine), max_pending_(max_pending), max_batch_(max_batch) {
  loop_ = make_loop();
  thread_ = std::thread([this] { run(); });
}

// Stop strings are checked on the decode thread against the text generated so far.
std::unique_ptr<DecodeLoop> Scheduler::make_loop() {
  return engine_.decode_loop(max_batch_, [this](size_t id, const std::vector<int32_t>& generated) {
    const Answer& a = answers_.at(id);
    const auto& stops = a.job->choices()[size_t(a.choice)].stop;
    return !stops.empty() &&
           find_first_stop(engine_.tokenizer().decode(generated, /*skip_special=*/true), stops) != std::string::npos;
  });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard lock(m_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

bool Scheduler::submit(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(m_);
    if (stopping_ || pending_ + job->choices().size() > size_t(max_pending_)) return false;
    pending_ += job->choices().size();
    incoming_.push_back(job);
  }
  cv_.notify_all();
  return true;
}

void Scheduler::cancel(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(m_);
    cancels_.push_back(job);
  }
  cv_.notify_all();
}

void Scheduler::cancel_all() {
  {
    std::lock_guard lock(m_);
    cancel_everything_ = true;
  }
  cv_.notify_all();
}

size_t Scheduler::pending() const {
  std::lock_guard lock(m_);
  return pending_;
}

void Scheduler::admit(const std::shared_ptr<Job>& job) {
  for (size_t c = 0; c < job->choices().size(); ++c) {
    size_t id = 0;
    try {
      id = loop_->submit({job->prompt(), job->choices()[c]});
    } catch (const Error& e) {  // the handler checked the length; this is the last line of defence
      {
        std::lock_guard lock(m_);
        pending_--;
      }
      job->post(JobEvent::end(int(c), "error", 0, e.what()));
      continue;
    }
    answers_.emplace(id, Answer{job, int(c)});
  }
}

// Ends every live answer with an error and starts a fresh loop: a failed step leaves the old one's state unknown.
void Scheduler::fail_live(const std::string& error) {
  {
    std::lock_guard lock(m_);
    pending_ -= answers_.size();
  }
  for (auto& [id, a] : answers_) a.job->post(JobEvent::end(a.choice, "error", 0, error));
  answers_.clear();
  loop_.reset();
  loop_ = make_loop();
}

void Scheduler::run() {
  for (;;) {
    std::vector<std::shared_ptr<Job>> incoming, cancels;
    bool cancel_all = false;
    {
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] {
        return stopping_ || cancel_everything_ || !incoming_.empty() || !cancels_.empty() || !loop_->idle();
      });
      if (stopping_) break;
      incoming.swap(incoming_);
      cancels.swap(cancels_);
      cancel_all = std::exchange(cancel_everything_, false);
    }
    for (auto& job : incoming) admit(job);
    for (auto& [id, a] : answers_)
      if (cancel_all || std::find(cancels.begin(), cancels.end(), a.job) != cancels.end()) loop_->cancel(id);
    DecodeLoop::Step step;
    try {
      step = loop_->step();
    } catch (const std::exception& e) {
      fail_live(e.what());
      continue;
    }
    for (auto& [id, token] : step.tokens) {
      const Answer& a = answers_.at(id);
      a.job->post(JobEvent::new_token(a.choice, token));
    }
    for (size_t id : step.finished) {
      TokenResult r = loop_->take_result(id);
      {
        // Its place is free before its client hears of the end, so a request sent after it never finds it taken.
        std::lock_guard lock(m_);
        pending_--;
      }
      auto it = answers_.find(id);
      it->second.job->post(JobEvent::end(it->second.choice, r.finish_reason, r.tokens.size()));
      answers_.erase(it);
    }
  }
  // Shutting down: whoever still waits learns that its answers ended.
  for (auto& [id, a] : answers_) a.job->post(JobEvent::end(a.choice, "cancelled"));
  for (auto& job : incoming_)
    for (size_t c = 0; c < job->choices().size(); ++c)
      job->post(JobEvent::end(int(c), "cancelled"));
  answers_.clear();
  loop_.reset();
}

}  // namespace bq::serve
