#pragma once
// RecordLookup over the replica, for the local edit planner (replica/local_edit.hpp).
//
// Ownership and threads: it borrows a Replica and uses its connection, so it belongs to the thread that owns
// that Replica — the writer thread, which plans a local edit and applies it in one transaction.

#include "replica/local_edit.hpp"
#include "replica/replica.hpp"

namespace knosc::replica {

class ReplicaLookup final : public RecordLookup {
 public:
  explicit ReplicaLookup(Replica& rep) : rep_(rep) {}

  // compose_record: the list row, nested parts, flat lines and derived lists, local versions included.
  std::optional<Json> get(const schema::Resource& res, const RecordId& id) override;
  // One query on `record`: through the key's slot (k1..k8) when the resource indexes it, else by
  // json_extract on the body.
  std::vector<Json> find(const schema::Resource& res, const std::string& key, const Json& value,
                         std::size_t limit) override;
  // Nested line sets are searched with json_each over the rows' nested parts; a flat line list's "details"
  // through its own rows.
  std::vector<Json> find_in_lines(const schema::Resource& res, const std::string& lines_key,
                                  const std::string& key, const Json& value, std::size_t limit) override;

 private:
  Replica& rep_;
};

}  // namespace knosc::replica
