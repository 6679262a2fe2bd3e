// tern::net::Address (runtime/net/address.h): the forms Address::parse accepts, how to_string prints them, and what
// it rejects. No runtime: parsing makes no I/O.
#include <gtest/gtest.h>

#include "runtime/net/net.h"

namespace tern::net {
namespace {

TEST(Address, ParsesTheFormsItDocuments) {
  auto v4 = Address::parse("127.0.0.1:8080");
  ASSERT_TRUE(v4);
  EXPECT_FALSE(v4->is_v6());
  EXPECT_EQ(v4->port(), 8080);
  EXPECT_EQ(v4->to_string(), "127.0.0.1:8080");
  auto v6 = Address::parse("[::1]:443");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->is_v6());
  EXPECT_EQ(v6->to_string(), "[::1]:443");
  EXPECT_EQ(Address::parse(":80")->to_string(), "0.0.0.0:80");
  EXPECT_EQ(Address::parse("localhost:1")->to_string(), "127.0.0.1:1");
  EXPECT_EQ(Address::parse("[::]:0")->to_string(), "[::]:0");
}

TEST(Address, RejectsWhatItCannotParse) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "::1:80", "[::1]80", "[::1",
                          "example.com:80", "1.2.3:80", "1.2.3.4:8x"}) {
    auto a = Address::parse(bad);
    EXPECT_FALSE(a) << bad;
    EXPECT_EQ(a.error(), Errc::bad_address) << bad;
  }
}

}  // namespace
}  // namespace tern::net
