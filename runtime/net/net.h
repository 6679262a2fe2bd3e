// runtime/net/net.h: tern::net, TCP for fibers: listen/accept, dial, streams with deadlines, buffered I/O. One include
// for all.
//
//   #include "runtime/net/net.h"
//   rt.run([] {
//     auto l = tern::net::listen("127.0.0.1:0");
//     tern::go([&] { auto s = l->accept(); char b[64]; auto r = s->read(b, sizeof b); s->write_all(b, r.n); });
//     auto c = tern::net::dial(l->local_addr(), std::chrono::seconds(1));
//     c->write_all("hi", 2);
//   });
//
// Every operation must run on a fiber of a tern::Runtime whose poller is a netpoll backend (all Runtimes have one);
// on a plain thread it returns Errc::not_in_fiber rather than block the thread.
#pragma once

#include "runtime/net/address.h"
#include "runtime/net/buffered.h"
#include "runtime/net/dial.h"
#include "runtime/net/error.h"
#include "runtime/net/listener.h"
#include "runtime/net/resolve.h"
#include "runtime/net/stream.h"
