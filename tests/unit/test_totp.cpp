#include <catch2/catch.hpp>
#include <stdexcept>

#include "sync/upstream_session.hpp"

using knosc::sync::base32_decode;
using knosc::sync::totp_code;

namespace {

std::vector<std::uint8_t> bytes(std::string_view s) {
  return {s.begin(), s.end()};
}

// The RFC 6238 SHA-1 seed "12345678901234567890" in base32.
const std::string kRfcSecret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

}  // namespace

TEST_CASE("totp_code: RFC 6238 SHA-1 test vectors (last six digits)", "[totp]") {
  // Appendix B lists 8-digit codes; Knosc uses 6, which are the same value modulo 10^6.
  CHECK(totp_code(kRfcSecret, 59) == "287082");
  CHECK(totp_code(kRfcSecret, 1111111109) == "081804");
  CHECK(totp_code(kRfcSecret, 1111111111) == "050471");
  CHECK(totp_code(kRfcSecret, 1234567890) == "005924");
  CHECK(totp_code(kRfcSecret, 2000000000) == "279037");
  CHECK(totp_code(kRfcSecret, 20000000000) == "353130");
}

TEST_CASE("totp_code: codes hold for a 30 s step and keep leading zeros", "[totp]") {
  CHECK(totp_code(kRfcSecret, 1111111110) == totp_code(kRfcSecret, 1111111119));
  CHECK(totp_code(kRfcSecret, 1234567890).size() == 6);
  CHECK(totp_code(kRfcSecret, 30) != totp_code(kRfcSecret, 60));
  // Authenticator apps show secrets in lower case and in groups of four.
  CHECK(totp_code("gezd gnbv gy3t qojq gezd gnbv gy3t qojq", 59) == "287082");
}

TEST_CASE("totp_code: an unusable secret is refused", "[totp]") {
  CHECK_THROWS_AS(totp_code("", 59), std::invalid_argument);
  CHECK_THROWS_AS(totp_code("not base32!", 59), std::invalid_argument);
  CHECK_THROWS_AS(totp_code("GEZDGNBV1", 59), std::invalid_argument);  // '1' is not in the alphabet
}

TEST_CASE("base32_decode: RFC 4648 vectors", "[totp][base32]") {
  CHECK(base32_decode("") == bytes(""));
  CHECK(base32_decode("MY======") == bytes("f"));
  CHECK(base32_decode("MZXQ====") == bytes("fo"));
  CHECK(base32_decode("MZXW6===") == bytes("foo"));
  CHECK(base32_decode("MZXW6YQ=") == bytes("foob"));
  CHECK(base32_decode("MZXW6YTB") == bytes("fooba"));
  CHECK(base32_decode("MZXW6YTBOI======") == bytes("foobar"));
  CHECK(base32_decode(kRfcSecret) == bytes("12345678901234567890"));
}

TEST_CASE("base32_decode: padding, spaces and case are forgiven", "[totp][base32]") {
  CHECK(base32_decode("MZXW6YTBOI") == bytes("foobar"));  // padding left out
  CHECK(base32_decode("mzxw6ytboi======") == bytes("foobar"));
  CHECK(base32_decode("MzXw 6YtB oI") == bytes("foobar"));
  CHECK(base32_decode("   ") == bytes(""));
  CHECK(base32_decode("======") == bytes(""));
}

TEST_CASE("base32_decode: foreign characters and impossible lengths are rejected", "[totp][base32]") {
  CHECK_FALSE(base32_decode("MZXW6YT0").has_value());  // '0' is not base32
  CHECK_FALSE(base32_decode("MZXW6YT8").has_value());
  CHECK_FALSE(base32_decode("MZXW-6YTB").has_value());
  CHECK_FALSE(base32_decode("MZXW\t6YTB").has_value());
  CHECK_FALSE(base32_decode("M").has_value());             // 5 bits: not a byte
  CHECK_FALSE(base32_decode("MZX").has_value());           // 15 bits
  CHECK_FALSE(base32_decode("MZXW6Y").has_value());        // 30 bits
  CHECK(base32_decode("MZXW6YTBM").has_value() == false);  // 8 + 1 symbols
}
