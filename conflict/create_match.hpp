#pragma once
// Exactly-once creates without server help: after a POST whose outcome is unknown (a timeout, a connection
// reset after the request was sent), decide from the rows Knosc lists whether the create landed, before any
// retry. Pure: the pusher lists the candidates (by business key, or for tickets by reporter) and acts on the
// answer. Residual risks are described in docs/CONFLICTS.md ("Exactly-once creates").

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "conflict/field_merge.hpp"
#include "conflict/push_order.hpp"

namespace knosc::conflict {

struct CreateAttempt {
  Json body;  // the POST body as sent
  // The resource's business key (catalog business_key). Empty: the resource has none (tickets), and rows are
  // matched by title, reporter and creation time instead.
  std::vector<std::string> business_key;
  // Ids of rows that cannot be this create: rows the replica already held when the POST was first sent (with
  // this business key, or for tickets by this reporter), and rows other local creates have claimed. Recorded
  // at send time: a pull between the lost answer and this check may have mirrored the new row since.
  std::vector<Json> not_ours;
  // Tickets: the window the POST was in flight, on Knosc's clock (the daemon's clock corrected by the skew it
  // measures from Date headers), and the e-mail Knosc records as reporter when the body names none (the
  // service account's: pushes go upstream under it).
  TimePoint sent_at{}, gave_up_at{};
  std::string caller_email;
};

struct TicketMatchRules {
  std::string title_key = "Title";
  std::string reporter_key = "Reporter Email";
  std::string created_at_key = "Created At";
  // Widens the window on both sides: the skew estimate's error and Knosc's whole-second timestamps.
  std::chrono::seconds slack{120};
};

enum class CreateOutcome {
  NotLanded,  // no row can be this create: retrying the POST is safe
  Landed,     // `id` is the created record: remap the local id to it, do not retry
  Taken,      // a row holds the business key but is not provably this create (it existed before, or its
              // values differ from the body): a retry would be refused as AlreadyExists; a person decides
  Ambiguous,  // more than one row fits (or one cannot be placed in time): a person decides
};

struct CreateMatch {
  CreateOutcome outcome = CreateOutcome::NotLanded;
  Json id;                                  // Landed, Taken: the row's id
  std::vector<Json> candidates;             // Ambiguous: the ids of the rows that fit
  std::vector<std::string> differing_keys;  // Taken: body keys whose value the row does not have
};

// `rows` are what Knosc listed for the lookup (list rows or get-one records). Only the body's scalar keys
// that a row carries are compared (lines, nested objects and keys a list row does not show are not), and
// `ignored` keys never are.
CreateMatch match_create(const CreateAttempt& attempt, const std::vector<Json>& rows,
                         const TicketMatchRules& rules = {}, const std::set<std::string>& ignored = {});

// Knosc's timestamps: "2024-03-10T09:00:00Z", optionally with fractional seconds or a "+01:00"-style offset.
std::optional<TimePoint> parse_knosc_timestamp(std::string_view text);

std::string_view to_string(CreateOutcome o);

}  // namespace knosc::conflict
