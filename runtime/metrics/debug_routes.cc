// runtime/metrics/debug_routes.cc: the Runtime's debug routes.
#include "runtime/metrics/debug_routes.h"

#include "runtime/debug/fibers.h"

#include <nlohmann/json.hpp>

#include "runtime/metrics/metrics.h"
#include "runtime/runtime.h"

namespace tern::metrics {

namespace {

HttpResponse text(int status, std::string body) {
  return HttpResponse{status, "text/plain; charset=utf-8", std::move(body)};
}

// An error that may carry request data (a policy name, say): anything that could be markup, a header break or an
// escape of its own is written as \xHH, so nothing a client sent comes back as it sent it.
HttpResponse refused(std::string message) {
  std::string out;
  for (unsigned char c : message) {
    if (c < 0x20 || c >= 0x7f || c == '<' || c == '>' || c == '&' || c == '\\') {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return text(400, "bad request: " + out + "\n");
}

nlohmann::json sched_json(Runtime& rt) {
  const sched::SchedStats st = rt.stats();
  const controller::ControllerStats cs = rt.controller_stats();
  nlohmann::json j;
  j["procs"] = st.procs;
  j["idle_procs"] = st.idle_procs;
  j["threads"] = st.threads;
  j["idle_threads"] = st.idle_threads;
  j["spinning"] = st.spinning;
  j["polling"] = st.polling;
  j["runnable"] = st.runnable;
  j["global_runnable"] = st.global_runnable;
  j["live_fibers"] = st.live;
  j["spawned"] = st.spawned;
  j["switches"] = st.switches;
  j["steals"] = st.steals;
  j["steals_remote"] = st.steals_remote;
  j["long_running"] = st.long_running;
  j["policy"] = cs.policy;
  j["controller_target"] = cs.target;
  nlohmann::json ps = nlohmann::json::array();
  for (const auto& p : st.per_p) {
    nlohmann::json e;
    e["id"] = p.id;
    e["state"] = p.status;
    e["m"] = p.m >= 0 ? nlohmann::json(p.m) : nlohmann::json(nullptr);
    e["runq"] = p.runq;
    e["switches"] = p.switches;
    e["busy_s"] = static_cast<double>(p.busy_ns) * 1e-9;
    e["pu"] = p.pu >= 0 ? nlohmann::json(p.pu) : nlohmann::json(nullptr);  // null: not bound (--numa none)
    e["node"] = p.node;
    e["fiber"] = p.fiber != 0 ? nlohmann::json(p.fiber) : nlohmann::json(nullptr);
    // A lower bound, to the monitor's 10 ms period (sched.h, SchedStats::Proc::running_ns); null: not known yet.
    e["running_s"] =
        p.fiber != 0 && p.running_ns >= 0 ? nlohmann::json(static_cast<double>(p.running_ns) * 1e-9) : nullptr;
    ps.push_back(std::move(e));
  }
  j["p"] = std::move(ps);
  return j;
}

}  // namespace

void add_runtime_routes(DebugServer& server, Runtime& rt) {
  server.handle("GET", "/metrics", [](const HttpRequest&) {
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", to_prometheus(snapshot())};
  });
  server.handle("GET", "/debug/sched", [&rt](const HttpRequest&) {
    return HttpResponse{200, "application/json", sched_json(rt).dump(2) + "\n"};
  });
  server.handle("GET", "/debug/fibers", [&rt](const HttpRequest& req) {
    auto it = req.query.find("format");
    const std::string format = it == req.query.end() ? "json" : it->second;
    if (format == "text") return HttpResponse{200, "text/plain; charset=utf-8", debug::fibers_text(rt.dump_fibers())};
    if (format != "json") return text(400, "bad request: format must be json or text\n");
    return HttpResponse{200, "application/json", debug::fibers_json(rt.dump_fibers()) + "\n"};
  });
  server.handle(
      "POST", "/debug/procs",
      [&rt](const HttpRequest& req) {
        auto it = req.query.find("n");
        if (it == req.query.end()) return text(400, "bad request: expected ?n=N\n");
        auto n = parse_procs(it->second);
        if (!n || *n == 0) return text(400, "bad request: n must be an integer from 1 to 1024\n");
        if (*n > sched::kMaxProcs) return text(400, "bad request: n must be an integer from 1 to 1024\n");
        const int before = rt.procs();
        rt.set_procs(*n);
        return text(200,
                    "procs " + std::to_string(before) + " -> " + std::to_string(rt.procs()) + " (policy static)\n");
      },
      /*admin=*/true);
  server.handle(
      "POST", "/debug/policy",
      [&rt](const HttpRequest& req) {
        auto it = req.query.find("name");
        if (it == req.query.end()) return text(400, "bad request: expected ?name=POLICY\n");
        if (auto r = rt.set_policy(it->second); !r) return refused(r.error().message());
        return text(200, "policy " + it->second + "\n");
      },
      /*admin=*/true);
}

}  // namespace tern::metrics
