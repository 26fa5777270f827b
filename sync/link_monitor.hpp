#pragma once
// The link monitor carries out LinkState's decisions (sync/link_state.hpp) on the loop: it is fed the outcome
// of every exchange of the service account's session, sends the probes, keeps the link's report in the
// replica for `knosc-syncd status`, and tells the components that back off (puller, pusher, job forwarder)
// when the link comes back, so that they try again at once rather than when their backoff ends.
//
// The probe is `GET <base_url>/profile` straight on the HttpClient: Knosc answers it at once, small, for any
// account; it carries the session's cookies when there is a session, and a 401 without one is an answer all
// the same. Going around the session keeps probes from ever logging in (or counting towards a lockout) and
// from waiting behind a login pause.
//
// Ownership and threads: owned by the daemon; every member runs on the uv loop thread. Its replica writes are
// values posted to the writer; nothing comes back from them.

#include <uv.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "replica/writer.hpp"
#include "sync/http_client.hpp"
#include "sync/link_state.hpp"
#include "sync/loop_inbox.hpp"

namespace knosc::sync {

class LinkMonitor {
 public:
  // `base_url` like "https://acme.knosc.com/api".
  LinkMonitor(uv_loop_t* loop, HttpClient& http, replica::ReplicaWriter& writer, LoopInbox& inbox,
              std::string base_url, LinkTuning tuning);
  ~LinkMonitor();
  LinkMonitor(const LinkMonitor&) = delete;
  LinkMonitor& operator=(const LinkMonitor&) = delete;

  // Starts probing: the first probe goes at once, since the link is unknown.
  void start();
  // No more probes. One in flight ends with the HTTP client's close (cancelled: it says nothing).
  void stop();

  // The outcome of one exchange with Knosc (see UpstreamSession::set_observer).
  void observe(const HttpResponse& response);

  std::optional<bool> online() const;  // nullopt while unknown
  LinkReport report() const;

  // `fn` runs each time the link comes back after being offline, on the loop thread and on a loop turn of its
  // own (never inside the upstream callback that brought the news).
  void on_link_back(std::function<void()> fn);

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// Stores the report in the replica's daemon state (writer thread).
void record_link(replica::Replica& rep, const LinkReport& report);

}  // namespace knosc::sync
