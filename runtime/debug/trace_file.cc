// runtime/debug/trace_file.cc: writing the event trace as Chrome trace JSON (runtime/debug/trace_file.h).
#include "runtime/debug/trace_file.h"

#include <cerrno>
#include <cinttypes>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string_view>
#include <system_error>

#include "scheduler/sched.h"

namespace tern::debug {
namespace {

using sched::TraceEvent;
using sched::TraceKind;
using sched::TraceStop;

// Trace files not yet written, for the exit handler: a process that exits with a Runtime alive still gets its trace.
struct Pending {
  std::mutex mu;
  std::set<TraceFile*> files;
};
Pending& pending() {
  static Pending* p = [] {
    auto* q = new Pending;  // never destroyed: the exit handler may run after static destructors began
    std::atexit([] {
      std::set<TraceFile*> files;
      {
        std::lock_guard lk(pending().mu);
        files.swap(pending().files);
      }
      for (TraceFile* f : files) {
        if (auto r = f->write(); !r) std::fprintf(stderr, "tern: TERN_TRACE: %s\n", r.error().message().c_str());
      }
    });
    return q;
  }();
  return *p;
}

// The track of events from threads without a P: after every possible P id.
constexpr int kNoPTid = sched::kMaxProcs;

const char* stop_name(uint8_t sub) {
  switch (static_cast<TraceStop>(sub)) {
    case TraceStop::kPark:
      return "park";
    case TraceStop::kYield:
      return "yield";
    case TraceStop::kExit:
      return "exit";
  }
  return "park";
}

const char* reason_name(uint32_t a) {
  return a < static_cast<uint32_t>(sched::kWaitReasons) ? sched::wait_reason_name(static_cast<sched::WaitReason>(a))
                                                        : "other";
}

const char* decision_cause(uint8_t sub) {
  return sub == 1 ? "limits" : sub == 2 ? "rollback" : "load";
}

class Writer {
 public:
  Writer(std::FILE* f, uint64_t pid, const sched::Tracer::Calibration& cal) : f_(f), pid_(pid), cal_(cal) {}

  void begin() { std::fputs("{\"traceEvents\":[\n", f_); }
  void meta(int tid, const char* what, const std::string& name) {
    sep();
    std::fprintf(f_, R"({"name":"%s","ph":"M","ts":0,"pid":%)" PRIu64 R"(,"tid":%d,"args":{"name":"%s"}})", what, pid_,
                 tid, name.c_str());
  }
  // An instant event with `args` (a JSON object's members, without braces).
  void instant(int tid, uint64_t ticks, const char* name, const std::string& args) {
    sep();
    std::fprintf(f_, R"({"name":"%s","ph":"i","s":"t","ts":%.3f,"pid":%)" PRIu64 R"(,"tid":%d,"args":{%s}})", name,
                 us(ticks), pid_, tid, args.c_str());
  }
  void slice(int tid, uint64_t from, uint64_t to, const std::string& args) {
    sep();
    const double ts = us(from);
    std::fprintf(f_, R"({"name":"run","ph":"X","ts":%.3f,"dur":%.3f,"pid":%)" PRIu64 R"(,"tid":%d,"args":{%s}})", ts,
                 std::max(0.0, us(to) - ts), pid_, tid, args.c_str());
  }
  void end(const std::string& other) {
    std::fprintf(f_, "\n],\"displayTimeUnit\":\"ns\",\"otherData\":{%s}}\n", other.c_str());
  }

  // One buffer's events on track `tid`: runs paired with their stops into slices, the rest as instants. `last` is the
  // latest tick in the whole trace, where a run still open at the end is closed.
  void track(int tid, const std::vector<TraceEvent>& evs, uint64_t last) {
    bool open = false;
    uint64_t open_g = 0, open_at = 0;
    char buf[160];
    for (const TraceEvent& e : evs) {
      switch (e.kind) {
        case TraceKind::kRun:
          if (open) slice(tid, open_at, e.ticks, fiber_args(open_g, "\"end\":\"unknown\""));
          open = true;
          open_g = e.g;
          open_at = e.ticks;
          break;
        case TraceKind::kStop: {
          const bool park = static_cast<TraceStop>(e.sub) == TraceStop::kPark;
          if (park) {
            std::snprintf(buf, sizeof buf, "\"end\":\"park\",\"reason\":\"%s\"", reason_name(e.a));
          } else {
            std::snprintf(buf, sizeof buf, "\"end\":\"%s\"", stop_name(e.sub));
          }
          // A stop with no run before it is the first event of a buffer that filled mid-run, or of a P that changed
          // hands: only its instant is shown.
          if (open && open_g == e.g) slice(tid, open_at, e.ticks, fiber_args(e.g, buf));
          open = false;
          if (park) {
            std::snprintf(buf, sizeof buf, "\"reason\":\"%s\"", reason_name(e.a));
            instant(tid, e.ticks, "park", fiber_args(e.g, buf));
          }
          break;
        }
        case TraceKind::kSpawn:
          instant(tid, e.ticks, "spawn", fiber_args(e.g, nullptr));
          break;
        case TraceKind::kReady:
          instant(tid, e.ticks, "ready", fiber_args(e.g, e.sub == 1 ? "\"by\":\"timer\"" : nullptr));
          break;
        case TraceKind::kSteal:
          std::snprintf(buf, sizeof buf, "\"fibers\":%" PRIu64 ",\"from_p\":%u,\"rescue\":%s", e.g, e.a,
                        e.sub == 1 ? "true" : "false");
          instant(tid, e.ticks, "steal", buf);
          break;
        case TraceKind::kPoll:
          std::snprintf(buf, sizeof buf, "\"fibers\":%" PRIu64 ",\"blocking\":%s", e.g, e.sub == 1 ? "true" : "false");
          instant(tid, e.ticks, "poll", buf);
          break;
        case TraceKind::kResize:
          std::snprintf(buf, sizeof buf, "\"from\":%u,\"to\":%u", e.a, e.b);
          instant(tid, e.ticks, "resize", buf);
          break;
        case TraceKind::kDecision:
          std::snprintf(buf, sizeof buf, "\"from\":%u,\"to\":%u,\"cause\":\"%s\"", e.a, e.b, decision_cause(e.sub));
          instant(tid, e.ticks, "controller", buf);
          break;
      }
    }
    if (open) slice(tid, open_at, std::max(last, open_at), fiber_args(open_g, "\"end\":\"running\""));
  }

  bool failed() const { return std::ferror(f_) != 0; }

 private:
  void sep() {
    if (!first_) std::fputs(",\n", f_);
    first_ = false;
  }
  double us(uint64_t ticks) const { return static_cast<double>(sched::Tracer::to_ns(cal_, ticks)) / 1e3; }
  static std::string fiber_args(uint64_t g, const char* more) {
    std::string s = "\"fiber\":" + std::to_string(g);
    if (more != nullptr) {
      s += ',';
      s += more;
    }
    return s;
  }

  std::FILE* f_;
  uint64_t pid_;
  sched::Tracer::Calibration cal_;
  bool first_ = true;
};

}  // namespace

Result<std::unique_ptr<TraceFile>> TraceFile::open(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "we");
  if (f == nullptr) {
    const int err = errno;
    return Error(std::error_code(err, std::generic_category()),
                 "TERN_TRACE: cannot write " + path + ": " + std::strerror(err));
  }
  std::unique_ptr<TraceFile> t(new TraceFile(path, f));
  std::lock_guard lk(pending().mu);
  pending().files.insert(t.get());
  return t;
}

TraceFile::TraceFile(std::string path, std::FILE* f) : path_(std::move(path)), f_(f) {}

TraceFile::~TraceFile() {
  {
    std::lock_guard lk(pending().mu);
    pending().files.erase(this);
  }
  std::lock_guard lk(mu_);
  if (f_ != nullptr) std::fclose(f_);
}

void TraceFile::attach(const sched::Tracer* tracer, uint64_t runtime_id) {
  std::lock_guard lk(mu_);
  tracer_ = tracer;
  runtime_id_ = runtime_id;
}

Result<void> TraceFile::write() {
  std::lock_guard lk(mu_);
  return write_locked();
}

Result<void> TraceFile::write_locked() {
  if (f_ == nullptr || tracer_ == nullptr) return {};
  const sched::Tracer::Calibration cal = tracer_->end_calibration();
  const sched::Tracer::Snapshot s = tracer_->snapshot();
  uint64_t last = 0;
  for (const auto& evs : s.per_p) {
    if (!evs.empty()) last = std::max(last, evs.back().ticks);
  }
  if (!s.outside.empty()) last = std::max(last, s.outside.back().ticks);

  Writer w(f_, runtime_id_, cal);
  w.begin();
  w.meta(0, "process_name", "tern runtime " + std::to_string(runtime_id_));
  for (size_t p = 0; p < s.per_p.size(); p++) w.meta(static_cast<int>(p), "thread_name", "P" + std::to_string(p));
  w.meta(kNoPTid, "thread_name", "no P");
  for (size_t p = 0; p < s.per_p.size(); p++) w.track(static_cast<int>(p), s.per_p[p], last);
  w.track(kNoPTid, s.outside, last);

  std::string other = std::string("\"clock\":\"") + (tracer_->tsc() ? "tsc" : "monotonic") + "\",\"dropped\":{";
  uint64_t dropped = s.outside_dropped;
  other += "\"no P\":" + std::to_string(s.outside_dropped);
  for (size_t p = 0; p < s.dropped.size(); p++) {
    other += ",\"P" + std::to_string(p) + "\":" + std::to_string(s.dropped[p]);
    dropped += s.dropped[p];
  }
  other += "},\"events_per_buffer\":" + std::to_string(sched::kTraceEventsPerP);
  w.end(other);
  const bool failed = w.failed();
  const int close_rc = std::fclose(f_);
  const int err = errno;
  f_ = nullptr;
  if (failed || close_rc != 0) {
    return Error(std::error_code(err != 0 ? err : EIO, std::generic_category()),
                 "TERN_TRACE: writing " + path_ + " failed: " + std::strerror(err != 0 ? err : EIO));
  }
  if (dropped > 0) {
    std::fprintf(stderr,
                 "tern: TERN_TRACE: %s: %" PRIu64
                 " buffers filled (each P records its first %zu events, then stops; see otherData)\n",
                 path_.c_str(), dropped, sched::kTraceEventsPerP);
  }
  return {};
}

}  // namespace tern::debug
