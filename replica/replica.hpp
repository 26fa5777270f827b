#pragma once
// The SQLite replica: mirrored rows with their content hash, pull-pass checkpoints, deletion candidates and
// the daemon's small state.
//
// Ownership and threads: one Replica opened read-write is owned by the replica writer thread (ReplicaWriter),
// the only thread that writes the file. Other threads (the status command, later the loopback readers) open
// their own read-only Replica. SQLite runs in WAL mode so readers never block the writer.

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "replica/list_page.hpp"
#include "replica/record_id.hpp"
#include "schema/catalog.hpp"

namespace knosc::replica {

using Json = nlohmann::ordered_json;  // keeps upstream key order, so rows are served back as they came

// Where a resource's current pull pass stands; persisted with every page.
struct PassCursor {
  std::int64_t generation = 0;
  int page = 1;  // the page to fetch next (1-based)
  int page_size = 0;
  std::optional<RecordId> last_id;  // highest id of the last applied page
  bool resumed = false;             // an interrupted pass was picked up after a restart
};

struct PageOutcome {
  int rows = 0;     // rows listed by the page
  int written = 0;  // rows inserted or changed in the replica
  int missed = 0;   // replica rows in the page's id range that it did not list: new deletion candidates
  int without_id = 0;
  bool pass_complete = false;
  PassCursor next;
};

struct DeleteCandidate {
  RecordId id;
  std::optional<RecordId> parent_id;
  Json body;
};

struct ResourceStatus {
  std::string name;
  std::int64_t rows = 0;
  std::int64_t generation = 0;
  bool in_progress = false;
  int next_page = 0;
  int pages_done = 0;
  std::int64_t rows_seen = 0;
  std::int64_t rows_written = 0;
  std::optional<std::int64_t> started_at;
  std::optional<std::int64_t> last_complete_at;
  std::optional<double> last_pass_seconds;
  std::optional<std::string> last_error;
  std::optional<std::int64_t> last_error_at;
  std::string access = "unknown";
  std::int64_t pending_deletion_checks = 0;
  std::int64_t nested_due = 0;
};

struct ReplicaStatus {
  int schema_version = 0;
  std::vector<ResourceStatus> resources;  // in catalog order
  std::map<std::string, std::string> state;
};

class Replica {
 public:
  enum class Mode { ReadWrite, ReadOnly };

  // Opens (creating and migrating when ReadWrite) the replica at `path`. ReadWrite also refills the key slots
  // of every resource whose indexed keys changed since they were filled (see ensure_indexes), which reads
  // and rewrites that resource's rows once. Throws SchemaTooNew, or SQLite::Exception with SQLite's message.
  Replica(const std::string& path, const schema::Catalog& catalog, Mode mode);
  ~Replica();

  const schema::Catalog& catalog() const { return catalog_; }
  SQLite::Database& db() { return db_; }

  // A statement of this connection prepared once and kept, reset and unbound, for SQL that runs again and
  // again (every local edit runs a dozen statements, and parsing them cost about as much as running them).
  // The handle resets it when it goes. The same SQL asked for again while its handle lives (a recursive
  // write) gets a statement of its own.
  class Cached {
   public:
    Cached(SQLite::Statement& st, bool* busy);
    explicit Cached(std::unique_ptr<SQLite::Statement> own);
    ~Cached();
    Cached(const Cached&) = delete;
    Cached& operator=(const Cached&) = delete;
    SQLite::Statement* operator->() { return st_; }
    SQLite::Statement& operator*() { return *st_; }

   private:
    std::unique_ptr<SQLite::Statement> own_;
    SQLite::Statement* st_;
    bool* busy_ = nullptr;
  };
  Cached cached(const std::string& sql);

  // Pull passes ------------------------------------------------------------------------------------------
  // The pass to continue: the interrupted one when it used the same page size, else a new one.
  PassCursor resume_or_begin_pass(const schema::Resource& res, int page_size, std::int64_t now);
  // Writes the page's new and changed rows, records rows of its id range it did not list as deletion
  // candidates, and advances the checkpoint, all in one transaction. `rows` is the page's "rows" array. A
  // page shorter than the page size completes the pass.
  PageOutcome apply_page(const schema::Resource& res, const PassCursor& cursor, const Json& rows,
                         std::int64_t now);
  // The same for a page read from the response text (see replica/list_page.hpp).
  PageOutcome apply_page(const schema::Resource& res, const PassCursor& cursor, const ListPage& page,
                         std::int64_t now);
  void record_pass_error(const schema::Resource& res, const std::string& message, std::int64_t now);
  void set_access(const schema::Resource& res, const std::string& access, std::int64_t now);

  // Deletion checks
  // ------------------------------------------------------------------------------------------
  std::vector<DeleteCandidate> delete_candidates(const schema::Resource& res, std::size_t limit);
  // Ends a check: `deleted` removes the row (and, for headers with a flat line list, its lines).
  void resolve_candidate(const schema::Resource& res, const RecordId& id, bool deleted);

  // Nested parts (get-one only keys) -----------------------------------------------------------------------
  // Rows whose nested parts are missing, stale after a change, or were fetched before `fetched_before` (Knosc
  // gives no sign when only lines change, so nested parts are fetched again periodically), oldest first.
  std::vector<RecordId> nested_due(const schema::Resource& res, std::int64_t fetched_before,
                                   std::size_t limit);
  // Stores the nested keys of a get-one record; returns true when they changed.
  bool store_nested(const schema::Resource& res, const RecordId& id, const Json& record, std::int64_t now);
  // The same with the parts read from the response text (read_nested_parts).
  bool store_nested(const schema::Resource& res, const RecordId& id, const NestedParts& parts,
                    std::int64_t now);
  // Marks a row's nested parts as checked without data (get-one answered NotFound: deletion checks follow).
  void defer_nested(const schema::Resource& res, const RecordId& id, std::int64_t now);

  // The list's column headers as upstream sent them on page 1 (custom columns included); written only when
  // they changed. The loopback answers with them.
  void store_list_headers(const schema::Resource& res, const Json& headers, std::int64_t now);
  std::optional<Json> list_headers(const schema::Resource& res);

  // Makes the resource's key slots (record.k1..k8, see replica/key_slots.hpp) agree with the catalog: when
  // the stored assignment differs, refills every row's slots from its body and stores the catalog's
  // assignment. The ReadWrite constructor does this for every catalog resource, so afterwards it is a cheap
  // check; the writer fills the slots of every row it writes.
  void ensure_indexes(const schema::Resource& res);

  // Reading
  // --------------------------------------------------------------------------------------------------
  std::optional<Json> row(const schema::Resource& res, const RecordId& id);
  // True while the record has local edits waiting in the outbox (see pending_record in schema 5).
  bool is_pending(const schema::Resource& res, const RecordId& id);
  std::int64_t count(const schema::Resource& res);
  ReplicaStatus status();

  void set_state(const std::string& key, const std::string& value);
  std::optional<std::string> state(const std::string& key);

  // A record as get-one returned it after a change forwarded to Knosc: stored as a pass would store it (list
  // row, nested parts, flat lines replaced), in one transaction.
  void store_fetched_record(const schema::Resource& res, const Json& record, std::int64_t now);
  // A local edit's version of a record (nullopt: deleted locally), in the caller's transaction. The record
  // becomes pending: upstream's version, when the replica has one and the record was not pending already, is
  // set aside in pending_record, where passes keep it current. A header with a flat line list and a
  // "details" array gets its line rows made to match.
  void store_local_version(const schema::Resource& res, const RecordId& id, const std::optional<Json>& record,
                           std::int64_t now);
  // Ends the pending state of a record (its queued edits landed or were dropped), in the caller's
  // transaction.
  void clear_pending(const schema::Resource& res, const RecordId& id);

  // Removes a record Knosc no longer has (and, for headers with a flat line list, its lines).
  void remove_record(const schema::Resource& res, const RecordId& id);

  // While one lives, commits do not wait for the disk (synchronous=NORMAL instead of FULL): for transactions
  // that only store what Knosc sent, which a crash at worst makes the daemon fetch again. WAL keeps such
  // commits atomic and in order, and the next FULL commit (a local edit) or checkpoint makes them durable
  // too. Create it outside any transaction.
  class RefetchableWrites {
   public:
    explicit RefetchableWrites(Replica& rep);
    ~RefetchableWrites();
    RefetchableWrites(const RefetchableWrites&) = delete;
    RefetchableWrites& operator=(const RefetchableWrites&) = delete;

   private:
    SQLite::Database& db_;
  };

 private:
  // Inserts or replaces one row of `res` by its id (hash, parent id, nested parts due again when it changed).
  void write_row(const schema::Resource& res, const Json& row, std::int64_t now);
  bool store_nested_text(const schema::Resource& res, const RecordId& id, const std::string& text,
                         std::uint64_t hash, std::int64_t now);
  void prepare_statements();
  void drop_expression_indexes();
  // (Re)creates the partial indexes whose resources come from the catalog: the key-slot indexes and
  // record_nested_due.
  void ensure_row_layouts();
  void ensure_partial_indexes();

  const schema::Catalog& catalog_;
  SQLite::Database db_;
  struct Statements;
  std::unique_ptr<Statements> st_;
  struct CacheEntry {
    std::unique_ptr<SQLite::Statement> statement;
    bool busy = false;
  };
  std::map<std::string, CacheEntry, std::less<>> cache_;
};

}  // namespace knosc::replica
