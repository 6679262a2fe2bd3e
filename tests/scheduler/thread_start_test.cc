// An M whose thread cannot be started: the runtime keeps going on the threads it has and retries with back-off, so
// work queued while no M could start still runs once one can. The limit is real: a cgroup v1 pids controller whose
// pids.max leaves room for the runtime's monitor thread and not for its first M.
#include <gtest/gtest.h>

#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <semaphore>
#include <string>
#include <thread>
#include <vector>

#include "scheduler/sched.h"

namespace tern {
namespace {

const char* const kPidsRoot = "/sys/fs/cgroup/pids";

// The child is this test binary again, started with the cgroup's path in this variable: it runs child_body() before
// any test, with no thread but its own (a fork of the multi-threaded test process would inherit locks held by
// threads that do not exist in the child, and ThreadSanitizer refuses to run such a child).
const char* const kChildEnv = "TERN_THREAD_START_CHILD";

extern "C" char** environ;

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  f.flush();
  return static_cast<bool>(f);
}

int threads_of_this_process() {
  int n = 0;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
    closedir(d);
  }
  return n;
}

// Times the cgroup refused a new task (the "max" line of pids.events).
long refusals(const std::string& cg) {
  std::ifstream f(cg + "/pids.events");
  std::string key;
  long n = 0;
  while (f >> key >> n) {
    if (key == "max") return n;
  }
  return 0;
}

// Runs in the death-test child: joins the parent's cgroup with room for exactly one more thread (the monitor), starts
// a fiber, and exits 0 if it ran after at least one failed thread start, 3 if it never ran, 4 if no start failed.
[[noreturn]] void child_body(const std::string& cg) {
  alarm(20);  // a stranded fiber must end the child, not the test run
  if (!write_file(cg + "/cgroup.procs", std::to_string(getpid()))) _exit(5);
  // ThreadSanitizer starts a background thread of its own at the process's first thread creation: let that happen
  // now, so that the thread counted below is the only room left.
  std::thread([] {}).join();
  if (!write_file(cg + "/pids.max", std::to_string(threads_of_this_process() + 1))) _exit(5);
  std::binary_semaphore ran(0);
  sched::SchedOptions opts;
  opts.procs = 1;
  sched::Sched s(opts);
  s.go([&] { ran.release(); });  // its wakep() cannot start an M: no thread left
  const bool ok = ran.try_acquire_for(std::chrono::seconds(10));
  const sched::SchedStats st = s.stats();
  std::fprintf(stderr, "ran=%d thread_start_failures=%llu\n", ok,
               static_cast<unsigned long long>(st.thread_start_failures));
  if (!ok) _exit(3);  // (the runtime's threads are stuck; do not wait for them)
  _exit(st.thread_start_failures > 0 ? 0 : 4);
}

// A global test environment's SetUp runs inside RUN_ALL_TESTS, after every static initializer (the runtime's
// included) and before any test: the child does its work there and exits.
class ChildEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (const char* cg = std::getenv(kChildEnv)) child_body(cg);
  }
};
[[maybe_unused]] ::testing::Environment* const child_environment =
    ::testing::AddGlobalTestEnvironment(new ChildEnvironment);

TEST(ThreadStart, WorkQueuedWhileNoThreadCanStartRunsOnceOneCan) {
  if (geteuid() != 0 || access(kPidsRoot, W_OK) != 0) {
    GTEST_SKIP() << "needs root and a writable cgroup v1 pids controller at " << kPidsRoot;
  }
  const std::string cg = std::string(kPidsRoot) + "/tern-thread-start-" + std::to_string(getpid());
  rmdir(cg.c_str());
  ASSERT_EQ(mkdir(cg.c_str(), 0755), 0) << cg;
  // Lift the limit once the child has been refused a thread (or after a while, so a child that never hits it ends).
  std::atomic<bool> stop{false};
  std::thread lifter([&] {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!stop.load() && refusals(cg) == 0 && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the child's first retry comes 1 ms after
    write_file(cg + "/pids.max", "max");
  });
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; e++) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kChildEnv) + "=" + cg);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  char exe[] = "/proc/self/exe";
  char* argv[] = {exe, nullptr};
  pid_t child = -1;
  ASSERT_EQ(posix_spawn(&child, exe, nullptr, nullptr, argv, envp.data()), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "child: "
      << (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                            : "signal " + std::to_string(WTERMSIG(status)))
      << " (3: the fiber never ran; 4: no thread start failed; 5: could not join the cgroup)";
  stop = true;
  lifter.join();
  EXPECT_GT(refusals(cg), 0) << "the cgroup never refused a thread: the test did not exercise a failed start";
  rmdir(cg.c_str());
}

}  // namespace
}  // namespace tern
