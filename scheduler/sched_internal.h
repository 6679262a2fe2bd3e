// scheduler/sched_internal.h: helpers the scheduler's .cc files share and nothing outside scheduler/ may use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tern::sched {

struct M;
enum class MAction : uint8_t;

// The running fiber's switch out to its M's scheduler context (scheduler/switch.cc); returns when it is resumed.
void leave_to_g0(M* m, MAction action);
struct P;
// Clears p's preemption mark if it has one (scheduler/switch.cc).
void clear_preempt(P* p);
// A fiber inside tern::blocking did what it may not (park: its M has no P to park it on): the process stops, saying
// what and where to look (scheduler/blocking.cc).
[[noreturn]] void blocking_misuse(const char* what);

// The stealing order's random state of P i in runtime `sched_id`: distinct per P and per runtime, never zero.
inline uint64_t p_rand_seed(int i, uint64_t sched_id) {
  const uint64_t s = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(i + 1) ^ sched_id;
  return s != 0 ? s : 1;
}

// The body of every M's thread (scheduler/sched.cc); startm (scheduler/idle.cc) starts threads on it.
void m_main(M* m);

// G records are allocated this many at a time and live until the runtime is destroyed.
inline constexpr size_t kGBlock = 64;
struct G;
// A block of kGBlock constructed G records: on node's jemalloc arena (alloc/arena.h) when `arenas` (nullptr when it
// cannot map memory), else from operator new. free_g_block destroys and frees one (the same `arenas`).
G* alloc_g_block(bool arenas, int node);
void free_g_block(G* block, bool arenas);

inline uint32_t xorshift(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return static_cast<uint32_t>(s >> 32);
}

// A well-mixed, nonzero xorshift state from a seed and a stream number (an M id): nearby seeds give unrelated streams.
inline uint64_t chaos_stream(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z != 0 ? z : 1;
}

}  // namespace tern::sched
