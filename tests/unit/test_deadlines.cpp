// Deadlines: the one-timer set of callbacks that bounds how long a tool waits for a change's push.
#include <uv.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "daemon/deadlines.hpp"

using knosc::daemon::Deadlines;
using namespace std::chrono_literals;

namespace {

struct Loop {
  uv_loop_t loop{};
  Loop() { uv_loop_init(&loop); }
  ~Loop() {
    uv_run(&loop, UV_RUN_DEFAULT);  // lets closed handles finish
    uv_loop_close(&loop);
  }
};

}  // namespace

TEST_CASE("deadlines run in deadline order, each once its delay has passed", "[deadlines]") {
  Loop l;
  std::vector<std::string> ran;
  std::vector<std::chrono::steady_clock::duration> at;
  const auto start = std::chrono::steady_clock::now();
  {
    Deadlines d(&l.loop);
    d.after(60ms, [&] {
      ran.push_back("late");
      at.push_back(std::chrono::steady_clock::now() - start);
    });
    d.after(20ms, [&] {
      ran.push_back("early");
      at.push_back(std::chrono::steady_clock::now() - start);
      // A callback may add another deadline; it is served by the same timer.
      d.after(10ms, [&] {
        ran.push_back("added");
        at.push_back(std::chrono::steady_clock::now() - start);
      });
    });
    CHECK(d.waiting() == 2);
    while (ran.size() < 3)
      uv_run(&l.loop, UV_RUN_ONCE);
    CHECK(d.waiting() == 0);
    d.close();
  }
  REQUIRE(ran == std::vector<std::string>{"early", "added", "late"});
  CHECK(at[0] >= 20ms);
  CHECK(at[1] >= 30ms);
  CHECK(at[2] >= 60ms);
}

TEST_CASE("fire_all runs every waiting callback at once; after close, callbacks run at once", "[deadlines]") {
  Loop l;
  std::vector<int> ran;
  Deadlines d(&l.loop);
  d.after(10'000ms, [&] { ran.push_back(2); });
  d.after(5'000ms, [&] { ran.push_back(1); });
  const auto start = std::chrono::steady_clock::now();
  d.fire_all();
  CHECK(ran == std::vector<int>{1, 2});
  CHECK(std::chrono::steady_clock::now() - start < 1s);
  d.close();
  d.after(10'000ms, [&] { ran.push_back(3); });
  CHECK(ran == std::vector<int>{1, 2, 3});
}
