#!/usr/bin/python3
"""bench/soak.py: the soak's client (bench/soak.sh starts the server and this).

Holds --connections keep-alive connections to tern-echo for --duration seconds, each sending, one request at a time,
a random mix of GET /health, POST /echo with a random body of random size (the answer must be the same bytes) and
GET /mix with a random body size (the answer must be that many 'x'). Every answer is checked: status, length and
body byte for byte. Beside them a hostile trickle: malformed requests (each must get its 4xx and a close) and peers
that reset in the middle of sending a body. Prints one JSON object: counts by outcome, requests per second.

Outcomes: ok; corrupt (a 200 whose body or length is wrong: must be 0); lost (no complete answer within --timeout,
or the connection closed or reset under a request the server had no reason to refuse: must be 0); limited (a 503 or
a close the server announced, from a deliberate limit); hostile_ok / hostile_bad (a malformed request answered as it
should be, or not).
"""
import argparse
import asyncio
import json
import os
import random
import socket
import struct
import sys
import time

MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /health\r\n\r\n",
    b"\x00\x01\x02\x03 / HTTP/1.1\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /health HTTP/1.1\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n",
    b"GET ftp://h/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /mix?bytes=-1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /work?us=99999999999999999999 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
]


class Stats:
    def __init__(self):
        self.c = {"ok": 0, "corrupt": 0, "lost": 0, "limited": 0, "hostile_ok": 0, "hostile_bad": 0, "reconnects": 0,
                  "resets_sent": 0, "connect_errors": 0, "bytes_checked": 0}
        self.examples = []

    def bad(self, kind, what):
        self.c[kind] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{kind}: {what}")


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    body = await reader.readexactly(length) if length else b""
    return status, body, close


async def client(host, port, deadline, timeout, rng, st):
    reader = writer = None
    while time.monotonic() < deadline:
        if writer is None:
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            except (OSError, asyncio.TimeoutError) as e:
                st.bad("connect_errors", repr(e))
                await asyncio.sleep(0.1)
                continue
        r = rng.random()
        if r < 0.4:
            req, want = b"GET /health HTTP/1.1\r\nHost: soak\r\n\r\n", b"OK\n"
        elif r < 0.8:
            body = os.urandom(rng.choice((0, 1, 100, 1000, 4096, 5000, 16384, 65536)))
            req = b"POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n" % len(body) + body
            want = body
        else:
            n = rng.choice((0, 10, 3000, 20000))
            req = b"GET /mix?bytes=%d&cpu_us=%d HTTP/1.1\r\nHost: soak\r\n\r\n" % (n, rng.choice((0, 50)))
            want = b"x" * n
        try:
            writer.write(req)
            status, body, close = await asyncio.wait_for(read_response(reader), timeout)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, asyncio.LimitOverrunError, ValueError,
                IndexError) as e:
            if time.monotonic() < deadline:
                st.bad("lost", f"{req[:40]!r}: {e!r}")
            writer.close()
            writer = None
            continue
        if status == 503:
            st.c["limited"] += 1
        elif status != 200 or body != want:
            st.bad("corrupt", f"{req[:40]!r}: status {status}, {len(body)} bytes, wanted {len(want)}")
        else:
            st.c["ok"] += 1
            st.c["bytes_checked"] += len(body)
        if close:
            st.c["reconnects"] += 1
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def hostile(host, port, deadline, rng, st):
    """One malformed request or one reset mid-body every 50 ms."""
    i = 0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        i += 1
        try:
            if i % 4 == 0:
                # A peer that resets while sending a body: the server must drop it and lose nothing else.
                s = socket.create_connection((host, port), timeout=2)
                s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"y" * 30000)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
                st.c["resets_sent"] += 1
                continue
            req = MALFORMED[rng.randrange(len(MALFORMED))]
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
            writer.write(req)
            try:
                status, _, _ = await asyncio.wait_for(read_response(reader), 5)
                ok = 400 <= status < 600 and status != 503
            except asyncio.IncompleteReadError:
                ok = False
            if ok:
                st.c["hostile_ok"] += 1
            else:
                st.bad("hostile_bad", f"{req[:40]!r}")
            writer.close()
        except (OSError, asyncio.TimeoutError) as e:
            st.bad("hostile_bad", repr(e))


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--connections", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--timeout", type=float, default=10)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    st = Stats()
    start = time.monotonic()
    deadline = start + a.duration
    tasks = []
    for i in range(a.connections):
        tasks.append(asyncio.create_task(client(a.host, a.port, deadline, a.timeout, random.Random(a.seed + i), st)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # a ramp: the listen backlog is not the thing under test
    tasks.append(asyncio.create_task(hostile(a.host, a.port, deadline, random.Random(a.seed - 1), st)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    out = dict(st.c)
    out["seconds"] = round(elapsed, 1)
    out["requests_per_second"] = round((st.c["ok"] + st.c["limited"]) / elapsed, 1)
    out["connections"] = a.connections
    out["examples"] = st.examples
    json.dump(out, sys.stdout)
    print()
    return 0 if st.c["corrupt"] == 0 and st.c["lost"] == 0 and st.c["hostile_bad"] == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
