// runtime/debug/trace_file.h: TERN_TRACE's output: a runtime's event trace (scheduler/trace.h) written as Chrome
// trace JSON, which ui.perfetto.dev and chrome://tracing open.
//
//   TERN_TRACE=/tmp/skynet.json build/bin/tern-skynet     # then open the file in ui.perfetto.dev
//
// The file is created (truncated) when the runtime starts, so a path that cannot be written is an error from
// Runtime::create before anything runs, not a trace lost at the end. It is written when the runtime is destroyed,
// after its threads stopped; if the process exits first (std::exit, or main returning while a Runtime still lives in
// a static), an exit handler writes what the buffers hold by then. A process killed by a signal writes nothing.
//
// The JSON: {"traceEvents": [...], "displayTimeUnit": "ns", "otherData": {...}}. Each P is a thread track ("P0",
// "P1", ...; events of threads without a P on "no P"), the runtime a process ("tern runtime N"). Every event has
// name, ph, ts (microseconds since the runtime started), pid, tid and args:
//   run         ph X (with dur): a fiber running on the P; args: fiber, end ("park", "yield", "exit", "running"),
//               reason (for a park)
//   park        ph i: the fiber parked; args: fiber, reason ("chan receive", "sleep", ...: scheduler/wait_reason.h)
//   spawn       ph i: args: fiber (the new one)
//   ready       ph i: args: fiber, by ("timer" when a timer fired)
//   steal       ph i: args: fibers (how many), from_p, rescue (taken from a stalled P by rescue_stalled)
//   poll        ph i: a poll of the network that found fibers; args: fibers, blocking
//   resize      ph i: set_procs; args: from, to
//   controller  ph i: the controller changed the count; args: from, to, cause ("load", "limits", "rollback")
// plus ph M metadata naming the tracks. otherData holds the clock used and, per buffer, the events dropped (each
// holds kTraceEventsPerP; the trace covers the first events of each P, and a P whose buffer filled stops recording:
// its count is then 1; the no-P buffer, shared, counts every drop).
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"
#include "scheduler/trace.h"

namespace tern::debug {

class TraceFile {
 public:
  // Creates or truncates `path` for writing; an error (with the path and errno's reason) if it cannot.
  static Result<std::unique_ptr<TraceFile>> open(const std::string& path);
  ~TraceFile();
  TraceFile(const TraceFile&) = delete;
  TraceFile& operator=(const TraceFile&) = delete;

  // The trace to write and the runtime's id (the JSON's pid). Until attached, write() writes nothing.
  void attach(const sched::Tracer* tracer, uint64_t runtime_id);
  // Writes what the tracer holds now and closes the file; later calls do nothing. Safe while the runtime still runs
  // (each buffer is read up to the count it had published).
  Result<void> write();

  const std::string& path() const { return path_; }

 private:
  TraceFile(std::string path, std::FILE* f);
  Result<void> write_locked();

  std::mutex mu_;
  std::string path_;
  std::FILE* f_ = nullptr;  // nullptr once written
  const sched::Tracer* tracer_ = nullptr;
  uint64_t runtime_id_ = 0;
};

}  // namespace tern::debug
