// tern::Error and tern::Result<T> (base/result.h): the error vocabulary every layer reports failures in.
#include "base/result.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>
#include <system_error>

#include "runtime/net/error.h"

namespace tern {
namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return make_error(std::string("not a digit: '") + c + "'");
  return c - '0';
}

TEST(Error, MessageIsTheTextGivenOrElseTheCodes) {
  EXPECT_EQ(Error(errno_code(ENOENT)).message(), std::generic_category().message(ENOENT));
  EXPECT_EQ(Error(errno_code(ENOENT), "no such thing").message(), "no such thing");
  EXPECT_EQ(errno_error(EMFILE, "eventfd").message(), "eventfd: " + std::generic_category().message(EMFILE));
}

TEST(Error, ComparesByCodeWithErrcErrorCodesAndNetErrc) {
  Error e = errno_error(ETIMEDOUT, "dial");
  EXPECT_TRUE(e == std::errc::timed_out);
  EXPECT_FALSE(e == std::errc::connection_refused);
  EXPECT_TRUE(e == errno_code(ETIMEDOUT));
  EXPECT_TRUE(e != errno_code(EINTR));
  Error n = net::Errc::not_open;
  EXPECT_TRUE(n == net::Errc::not_open);
  EXPECT_FALSE(n == net::Errc::eof);
  EXPECT_EQ(n.code().category().name(), std::string("tern.net"));
}

TEST(Error, WrapKeepsTheCodeAndPrefixesTheMessage) {
  Error e = errno_error(EADDRINUSE, "bind").wrap("listen 0.0.0.0:80");
  EXPECT_TRUE(e == std::errc::address_in_use);
  EXPECT_EQ(e.message(), "listen 0.0.0.0:80: bind: " + std::generic_category().message(EADDRINUSE));
}

TEST(Result, HoldsAValueOrAnError) {
  Result<int> ok = parse_digit('7');
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 7);
  Result<int> bad = parse_digit('x');
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error() == std::errc::invalid_argument);
  EXPECT_EQ(bad.error().message(), "not a digit: 'x'");
}

TEST(Result, ConvertsFromErrorCodesAndTheirEnums) {
  Result<std::string> a = errno_code(ECONNRESET);
  EXPECT_TRUE(!a && a.error() == std::errc::connection_reset);
  Result<std::string> b = net::Errc::bad_address;
  EXPECT_TRUE(!b && b.error() == net::Errc::bad_address);
  Result<void> c = net::Errc::not_in_fiber;
  EXPECT_TRUE(!c && c.error() == net::Errc::not_in_fiber);
  Result<void> d;
  EXPECT_TRUE(d.ok());
}

}  // namespace
}  // namespace tern
