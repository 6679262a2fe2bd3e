// runtime/net/buffered.h: BufReader and BufWriter, buffered I/O over a Stream (Go's bufio), so that a protocol is read
// by lines or delimiters and written in whole messages rather than framed by hand.
//
//   tern::net::BufReader in(conn);
//   tern::net::BufWriter out(conn);
//   for (;;) {
//     tern::net::BufResult line = in.read_line();      // "SET k v" (LF or CRLF stripped)
//     if (line.ec == tern::net::Errc::eof) break;      // the peer is done (line.data: an unterminated last line)
//     if (!line) return line.ec;                       // too_long, timed_out, closed, ...
//     out.write("OK\r\n");                             // buffered
//     if (in.buffered() == 0 && out.flush()) break;    // one send per batch of pipelined requests
//   }
//
// Bounded: a reader's buffer starts at `size` bytes and grows, only as a line or a peek needs it, up to `max_size`; a
// line (with its terminator) or a peek longer than that is Errc::too_long, never a larger buffer. Views the reader
// returns point into its buffer and are valid until the next call on the reader. Reads wait on the Stream, with its
// read deadline (Stream::set_read_deadline) and its Errc::closed; on an error other than the end of stream, nothing is
// consumed, so a read_line() that timed out can simply be called again.
//
// A BufWriter does not flush when destroyed (a destructor can report no failure, and a peer waiting for bytes the
// program believed sent is worse than a visible bug): call flush(). Its first failed send is sticky: every later
// write() and flush() returns that error, because the bytes it held may have gone out in part and anything sent after
// them would arrive out of order.
//
// Both hold a reference to the Stream, which must outlive them (and not be moved meanwhile). Like the Stream, one
// fiber reads and one writes; a BufReader and a BufWriter over one stream may be used by two fibers at once.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string_view>
#include <system_error>

#include "runtime/net/error.h"
#include "runtime/net/stream.h"

namespace tern::net {

// Bytes viewed in a BufReader's buffer (valid until the next call on it), beside the error that stopped the read.
// Errc::eof with data: the stream ended inside a line (or before a peek's n bytes), and data holds what there was.
struct [[nodiscard]] BufResult {
  std::string_view data;
  std::error_code ec;

  explicit operator bool() const { return !ec; }
};

class BufReader {
 public:
  // 4 KiB: a request line or a small message in one read, and one io_uring provided buffer. 64 KiB: Go's
  // bufio.MaxScanTokenSize, well above any line-based protocol's line, and a bound on what a peer can make a
  // connection hold. kMinSize keeps a buffer of a few bytes from turning every read into a system call.
  static constexpr size_t kDefaultSize = 4 << 10;
  static constexpr size_t kDefaultMaxSize = 64 << 10;
  static constexpr size_t kMinSize = 16;

  // max_size is raised to at least kMinSize, and size kept within [kMinSize, max_size]: the maximum is what bounds
  // the memory a peer can make the connection hold, so it wins.
  explicit BufReader(Stream& s, size_t size = kDefaultSize, size_t max_size = kDefaultMaxSize);
  BufReader(const BufReader&) = delete;
  BufReader& operator=(const BufReader&) = delete;

  // The bytes up to and including the next `delim`. Errc::too_long if max_size bytes arrive without it (they stay
  // buffered: read() them, or close the stream); Errc::eof at the end of the stream (with the bytes before it).
  BufResult read_until(char delim);
  // The next line without its terminator ("\n", or "\r\n"), as read_until('\n').
  BufResult read_line();
  // The next n bytes without consuming them, waiting until they have arrived. Errc::too_long if n > max_size
  // (nothing is read); Errc::eof with fewer bytes if the stream ends first.
  BufResult peek(size_t n);
  // Reads up to len bytes, from the buffer if it holds any, else from the stream (straight into buf when len is at
  // least the buffer's size). As Stream::read: n == 0 without error is the end of stream.
  IoResult read(void* buf, size_t len);

  // Bytes received and not yet consumed: a server that sees 0 here has answered every pipelined request.
  size_t buffered() const { return w_ - r_; }
  size_t max_size() const { return max_; }

 private:
  // Reads from the stream once into the free end of the buffer, compacting or growing it (up to max_size) first if it
  // is full. Errc::eof at the end of the stream.
  std::error_code fill();

  Stream* s_;
  size_t max_;
  size_t cap_;
  std::unique_ptr<char[]> buf_;
  size_t r_ = 0;  // [r_, w_) received and not consumed
  size_t w_ = 0;
};

class BufWriter {
 public:
  // 4 KiB: a typical response batch in one send; writes that do not fit go out with what is buffered in one writev.
  static constexpr size_t kDefaultSize = 4 << 10;

  // size is raised to at least BufReader::kMinSize.
  explicit BufWriter(Stream& s, size_t size = kDefaultSize);
  BufWriter(const BufWriter&) = delete;
  BufWriter& operator=(const BufWriter&) = delete;
  // Drops what is buffered: flush() first (see the file comment).
  ~BufWriter() = default;

  // Buffers len bytes; when they do not fit, sends the buffer and them together. n: how many of them were taken
  // (all, without an error).
  IoResult write(const void* buf, size_t len);
  IoResult write(std::string_view s) { return write(s.data(), s.size()); }
  // Sends everything buffered, waiting as the stream's write deadline allows.
  std::error_code flush();

  size_t buffered() const { return used_; }
  // The sticky error of a failed send, or none.
  std::error_code error() const { return err_; }

 private:
  Stream* s_;
  std::unique_ptr<char[]> buf_;
  size_t cap_;
  size_t used_ = 0;
  std::error_code err_;
};

}  // namespace tern::net
