// runtime/net/buffered.cc: BufReader and BufWriter.
#include "runtime/net/buffered.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstring>

namespace tern::net {

BufReader::BufReader(Stream& s, size_t size, size_t max_size) : s_(&s), max_(std::max(max_size, kMinSize)) {
  cap_ = std::clamp(size, kMinSize, max_);
  buf_.reset(new char[cap_]);
}

std::error_code BufReader::fill() {
  if (r_ == w_) {
    r_ = w_ = 0;
  } else if (w_ == cap_ && r_ > 0) {
    // Moves only the unconsumed tail of a full buffer, which is less than a line: cheaper than growing.
    std::memmove(buf_.get(), buf_.get() + r_, w_ - r_);
    w_ -= r_;
    r_ = 0;
  }
  if (w_ == cap_) {
    if (cap_ == max_) return Errc::too_long;
    size_t cap = std::min(cap_ * 2, max_);
    std::unique_ptr<char[]> bigger(new char[cap]);
    std::memcpy(bigger.get(), buf_.get(), w_);
    buf_ = std::move(bigger);
    cap_ = cap;
  }
  IoResult r = s_->read(buf_.get() + w_, cap_ - w_);
  if (!r) return r.ec;
  if (r.n == 0) return Errc::eof;
  w_ += r.n;
  return {};
}

BufResult BufReader::read_until(char delim) {
  size_t scanned = 0;  // of the unconsumed bytes, those already searched
  for (;;) {
    const char* start = buf_.get() + r_;
    if (const void* p = std::memchr(start + scanned, delim, w_ - r_ - scanned)) {
      size_t n = static_cast<const char*>(p) - start + 1;
      r_ += n;
      return {{start, n}, {}};
    }
    scanned = w_ - r_;
    if (scanned >= max_) return {{}, Errc::too_long};
    std::error_code ec = fill();
    if (ec == Errc::eof) {
      // The stream ended inside a line: hand over what there is, so the next call reports a clean end.
      std::string_view rest(buf_.get() + r_, w_ - r_);
      r_ = w_;
      return {rest, ec};
    }
    if (ec) return {{}, ec};
  }
}

BufResult BufReader::read_line() {
  BufResult r = read_until('\n');
  if (r) {
    r.data.remove_suffix(1);
    if (!r.data.empty() && r.data.back() == '\r') r.data.remove_suffix(1);
  }
  return r;
}

BufResult BufReader::peek(size_t n) {
  if (n > max_) return {{}, Errc::too_long};
  while (w_ - r_ < n) {
    // fill() grows the buffer up to max_ >= n, and compacts it first, so this ends with n bytes or an error.
    if (std::error_code ec = fill()) {
      if (ec == Errc::eof) return {{buf_.get() + r_, w_ - r_}, ec};
      return {{}, ec};
    }
  }
  return {{buf_.get() + r_, n}, {}};
}

IoResult BufReader::read(void* buf, size_t len) {
  if (len == 0) return {};
  if (r_ == w_) {
    // Nothing buffered and a read at least as large as the buffer: copying through it would only cost.
    if (len >= cap_) return s_->read(buf, len);
    std::error_code ec = fill();
    if (ec == Errc::eof) return {};
    if (ec) return {0, ec};
  }
  size_t n = std::min(len, w_ - r_);
  std::memcpy(buf, buf_.get() + r_, n);
  r_ += n;
  return {n, {}};
}

BufWriter::BufWriter(Stream& s, size_t size) : s_(&s), cap_(std::max(size, BufReader::kMinSize)) {
  buf_.reset(new char[cap_]);
}

IoResult BufWriter::write(const void* buf, size_t len) {
  if (err_) return {0, err_};
  if (len <= cap_ - used_) {
    std::memcpy(buf_.get() + used_, buf, len);
    used_ += len;
    return {len, {}};
  }
  // One gathered send of what is buffered and all of this, rather than topping the buffer up and sending twice.
  iovec iov[2] = {{buf_.get(), used_}, {const_cast<void*>(buf), len}};
  IoResult r = s_->writev(iov, 2);
  size_t held = used_;
  used_ = 0;
  if (!r) {
    err_ = r.ec;
    return {r.n > held ? r.n - held : 0, err_};
  }
  return {len, {}};
}

std::error_code BufWriter::flush() {
  if (err_) return err_;
  if (used_ == 0) return {};
  IoResult r = s_->write_all(buf_.get(), used_);
  used_ = 0;
  if (!r) err_ = r.ec;
  return err_;
}

}  // namespace tern::net
