#include <catch2/catch.hpp>

#include "conflict/field_merge.hpp"

using knosc::conflict::Json;
using knosc::conflict::merge_fields;

TEST_CASE("three-way field merge, case by case") {
  struct Case {
    const char* name;
    const char* base;
    const char* local;
    const char* remote;
    const char* merged;
    std::vector<std::string> conflicts;
  };
  const Case cases[] = {
      {"nobody changed", R"({"a":1})", R"({"a":1})", R"({"a":1})", R"({"a":1})", {}},
      {"local only", R"({"a":1,"b":2})", R"({"a":5,"b":2})", R"({"a":1,"b":2})", R"({"a":5,"b":2})", {}},
      {"remote only", R"({"a":1,"b":2})", R"({"a":1,"b":2})", R"({"a":1,"b":7})", R"({"a":1,"b":7})", {}},
      {"different fields",
       R"({"a":1,"b":2})",
       R"({"a":5,"b":2})",
       R"({"a":1,"b":7})",
       R"({"a":5,"b":7})",
       {}},
      {"same change both sides", R"({"a":1})", R"({"a":3})", R"({"a":3})", R"({"a":3})", {}},
      {"overlap", R"({"a":1})", R"({"a":3})", R"({"a":4})", R"({"a":4})", {"a"}},
      {"local adds a key", R"({"a":1})", R"({"a":1,"n":"x"})", R"({"a":1})", R"({"a":1,"n":"x"})", {}},
      {"remote removes a key local did not touch",
       R"({"a":1,"b":2})",
       R"({"a":1,"b":2})",
       R"({"a":1})",
       R"({"a":1})",
       {}},
      {"remote removes a key local changed",
       R"({"a":1,"b":2})",
       R"({"a":1,"b":3})",
       R"({"a":1})",
       R"({"a":1})",
       {"b"}},
      {"null is not absent", R"({"a":null})", R"({"a":null})", R"({})", R"({})", {}},
      {"both set a new key differently", R"({})", R"({"k":1})", R"({"k":2})", R"({"k":2})", {"k"}},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto m = merge_fields(Json::parse(c.base), Json::parse(c.local), Json::parse(c.remote));
    CHECK(m.merged == Json::parse(c.merged));
    std::vector<std::string> keys;
    for (const auto& f : m.conflicts)
      keys.push_back(f.key);
    CHECK(keys == c.conflicts);
  }
}

TEST_CASE("a conflict keeps every side, including absence") {
  auto m = merge_fields(Json::parse(R"({"q":1})"), Json::parse(R"({"q":2})"), Json::parse(R"({})"));
  REQUIRE(m.conflicts.size() == 1);
  const auto& c = m.conflicts[0];
  CHECK(c.has_base);
  CHECK(c.has_local);
  CHECK_FALSE(c.has_remote);
  CHECK(c.local == 2);
  CHECK(m.local_changed);
  CHECK(m.remote_changed);
}

TEST_CASE("ignored keys follow remote and never conflict") {
  auto m = merge_fields(Json::parse(R"({"details":[1]})"), Json::parse(R"({"details":[2]})"),
                        Json::parse(R"({"details":[3]})"), {"details"});
  CHECK(m.conflicts.empty());
  CHECK(m.merged["details"] == Json::parse("[3]"));
  CHECK_FALSE(m.local_changed);
}
