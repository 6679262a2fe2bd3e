// detail::WaitQueue (runtime/sync/wait_queue.h): FIFO, push_front, removal anywhere, detach_front, wake_chain.
#include "runtime/sync/wait_queue.h"

#include <gtest/gtest.h>

#include <vector>

namespace tern::detail {
namespace {

struct FakeWaiter {
  std::vector<int>* log;
  int id;
  struct Node* node = nullptr;
  void notify();
};

struct Node : WaitLink<Node> {
  int id = 0;
  FakeWaiter* waiter = nullptr;
};

// A notified waiter's frame may be gone at once: simulate that by scribbling over the node's link.
void FakeWaiter::notify() {
  log->push_back(id);
  if (node != nullptr) node->next = reinterpret_cast<Node*>(uintptr_t{0xdead});
}

std::vector<Node> make_nodes(int n) {
  std::vector<Node> v(n);
  for (int i = 0; i < n; i++) v[i].id = i;
  return v;
}

// Drains q and returns the ids in pop order.
std::vector<int> drain(WaitQueue<Node>& q) {
  std::vector<int> ids;
  while (Node* n = q.pop_front()) {
    EXPECT_FALSE(n->queued);
    EXPECT_EQ(n->next, nullptr);
    EXPECT_EQ(n->prev, nullptr);
    ids.push_back(n->id);
  }
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.front(), nullptr);
  return ids;
}

TEST(WaitQueue, EmptyQueue) {
  WaitQueue<Node> q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.front(), nullptr);
  EXPECT_EQ(q.pop_front(), nullptr);
  size_t taken = 99;
  EXPECT_EQ(q.detach_front(SIZE_MAX, &taken), nullptr);
  EXPECT_EQ(taken, 0u);
}

TEST(WaitQueue, PushBackIsFifo) {
  auto ns = make_nodes(5);
  WaitQueue<Node> q;
  for (auto& n : ns) {
    q.push_back(&n);
    EXPECT_TRUE(n.queued);
  }
  EXPECT_FALSE(q.empty());
  EXPECT_EQ(q.front(), &ns[0]);
  EXPECT_EQ(drain(q), (std::vector<int>{0, 1, 2, 3, 4}));
}

TEST(WaitQueue, PushFrontGoesAhead) {
  auto ns = make_nodes(4);
  WaitQueue<Node> q;
  q.push_front(&ns[0]);  // into an empty queue: both ends
  q.push_back(&ns[1]);
  q.push_front(&ns[2]);
  q.push_back(&ns[3]);
  EXPECT_EQ(q.front(), &ns[2]);
  EXPECT_EQ(drain(q), (std::vector<int>{2, 0, 1, 3}));
}

TEST(WaitQueue, RemoveMiddleHeadAndTail) {
  auto ns = make_nodes(5);
  WaitQueue<Node> q;
  for (auto& n : ns) q.push_back(&n);
  EXPECT_TRUE(q.remove(&ns[2]));  // middle
  EXPECT_FALSE(ns[2].queued);
  EXPECT_TRUE(q.remove(&ns[0]));  // head
  EXPECT_EQ(q.front(), &ns[1]);
  EXPECT_TRUE(q.remove(&ns[4]));  // tail
  // The tail must now be ns[3]: a push_back lands after it.
  q.push_back(&ns[2]);
  EXPECT_EQ(drain(q), (std::vector<int>{1, 3, 2}));
}

TEST(WaitQueue, RemoveOfAnUnqueuedNodeIsFalse) {
  auto ns = make_nodes(2);
  WaitQueue<Node> q;
  EXPECT_FALSE(q.remove(&ns[0])) << "never queued";
  q.push_back(&ns[0]);
  q.push_back(&ns[1]);
  EXPECT_TRUE(q.remove(&ns[0]));
  EXPECT_FALSE(q.remove(&ns[0])) << "removed twice";
  ASSERT_EQ(q.pop_front(), &ns[1]);
  EXPECT_FALSE(q.remove(&ns[1])) << "already popped (a waker took it)";
  EXPECT_TRUE(q.empty());
}

TEST(WaitQueue, RemovingTheOnlyNodeEmptiesTheQueue) {
  auto ns = make_nodes(2);
  WaitQueue<Node> q;
  q.push_back(&ns[0]);
  EXPECT_TRUE(q.remove(&ns[0]));
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.front(), nullptr);
  q.push_back(&ns[1]);  // head and tail both reset: no link to the removed node survives
  EXPECT_EQ(drain(q), (std::vector<int>{1}));
}

TEST(WaitQueue, NodeCanBeRequeuedAfterRemoval) {
  auto ns = make_nodes(3);
  WaitQueue<Node> q;
  for (auto& n : ns) q.push_back(&n);
  ASSERT_TRUE(q.remove(&ns[0]));
  q.push_back(&ns[0]);
  ASSERT_TRUE(q.remove(&ns[2]));
  q.push_front(&ns[2]);
  EXPECT_EQ(drain(q), (std::vector<int>{2, 1, 0}));
}

TEST(WaitQueue, DetachFrontTakesAtMostMaxInOrder) {
  auto ns = make_nodes(5);
  WaitQueue<Node> q;
  for (auto& n : ns) q.push_back(&n);
  size_t taken = 0;
  Node* chain = q.detach_front(3, &taken);
  EXPECT_EQ(taken, 3u);
  std::vector<int> ids;
  for (Node* n = chain; n != nullptr; n = n->next) {
    EXPECT_FALSE(n->queued);
    EXPECT_EQ(n->prev, nullptr);
    ids.push_back(n->id);
    ASSERT_LE(ids.size(), 3u) << "chain not terminated";
  }
  EXPECT_EQ(ids, (std::vector<int>{0, 1, 2}));
  EXPECT_FALSE(q.remove(&ns[1])) << "a detached node is no longer queued";
  EXPECT_EQ(q.front(), &ns[3]);
  EXPECT_EQ(ns[3].prev, nullptr);
  q.push_back(&ns[0]);
  EXPECT_EQ(drain(q), (std::vector<int>{3, 4, 0}));
}

TEST(WaitQueue, DetachFrontAllAndZero) {
  auto ns = make_nodes(3);
  WaitQueue<Node> q;
  for (auto& n : ns) q.push_back(&n);
  size_t taken = 99;
  EXPECT_EQ(q.detach_front(0, &taken), nullptr);
  EXPECT_EQ(taken, 0u);
  EXPECT_EQ(q.front(), &ns[0]);
  Node* chain = q.detach_front(SIZE_MAX, &taken);
  EXPECT_EQ(taken, 3u);
  EXPECT_EQ(chain, &ns[0]);
  EXPECT_EQ(ns[2].next, nullptr);
  EXPECT_TRUE(q.empty());
  q.push_back(&ns[1]);  // the tail was reset too
  EXPECT_EQ(drain(q), (std::vector<int>{1}));
}

// wake_chain notifies every node's waiter in chain order, reading each link before the notify (after which the node
// may be gone: FakeWaiter scribbles over it).
TEST(WaitQueue, WakeChainNotifiesInOrderAndReadsLinksFirst) {
  auto ns = make_nodes(4);
  std::vector<int> log;
  std::vector<FakeWaiter> ws;
  for (int i = 0; i < 4; i++) ws.push_back(FakeWaiter{&log, i, &ns[i]});
  WaitQueue<Node> q;
  for (int i = 0; i < 4; i++) {
    ns[i].waiter = &ws[i];
    q.push_back(&ns[i]);
  }
  Node* chain = q.detach_front(3);
  wake_chain(chain);
  EXPECT_EQ(log, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(q.front(), &ns[3]);
  wake_chain<Node>(nullptr);
  EXPECT_EQ(log.size(), 3u);
}

}  // namespace
}  // namespace tern::detail
