// tokio-http: an HTTP/1.1 server on Tokio answering what bench/echo.sh asks of tern-echo, written the way Tokio
// programs usually are: a multi-thread runtime, one task per connection, async reads and writes.
//
// Why: it is the Tokio peer of bench/echo.sh's per-core mode (issue 21), beside the epoll responder (the no-runtime
// limit, bench/peers/epoll_responder) and Go's net/http (bench/peers/go_http). It does the same work per request as
// tern-echo: a 16 KiB read buffer per connection, every complete request of one read parsed and answered into one
// output buffer that one write_all sends (so pipelined requests cost one write), TCP_NODELAY, the same limits (8 KiB
// of request line and headers, 1 MiB of body), the same error statuses and the same response header set.
//
//   bench/peers/tokio_http/build.sh build/bin      # offline, release: build/bin/tokio-http
//   tokio-http --listen 127.0.0.1:8083 --workers 1
//
// --workers N is the worker thread count of Tokio's multi-thread runtime (default: the CPUs this process may run on).
// N = 1 is the per-core mode: the same multi-thread runtime with one worker (not the current-thread runtime), so the
// scheduler is the same at every N. The accept loop is a task on the runtime too, so N threads do all the work (the
// main thread only waits for it).
//
// Routes, as tern-echo answers them: GET (or HEAD) /health -> 200 "OK\n" (text/plain); POST /echo -> 200 with the
// request body (application/octet-stream); another method on these paths -> 405 with Allow; any other path -> 404.
// Requests tern-echo refuses are refused alike, with the connection closed after the answer: malformed -> 400, headers
// over 8 KiB -> 431, body over 1 MiB -> 413, any Transfer-Encoding (chunked included) -> 501, HTTP/2+ -> 505.
//
// Written for Debian 12's rustc 1.63 and librust-tokio-dev 1.24 (no let-else, nothing newer from std).
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

// A connection's first read buffer, as tern-echo's: a whole wrk request, or a few dozen pipelined ones, per read.
const READ_BUF_BYTES: usize = 16 << 10;
// The output buffer's first capacity, as tern-echo's response batch: the headers of a few dozen small responses.
const OUT_BUF_BYTES: usize = 4 << 10;
// Request line plus header fields (431 beyond), as tern-echo's.
const MAX_HEADER_BYTES: usize = 8 << 10;
// Request body (413 beyond), tern-echo's default --max-body.
const MAX_BODY_BYTES: u64 = 1 << 20;
// Listen backlog (the kernel clamps it to net.core.somaxconn), as the epoll responder's: -c1000 connects all at once.
const BACKLOG: u32 = 4096;

const USAGE: &str = "usage: tokio-http [--listen HOST:PORT] [--workers N]
  --listen HOST:PORT  address to serve (default 127.0.0.1:8083)
  --workers N         Tokio worker threads (default: the CPUs this process may run on; 1 is the per-core mode)";

fn main() {
    let (listen, workers) = parse_flags();
    let addr = match listen.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => {
            eprintln!("tokio-http: bad --listen {}: not HOST:PORT", listen);
            process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_io()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio-http: runtime: {}", e);
            process::exit(1);
        }
    };
    let result = rt.block_on(async move {
        let listener = bind(addr)?;
        eprintln!(
            "tokio-http: listening on {} with {} worker(s)",
            listener.local_addr()?,
            workers
        );
        // On a worker, not on the thread that block_on runs on: the runtime's N threads do all the work.
        match tokio::spawn(accept_loop(listener)).await {
            Ok(()) => Ok(()),
            Err(e) => Err(io::Error::new(io::ErrorKind::Other, e)),
        }
    });
    if let Err(e) = result {
        eprintln!("tokio-http: {}: {}", listen, e);
        process::exit(1);
    }
}

// --listen and --workers, as "--flag value" or "--flag=value"; exits 2 on anything else.
fn parse_flags() -> (String, usize) {
    let mut listen = String::from("127.0.0.1:8083");
    let mut workers: Option<usize> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.find('=') {
            Some(i) if arg.starts_with("--") => (arg[..i].to_string(), Some(arg[i + 1..].to_string())),
            _ => (arg.clone(), None),
        };
        if name == "-h" || name == "--help" {
            println!("{}", USAGE);
            process::exit(0);
        }
        if name != "--listen" && name != "--workers" {
            bad_flag(&format!("unknown flag {}", arg));
        }
        let value = match inline.or_else(|| args.next()) {
            Some(v) => v,
            None => bad_flag(&format!("{} needs a value", name)),
        };
        if name == "--listen" {
            listen = value;
        } else {
            match value.parse::<usize>() {
                Ok(n) if n >= 1 => workers = Some(n),
                _ => bad_flag(&format!("bad --workers {}: want an integer >= 1", value)),
            }
        }
    }
    // available_parallelism counts the CPUs of this process's affinity mask on Linux, as GOMAXPROCS does.
    let workers = workers.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    (listen, workers)
}

fn bad_flag(msg: &str) -> ! {
    eprintln!("tokio-http: {}\n{}", msg, USAGE);
    process::exit(2);
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

async fn accept_loop(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    // A connection's errors (a reset, a write to a closed peer) end only that connection.
                    let _ = serve(stream).await;
                });
            }
            // Errors of one connection that died in the backlog, or running out of descriptors for a moment: tern-echo
            // and the epoll responder carry on too.
            Err(e) => eprintln!("tokio-http: accept: {}", e),
        }
    }
}

// One connection: read, answer every complete request read so far with one write, read again.
async fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf: Vec<u8> = Vec::with_capacity(READ_BUF_BYTES);
    let mut out: Vec<u8> = Vec::with_capacity(OUT_BUF_BYTES);
    // Bytes the request at the front of `buf` needs in all, once its headers are known (0: not known yet), so that a
    // large body arriving over many reads is not parsed again on each.
    let mut need = 0usize;
    loop {
        if buf.len() == buf.capacity() {
            // Only a request with a body grows the buffer: headers past 8 KiB are refused before 16 KiB are read.
            let want = need.max(2 * buf.capacity());
            buf.reserve(want - buf.len());
        }
        // Into the spare capacity, without zeroing it first.
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(()); // the client closed (an unfinished request is dropped)
        }
        if buf.len() < need {
            continue;
        }
        let mut pos = 0;
        let mut close = false;
        need = 0;
        while pos < buf.len() {
            match parse_request(&buf[pos..]) {
                Parse::Done(req, consumed) => {
                    respond(&req, &mut out);
                    pos += consumed;
                    if !req.keep_alive {
                        close = true;
                        break;
                    }
                }
                Parse::NeedMore(total) => {
                    need = total;
                    break;
                }
                Parse::Error(status) => {
                    add_error(status, &mut out);
                    close = true;
                    break;
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
        if close {
            return Ok(());
        }
        // The unanswered rest (a request still arriving) moves to the front.
        buf.drain(..pos);
        // A buffer grown for a large request is freed once it is answered, as tern-echo frees it; the 16 KiB stay.
        if buf.is_empty() && buf.capacity() > READ_BUF_BYTES {
            buf = Vec::with_capacity(READ_BUF_BYTES);
        }
        if out.capacity() > READ_BUF_BYTES {
            out = Vec::with_capacity(OUT_BUF_BYTES);
        }
    }
}

// ---- Responses -------------------------------------------------------------------------------------------------

fn respond(req: &Request, out: &mut Vec<u8>) {
    let head = req.method == b"HEAD";
    match req.path {
        b"/health" => {
            if req.method == b"GET" || head {
                add(out, req, 200, b"text/plain", b"OK\n", None);
            } else {
                add(
                    out,
                    req,
                    405,
                    b"text/plain",
                    b"Method Not Allowed\n",
                    Some(b"GET, HEAD"),
                );
            }
        }
        b"/echo" => {
            if req.method == b"POST" {
                add(out, req, 200, b"application/octet-stream", req.body, None);
            } else {
                add(out, req, 405, b"text/plain", b"Method Not Allowed\n", Some(b"POST"));
            }
        }
        _ => add(out, req, 404, b"text/plain", b"Not Found\n", None),
    }
}

// A response to `req`, with tern-echo's header set: Content-Type, Content-Length, Allow (a 405's), and Connection:
// "close" when the request ends the connection, "keep-alive" for an HTTP/1.0 request that keeps it. No body for HEAD.
fn add(out: &mut Vec<u8>, req: &Request, status: u16, content_type: &[u8], body: &[u8], allow: Option<&[u8]>) {
    let connection: &[u8] = if !req.keep_alive {
        b"close"
    } else if req.minor_version == 0 {
        b"keep-alive"
    } else {
        b""
    };
    add_head(out, status, content_type, body.len(), allow, connection);
    if req.method != b"HEAD" {
        out.extend_from_slice(body);
    }
}

// The answer to a request that could not be parsed; the connection closes after it. The body is the reason phrase.
fn add_error(status: u16, out: &mut Vec<u8>) {
    let phrase = reason_phrase(status);
    add_head(out, status, b"text/plain", phrase.len() + 1, None, b"close");
    out.extend_from_slice(phrase);
    out.push(b'\n');
}

fn add_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &[u8],
    length: usize,
    allow: Option<&[u8]>,
    connection: &[u8],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, status as u64);
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status));
    out.extend_from_slice(b"\r\nContent-Type: ");
    out.extend_from_slice(content_type);
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_decimal(out, length as u64);
    if let Some(allow) = allow {
        out.extend_from_slice(b"\r\nAllow: ");
        out.extend_from_slice(allow);
    }
    if !connection.is_empty() {
        out.extend_from_slice(b"\r\nConnection: ");
        out.extend_from_slice(connection);
    }
    out.extend_from_slice(b"\r\n\r\n");
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn reason_phrase(status: u16) -> &'static [u8] {
    match status {
        200 => b"OK",
        400 => b"Bad Request",
        404 => b"Not Found",
        405 => b"Method Not Allowed",
        413 => b"Content Too Large",
        431 => b"Request Header Fields Too Large",
        501 => b"Not Implemented",
        505 => b"HTTP Version Not Supported",
        _ => b"Unknown",
    }
}

// ---- Request parsing (the rules of tern-echo's tools/echo/http_parser.cc) ----------------------------------------

struct Request<'a> {
    method: &'a [u8],
    path: &'a [u8], // the target up to '?', in origin-form
    minor_version: u8,
    keep_alive: bool,
    body: &'a [u8],
}

enum Parse<'a> {
    // The request and the bytes it took (leading empty lines, headers and body).
    Done(Request<'a>, usize),
    // Not all of it yet: the bytes it needs in all once its headers are known, 0 before.
    NeedMore(usize),
    // The status to answer before closing.
    Error(u16),
}

// Parses the request at the front of `input`. Lines end with CRLF or a bare LF; empty lines before the request line
// are skipped; HTTP/1.0 and 1.x; bodies framed by Content-Length only; HTTP/1.1 needs exactly one Host field.
fn parse_request(input: &[u8]) -> Parse<'_> {
    // Headers are looked for within the limit only; not finding their end there is 431 once that much has arrived.
    let head = &input[..input.len().min(MAX_HEADER_BYTES)];
    let incomplete = || {
        if input.len() >= MAX_HEADER_BYTES {
            Parse::Error(431)
        } else {
            Parse::NeedMore(0)
        }
    };

    let mut pos = 0;
    loop {
        if head.get(pos) == Some(&b'\n') {
            pos += 1;
        } else if head.get(pos) == Some(&b'\r') && head.get(pos + 1) == Some(&b'\n') {
            pos += 2;
        } else {
            break;
        }
    }

    let (line, next) = match next_line(head, pos) {
        Some(l) => l,
        None => return incomplete(),
    };
    let mut parts = line.splitn(3, |&c| c == b' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v)) => (m, t, v),
        _ => return Parse::Error(400),
    };
    if !is_token(method) || !is_target(target) {
        return Parse::Error(400);
    }
    let (major, minor) = match parse_version(version) {
        Some(v) => v,
        None => return Parse::Error(400),
    };
    if major != 1 {
        return Parse::Error(505);
    }
    let target = match origin_form(target) {
        Some(t) => t,
        None => return Parse::Error(400),
    };
    pos = next;

    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    loop {
        let (line, next) = match next_line(head, pos) {
            Some(l) => l,
            None => return incomplete(),
        };
        pos = next;
        if line.is_empty() {
            break;
        }
        // Obsolete line folding and whitespace before the colon are both refused (no token then).
        let colon = match line.iter().position(|&c| c == b':') {
            Some(i) => i,
            None => return Parse::Error(400),
        };
        let name = &line[..colon];
        let value = trim_ows(&line[colon + 1..]);
        if !is_token(name) || !is_field_value(value) {
            return Parse::Error(400);
        }
        if name.eq_ignore_ascii_case(b"content-length") {
            let v = match parse_u64(value) {
                Some(v) => v,
                None => return Parse::Error(400),
            };
            if length.map_or(false, |l| l != v) {
                return Parse::Error(400);
            }
            length = Some(v);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&c| c == b',') {
                let option = trim_ows(option);
                conn_close |= option.eq_ignore_ascii_case(b"close");
                conn_keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    let header_end = pos;

    if transfer_encoding {
        return Parse::Error(501);
    }
    if minor >= 1 && hosts != 1 {
        return Parse::Error(400);
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY_BYTES {
        return Parse::Error(413);
    }
    let total = header_end + length as usize;
    if input.len() < total {
        return Parse::NeedMore(total);
    }
    let path = &target[..target.iter().position(|&c| c == b'?').unwrap_or(target.len())];
    let req = Request {
        method,
        path: if path.is_empty() { b"/" } else { path },
        minor_version: if minor >= 1 { 1 } else { 0 },
        keep_alive: if minor >= 1 {
            !conn_close
        } else {
            conn_keep_alive && !conn_close
        },
        body: &input[header_end..total],
    };
    Parse::Done(req, total)
}

// The line starting at `pos` without its CRLF or LF, and where the next starts; None until its end has arrived.
fn next_line(input: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let nl = pos + input[pos..].iter().position(|&c| c == b'\n')?;
    let end = if nl > pos && input[nl - 1] == b'\r' { nl - 1 } else { nl };
    Some((&input[pos..end], nl + 1))
}

// RFC 9110 section 5.6.2: methods and field names.
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

// Visible ASCII only.
fn is_target(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&c| c > 0x20 && c < 0x7f)
}

// Visible characters, obs-text, spaces and tabs; any other control character (a bare CR) is refused.
fn is_field_value(s: &[u8]) -> bool {
    s.iter().all(|&c| (c >= 0x20 || c == b'\t') && c != 0x7f)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let Some((&c, rest)) = s.split_first() {
        if c != b' ' && c != b'\t' {
            break;
        }
        s = rest;
    }
    while let Some((&c, rest)) = s.split_last() {
        if c != b' ' && c != b'\t' {
            break;
        }
        s = rest;
    }
    s
}

// "HTTP/1.1" -> (1, 1).
fn parse_version(v: &[u8]) -> Option<(u8, u8)> {
    if v.len() == 8 && v.starts_with(b"HTTP/") && v[5].is_ascii_digit() && v[6] == b'.' && v[7].is_ascii_digit() {
        Some((v[5] - b'0', v[7] - b'0'))
    } else {
        None
    }
}

// The target as the origin-form routes match (RFC 9112 section 3.2): "/path?query" or "*" as they are, the
// absolute-form "http://host/path?query" read as "/path?query" ("http://host" as "/"); None for anything else.
fn origin_form(target: &[u8]) -> Option<&[u8]> {
    if target[0] == b'/' || target == b"*" {
        return Some(target);
    }
    let sep = target.windows(3).position(|w| w == b"://")?;
    let scheme = &target[..sep];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let rest = &target[sep + 3..];
    match rest.iter().position(|&c| c == b'/' || c == b'?') {
        Some(0) => None, // no authority
        Some(i) => Some(&rest[i..]),
        None => Some(b"/"),
    }
}

// An unsigned decimal: no sign, spaces or suffix; None on anything else or on overflow.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}
