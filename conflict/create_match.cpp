#include "conflict/create_match.hpp"

#include <algorithm>
#include <cctype>

namespace knosc::conflict {
namespace {

const Json* find(const Json& obj, const std::string& key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// An absent key reads as null: Knosc stores an optional key the body left out as null.
Json value_or_null(const Json& obj, const std::string& key) {
  const Json* v = find(obj, key);
  return v ? *v : Json();
}

bool is_not_ours(const CreateAttempt& a, const Json& id) {
  return std::find(a.not_ours.begin(), a.not_ours.end(), id) != a.not_ours.end();
}

// Body keys with a scalar value that the row shows with another value.
std::vector<std::string> differing(const Json& body, const Json& row, const std::set<std::string>& ignored) {
  std::vector<std::string> out;
  if (!body.is_object()) return out;
  for (const auto& [k, v] : body.items()) {
    if (ignored.count(k) || v.is_structured()) continue;
    const Json* r = find(row, k);
    if (r && *r != v) out.push_back(k);
  }
  return out;
}

CreateMatch by_business_key(const CreateAttempt& a, const std::vector<Json>& rows,
                            const std::set<std::string>& ignored) {
  CreateMatch m;
  std::vector<const Json*> fresh;
  for (const auto& row : rows) {
    bool same_key = true;
    for (const auto& k : a.business_key)
      same_key = same_key && value_or_null(row, k) == value_or_null(a.body, k);
    if (!same_key) continue;
    const Json id = value_or_null(row, "id");
    if (is_not_ours(a, id)) {
      // The key was taken before the POST was sent, so the POST was refused or never applied.
      m.outcome = CreateOutcome::Taken;
      m.id = id;
      return m;
    }
    fresh.push_back(&row);
  }
  if (fresh.empty()) return m;
  if (fresh.size() > 1) {
    // A unique key listed twice: the listing cannot be trusted to say which one is ours.
    m.outcome = CreateOutcome::Ambiguous;
    for (const Json* r : fresh)
      m.candidates.push_back(value_or_null(*r, "id"));
    return m;
  }
  m.id = value_or_null(*fresh.front(), "id");
  m.differing_keys = differing(a.body, *fresh.front(), ignored);
  // Values that differ mean someone else created the number, or this create landed and was changed since.
  m.outcome = m.differing_keys.empty() ? CreateOutcome::Landed : CreateOutcome::Taken;
  return m;
}

CreateMatch by_ticket_window(const CreateAttempt& a, const std::vector<Json>& rows,
                             const TicketMatchRules& rules, const std::set<std::string>& ignored) {
  CreateMatch m;
  const Json title = value_or_null(a.body, rules.title_key);
  Json reporter = value_or_null(a.body, rules.reporter_key);
  if (reporter.is_null() || (reporter.is_string() && reporter.get_ref<const std::string&>().empty()))
    reporter = a.caller_email;
  const TimePoint from = a.sent_at - rules.slack;
  const TimePoint to = a.gave_up_at + rules.slack;
  bool undated = false;
  for (const auto& row : rows) {
    const Json id = value_or_null(row, "id");
    if (is_not_ours(a, id)) continue;
    if (value_or_null(row, rules.title_key) != title || value_or_null(row, rules.reporter_key) != reporter)
      continue;
    std::set<std::string> skip = ignored;
    skip.insert({rules.title_key, rules.reporter_key, rules.created_at_key});
    if (!differing(a.body, row, skip).empty()) continue;  // another ticket with the same title
    const Json* created = find(row, rules.created_at_key);
    std::optional<TimePoint> at;
    if (created && created->is_string()) at = parse_knosc_timestamp(created->get_ref<const std::string&>());
    if (!at) {
      undated = true;  // fits otherwise, but cannot be placed in time: neither ours nor not ours for sure
    } else if (*at < from || *at > to) {
      continue;
    }
    m.candidates.push_back(id);
  }
  if (m.candidates.empty()) return m;
  if (m.candidates.size() == 1 && !undated) {
    m.outcome = CreateOutcome::Landed;
    m.id = m.candidates.front();
    m.candidates.clear();
    return m;
  }
  m.outcome = CreateOutcome::Ambiguous;
  return m;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

}  // namespace

CreateMatch match_create(const CreateAttempt& attempt, const std::vector<Json>& rows,
                         const TicketMatchRules& rules, const std::set<std::string>& ignored) {
  if (attempt.business_key.empty()) return by_ticket_window(attempt, rows, rules, ignored);
  return by_business_key(attempt, rows, ignored);
}

std::optional<TimePoint> parse_knosc_timestamp(std::string_view s) {
  using namespace std::chrono;
  int y, mo, d, h, mi, sec;
  if (!digits(s, 0, 4, y) || s.size() < 19 || s[4] != '-' || !digits(s, 5, 2, mo) || s[7] != '-' ||
      !digits(s, 8, 2, d) || (s[10] != 'T' && s[10] != ' ') || !digits(s, 11, 2, h) || s[13] != ':' ||
      !digits(s, 14, 2, mi) || s[16] != ':' || !digits(s, 17, 2, sec))
    return std::nullopt;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
  if (!ymd.ok() || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::size_t pos = 19;
  microseconds fraction{0};
  if (pos < s.size() && s[pos] == '.') {
    long long scale = 100000, us = 0;
    std::size_t n = 0;
    for (++pos; pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos])); ++pos, ++n) {
      us += (s[pos] - '0') * scale;
      scale /= 10;
    }
    if (n == 0) return std::nullopt;
    fraction = microseconds(us);
  }
  minutes offset{0};
  if (pos < s.size() && s[pos] == 'Z') {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(s, pos + 4, 2, om))
      return std::nullopt;
    offset = minutes(oh * 60 + om) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;  // no zone: the instant would depend on a zone nobody stated
  }
  if (pos != s.size()) return std::nullopt;
  const auto local = sys_days(ymd) + hours(h) + minutes(mi) + seconds(sec) + fraction;
  return time_point_cast<TimePoint::duration>(local - offset);
}

std::string_view to_string(CreateOutcome o) {
  switch (o) {
    case CreateOutcome::NotLanded:
      return "not-landed";
    case CreateOutcome::Landed:
      return "landed";
    case CreateOutcome::Taken:
      return "taken";
    case CreateOutcome::Ambiguous:
      return "ambiguous";
  }
  return "?";
}

}  // namespace knosc::conflict
