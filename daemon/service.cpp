#include "daemon/service.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "daemon/cli_conflicts.hpp"
#include "daemon/local_auth.hpp"
#include "daemon/loopback.hpp"
#include "daemon/replica_readers.hpp"
#include "replica/clock.hpp"
#include "replica/migrations.hpp"
#include "replica/writer.hpp"
#include "sync/http_client.hpp"
#include "sync/link_monitor.hpp"
#include "sync/loop_inbox.hpp"
#include "sync/puller.hpp"
#include "sync/pusher.hpp"
#include "sync/upstream_session.hpp"

namespace knosc::daemon {

StateDirLock::StateDirLock(const std::string& lock_path) {
  fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) throw ConfigError(lock_path + ": cannot open the lock file: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd_);
    fd_ = -1;
    throw ConfigError("another knosc-syncd is already running on this state directory (" + lock_path +
                      " is locked)");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    [[maybe_unused]] auto n = ::write(fd_, pid.data(), pid.size());
  }
}

StateDirLock::~StateDirLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock
}

bool StateDirLock::held_by_someone(const std::string& lock_path) {
  int fd = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  ::close(fd);
  return held;
}

namespace {

using replica::unix_now;

// Everything the loop thread owns while the daemon runs.
struct Runtime {
  uv_loop_t loop{};
  std::shared_ptr<replica::ChangeFeed> changes;  // outlives the writer (whose connection points at it)
  std::unique_ptr<replica::ReplicaWriter> writer;
  std::unique_ptr<sync::LoopInbox> inbox;
  std::unique_ptr<sync::HttpClient> http;
  std::unique_ptr<sync::UpstreamSession> session;
  std::unique_ptr<sync::LinkMonitor> link;
  std::unique_ptr<sync::Puller> puller;
  std::unique_ptr<sync::Pusher> pusher;
  std::unique_ptr<ReplicaReaders> readers;
  std::unique_ptr<LocalAuth> auth;
  std::unique_ptr<Jobs> jobs;
  std::unique_ptr<AnalyticsCache> analytics;
  std::unique_ptr<LoopbackApi> loopback;
  uv_signal_t sigterm{}, sigint{};
  uv_timer_t watchdog{}, progress{};
  bool watchdog_on = false, progress_on = false;
  std::uint64_t watchdog_usec = 0;
  bool stopping = false;
  bool progress_done_printed = false;
};

void close_handle(uv_handle_t* h) {
  if (!uv_is_closing(h)) uv_close(h, nullptr);
}

void begin_shutdown(Runtime& rt, const char* why) {
  if (rt.stopping) return;
  rt.stopping = true;
  spdlog::info("stopping ({})", why);
  sd_notify(0, "STOPPING=1\nSTATUS=Stopping");
  uv_signal_stop(&rt.sigterm);
  uv_signal_stop(&rt.sigint);
  rt.link->stop();  // no probes while stopping; the link is not reported back to anyone any more
  // Order: the loopback stops accepting and answers what it has (tools get their replies); the job forwarder
  // and the analytics cache wait for their upstream calls (an upload Knosc accepted is recorded as such, so a
  // restart never sends it again); local auth closes its upstream checks; the puller stops issuing work and
  // waits for what is in flight (a page being written commits or rolls back whole); then HTTP transfers and
  // handles close; then the loop runs out of handles.
  rt.loopback->shutdown([&rt] {
    // The pusher starts nothing new; what is in flight is recorded when it comes back or when HTTP closes
    // (a create cut off then is looked up by its business key after the restart, never sent blind).
    rt.pusher->stop([] {});
    rt.jobs->stop([&rt] {
      rt.analytics->stop([&rt] {
        rt.auth->close([&rt] {
          rt.puller->stop([&rt] {
            rt.http->close([&rt] {
              rt.inbox->close();
              close_handle(reinterpret_cast<uv_handle_t*>(&rt.sigterm));
              close_handle(reinterpret_cast<uv_handle_t*>(&rt.sigint));
              if (rt.watchdog_on) close_handle(reinterpret_cast<uv_handle_t*>(&rt.watchdog));
              if (rt.progress_on) close_handle(reinterpret_cast<uv_handle_t*>(&rt.progress));
            });
          });
        });
      });
    });
  });
}

void print_progress(Runtime& rt, bool final_line) {
  const auto items = rt.puller->progress();
  std::size_t done = 0;
  std::int64_t rows = 0;
  std::string current;
  for (const auto& p : items) {
    if (p.first_pass_done) ++done;
    rows += p.rows_this_pass;
    if (p.running && !p.first_pass_done && current.size() < 60)
      current += (current.empty() ? "" : ", ") + p.resource;
  }
  const auto online = rt.link->online();
  std::fprintf(stderr, "\r\033[Kfirst sync: %zu/%zu resources complete, %lld rows listed%s%s%s", done,
               items.size(), static_cast<long long>(rows), current.empty() ? "" : " - now: ", current.c_str(),
               online && !*online ? " (upstream unreachable, retrying)" : "");
  if (final_line) std::fputc('\n', stderr);
  std::fflush(stderr);
}

}  // namespace

int run_daemon(const Config& config) {
  // Everything the daemon creates (the replica, SQLite's -wal and -shm beside it, temporary files) holds the
  // tenant's data or secrets: private to the service account from the moment it exists, never chmod-ed after.
  ::umask(0077);
  std::error_code ec;
  std::filesystem::create_directories(config.state_dir, ec);
  if (ec) {
    spdlog::critical("{}: cannot create the state directory: {}", config.state_dir, ec.message());
    return 1;
  }
  // The replica holds the tenant's data; only the service account may read it.
  ::chmod(config.state_dir.c_str(), 0700);

  std::unique_ptr<StateDirLock> lock;
  sync::UpstreamCredentials creds;
  try {
    lock = std::make_unique<StateDirLock>(config.lock_path());
    creds.username = config.username;
    creds.password = read_secret(config.password_file, "password");
    if (!config.totp_secret_file.empty())
      creds.totp_secret = read_secret(config.totp_secret_file, "totp_secret");
  } catch (const ConfigError& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }

  Runtime rt;
  try {
    auto rep = std::make_unique<replica::Replica>(config.replica_path(), schema::Catalog::builtin(),
                                                  replica::Replica::Mode::ReadWrite);
    // A replica made by an older knosc-syncd, or under a looser umask, is made private now; SQLite gives a
    // new -wal and -shm the database's mode.
    for (const char* suffix : {"", "-wal", "-shm"})
      ::chmod((config.replica_path() + suffix).c_str(), 0600);
    rep->set_state("started_at", std::to_string(unix_now()));
    // Until the monitor has asked Knosc, the link is unknown: never what the previous run last saw.
    sync::record_link(*rep, sync::LinkReport{});
    rt.changes = std::make_shared<replica::ChangeFeed>(schema::Catalog::builtin());
    rt.writer = std::make_unique<replica::ReplicaWriter>(std::move(rep), rt.changes);
  } catch (const std::exception& e) {
    spdlog::critical("{}: cannot open the replica: {}", config.replica_path(), e.what());
    return 1;
  }

  uv_loop_init(&rt.loop);
  rt.inbox = std::make_unique<sync::LoopInbox>(&rt.loop);
  sync::TlsOptions tls{config.verify_tls, config.ca_file};
  sync::HttpTimeouts timeouts;
  timeouts.connect_ms = config.connect_timeout_seconds * 1000L;
  timeouts.no_progress_seconds = config.no_progress_timeout_seconds;
  timeouts.transfer_ms = config.transfer_timeout_seconds * 1000L;
  rt.http = std::make_unique<sync::HttpClient>(&rt.loop, tls, timeouts);
  rt.session = std::make_unique<sync::UpstreamSession>(*rt.http, config.base_url, creds);
  {
    sync::LinkTuning tuning;
    tuning.idle_probe = std::chrono::seconds(config.probe_idle_seconds);
    tuning.probe_interval = std::chrono::seconds(config.probe_interval_seconds);
    tuning.probe_timeout = std::chrono::seconds(config.probe_timeout_seconds);
    rt.link = std::make_unique<sync::LinkMonitor>(&rt.loop, *rt.http, *rt.writer, *rt.inbox, config.base_url,
                                                  tuning);
  }
  auto* link = rt.link.get();
  // Every exchange of the service account's session tells the monitor something about the link.
  rt.session->set_observer([link](const sync::HttpResponse& r) { link->observe(r); });
  rt.puller = std::make_unique<sync::Puller>(&rt.loop, *rt.session, *rt.writer, *rt.inbox,
                                             schema::Catalog::builtin(), config.pull);
  try {
    rt.readers = std::make_unique<ReplicaReaders>(config.replica_path(), schema::Catalog::builtin(),
                                                  config.reader_threads);
  } catch (const std::exception& e) {
    spdlog::critical("{}: cannot open the replica for reading: {}", config.replica_path(), e.what());
    return 1;
  }
  LocalAuthOptions auth_options;
  auth_options.upstream_base_url = config.base_url;
  auth_options.tls = tls;
  auth_options.timeouts = timeouts;
  auth_options.access_ttl_seconds = config.access_ttl_seconds;
  auth_options.refresh_ttl_seconds = config.refresh_ttl_seconds;
  auth_options.offline_login_ttl_seconds = config.offline_login_ttl_seconds;
  auth_options.login_wait = std::chrono::milliseconds(config.login_wait_ms);
  auto* puller = rt.puller.get();
  rt.auth = std::make_unique<LocalAuth>(&rt.loop, auth_options, *rt.writer, *rt.inbox,
                                        [link] { return link->online(); });
  LoopbackDeps deps;
  deps.loop = &rt.loop;
  deps.config = &config;
  deps.catalog = &schema::Catalog::builtin();
  deps.writer = rt.writer.get();
  deps.readers = rt.readers.get();
  deps.inbox = rt.inbox.get();
  deps.auth = rt.auth.get();
  deps.changes = rt.changes.get();
  deps.online = [link] { return link->online(); };
  deps.link = [link] { return link->report(); };
  deps.progress = [puller] { return puller->progress(); };
  deps.upstream = rt.session.get();
  deps.trigger_pull = [puller](const std::string& resource) { return puller->trigger(resource); };
  {
    sync::PushOptions push;
    push.max_parallel = config.pull.max_concurrent_requests;
    push.backoff = config.pull.backoff;
    push.account_email = config.username;
    push.conflict_tickets = config.conflict_tickets;
    push.stall_after = std::chrono::seconds(config.push_stall_after_seconds);
    rt.pusher = std::make_unique<sync::Pusher>(&rt.loop, *rt.session, *rt.writer, *rt.inbox,
                                               schema::Catalog::builtin(), std::move(push), deps.online,
                                               deps.trigger_pull);
  }
  auto* pusher = rt.pusher.get();
  deps.watch_push = [pusher](std::int64_t seq, sync::PushWatch w) { pusher->watch(seq, std::move(w)); };
  deps.unwatch_push = [pusher](std::int64_t seq) { pusher->unwatch(seq); };
  deps.outbox_queued = [pusher](std::int64_t seq) { pusher->queued(seq); };
  deps.resolve = [pusher](std::int64_t id, sync::Resolution how, std::optional<nlohmann::ordered_json> body,
                          std::string user, std::function<void(std::string)> done) {
    pusher->resolve(id, how, std::move(body), std::move(user), std::move(done));
  };
  deps.push_status = [pusher] { return pusher->status(); };
  try {
    deps.cli_token = write_cli_token(config);
  } catch (const std::exception& e) {
    spdlog::warn("the CLI token could not be written ({}); 'knosc-syncd resolve' will not work", e.what());
  }
  rt.jobs =
      std::make_unique<Jobs>(JobsDeps{&rt.loop, rt.writer.get(), rt.readers.get(), rt.inbox.get(),
                                      rt.session.get(), deps.online, deps.trigger_pull, config.pull.backoff});
  rt.analytics = std::make_unique<AnalyticsCache>(
      AnalyticsCacheDeps{&rt.loop, rt.writer.get(), rt.readers.get(), rt.inbox.get(), rt.session.get(),
                         deps.online, std::chrono::milliseconds(config.login_wait_ms)});
  // When the link comes back, whatever backed off during the outage tries again at once.
  link->on_link_back([puller, pusher, jobs = rt.jobs.get()] {
    puller->link_returned();
    pusher->link_returned();
    jobs->link_returned();
  });
  deps.jobs = rt.jobs.get();
  deps.analytics = rt.analytics.get();
  // Stored users and sessions are in memory before the loopback accepts a request: a tool that kept its
  // session across a restart must not get 401 Token.Invalid for calling in the moment between the two.
  bool auth_loaded = false;
  rt.auth->start([&auth_loaded] { auth_loaded = true; });
  while (!auth_loaded)
    uv_run(&rt.loop, UV_RUN_ONCE);
  rt.loopback = std::make_unique<LoopbackApi>(deps);
  if (int rc = rt.loopback->listen(); rc != 0) {
    spdlog::critical("loopback: cannot listen on {}:{}: {}", config.loopback_host, config.loopback_port,
                     uv_strerror(rc));
    return 1;
  }
  {
    const std::string base = rt.loopback->base_url();
    rt.writer->post([base](replica::Replica& rep) { rep.set_state("loopback_base", base); });
    spdlog::info("loopback API on {}", base);
  }

  uv_signal_init(&rt.loop, &rt.sigterm);
  uv_signal_init(&rt.loop, &rt.sigint);
  rt.sigterm.data = &rt;
  rt.sigint.data = &rt;
  uv_signal_start(
      &rt.sigterm, [](uv_signal_t* s, int) { begin_shutdown(*static_cast<Runtime*>(s->data), "SIGTERM"); },
      SIGTERM);
  uv_signal_start(
      &rt.sigint, [](uv_signal_t* s, int) { begin_shutdown(*static_cast<Runtime*>(s->data), "SIGINT"); },
      SIGINT);

  // systemd's watchdog: pings come from the loop thread, so a stuck loop stops them; a writer stuck on one
  // task for longer than the watchdog interval stops them too.
  if (sd_watchdog_enabled(0, &rt.watchdog_usec) > 0 && rt.watchdog_usec > 0) {
    rt.watchdog_on = true;
    uv_timer_init(&rt.loop, &rt.watchdog);
    rt.watchdog.data = &rt;
    const std::uint64_t every_ms = std::max<std::uint64_t>(1, rt.watchdog_usec / 2000);
    uv_timer_start(
        &rt.watchdog,
        [](uv_timer_t* t) {
          auto& r = *static_cast<Runtime*>(t->data);
          if (r.writer->busy_seconds() * 1e6 < static_cast<double>(r.watchdog_usec)) {
            sd_notify(0, "WATCHDOG=1");
          } else {
            spdlog::error("replica writer has been busy for {:.0f} s; withholding the watchdog ping",
                          r.writer->busy_seconds());
          }
        },
        every_ms, every_ms);
  }

  if (::isatty(STDERR_FILENO)) {
    rt.progress_on = true;
    uv_timer_init(&rt.loop, &rt.progress);
    rt.progress.data = &rt;
    uv_timer_start(
        &rt.progress,
        [](uv_timer_t* t) {
          auto& r = *static_cast<Runtime*>(t->data);
          if (r.stopping || r.progress_done_printed) return;
          const bool done = r.puller->all_first_passes_done();
          print_progress(r, done);
          if (done) {
            r.progress_done_printed = true;
            uv_timer_stop(t);
          }
        },
        1000, 1000);
  }

  spdlog::info("knosc-syncd {} started: upstream {}, replica {}", KNOSC_VERSION, config.base_url,
               config.replica_path());
  rt.link->start();
  rt.puller->start();
  rt.pusher->start();
  rt.jobs->start();
  rt.analytics->start();
  sd_notify(0, "READY=1\nSTATUS=Replica open; syncing");

  uv_run(&rt.loop, UV_RUN_DEFAULT);

  rt.loopback.reset();
  rt.jobs.reset();
  rt.analytics.reset();
  rt.auth.reset();
  rt.pusher.reset();
  rt.puller.reset();
  rt.session.reset();
  rt.link.reset();
  rt.http.reset();
  rt.inbox->close();
  uv_run(&rt.loop, UV_RUN_DEFAULT);  // let the close callbacks of destroyed objects run
  rt.readers->stop();
  rt.readers.reset();
  // Tasks still queued (connectivity notes, a push's last bookkeeping) finish before the replica closes. The
  // inbox they answer through outlives them, closed: what they post then is dropped, never sent to a freed
  // object.
  rt.writer->stop();
  rt.writer.reset();
  rt.inbox.reset();
  if (uv_loop_close(&rt.loop) != 0) spdlog::warn("event loop closed with handles still open");
  spdlog::info("stopped");
  return 0;
}

}  // namespace knosc::daemon
