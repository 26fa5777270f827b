#include "sync/record_fetch.hpp"

#include <curl/curl.h>

namespace knosc::sync {
namespace {

using Json = nlohmann::ordered_json;

std::string url_encode(const std::string& text) {
  char* enc = curl_easy_escape(nullptr, text.c_str(), static_cast<int>(text.size()));
  std::string out = enc ? enc : "";
  curl_free(enc);
  return out;
}

// The record inside a get-one answer, by the resource's shape; nullopt when the body is not that shape.
std::optional<Json> unwrap(const schema::Resource& res, const std::string& body) {
  auto doc = Json::parse(body, nullptr, false);
  if (!doc.is_object()) return std::nullopt;
  auto data = doc.find("data");
  if (data == doc.end() || !data->is_object()) return std::nullopt;
  if (res.get_one == schema::GetOneShape::RowsObject) {
    auto rows = data->find("rows");
    if (rows == data->end() || !rows->is_object()) return std::nullopt;
    return *rows;
  }
  return *data;
}

bool same_id(const Json& v, const std::string& id) {
  if (v.is_number_integer()) return std::to_string(v.get<std::int64_t>()) == id;
  if (v.is_string()) return v.get<std::string>() == id;
  return false;
}

}  // namespace

void find_records(UpstreamSession& upstream, const schema::Resource& res, const Json& match, int limit,
                  std::function<void(Disposition, std::vector<Json>, ApiResult)> done) {
  Json filter = match;
  if (res.warehouse_scoped && !filter.contains("Warehouse Status"))
    filter["Warehouse Status"] = Json::array({"Active", "Inactive"});
  const std::string query =
      "?page=1&page_size=" + std::to_string(limit) + "&filter=" + url_encode(filter.dump());
  upstream.call("GET", res.route() + query, "", [done = std::move(done)](ApiResult r) {
    const auto disposition = classify(r.kind, r.status, r.code, "");
    std::vector<Json> rows;
    if (disposition == Disposition::Success) {
      auto doc = Json::parse(r.response.body, nullptr, false);
      const Json* found = nullptr;
      if (doc.is_object() && doc.contains("data") && doc["data"].is_object() && doc["data"].contains("rows"))
        found = &doc["data"]["rows"];
      if (!found || !found->is_array()) return done(Disposition::Transient, {}, std::move(r));
      rows.assign(found->begin(), found->end());
    }
    done(disposition, std::move(rows), std::move(r));
  });
}

void fetch_record(UpstreamSession& upstream, const schema::Catalog& catalog, const schema::Resource& res,
                  const std::string& id, const std::optional<std::string>& parent_id,
                  std::function<void(FetchedRecord)> done) {
  if (res.is_line_list()) {
    const auto* parent = catalog.find(res.parent);
    if (!parent || !parent_id) {
      FetchedRecord out;
      out.disposition = Disposition::Rejected;
      out.result.message = "the line's header is not known";
      return done(std::move(out));
    }
    fetch_record(upstream, catalog, *parent, *parent_id, std::nullopt,
                 [id, done = std::move(done)](FetchedRecord header) {
                   if (header.disposition != Disposition::Success) return done(std::move(header));
                   FetchedRecord out;
                   out.result = std::move(header.result);
                   out.disposition = Disposition::NotFound;
                   if (auto d = header.record->find("details"); d != header.record->end() && d->is_array())
                     for (const auto& line : *d)
                       if (line.is_object() && line.contains("id") && same_id(line["id"], id)) {
                         out.disposition = Disposition::Success;
                         out.record = line;
                       }
                   out.parent = std::move(header.record);
                   done(std::move(out));
                 });
    return;
  }
  if (res.get_one == schema::GetOneShape::None) {
    Json key = res.id_type == schema::IdType::Integer ? Json::parse(id, nullptr, false) : Json(id);
    if (key.is_discarded()) key = Json(id);
    find_records(upstream, res, Json{{"id", key}}, 1,
                 [done = std::move(done)](Disposition d, std::vector<Json> rows, ApiResult r) {
                   FetchedRecord out;
                   out.result = std::move(r);
                   out.disposition = d;
                   if (d == Disposition::Success) {
                     if (rows.empty()) {
                       out.disposition = Disposition::NotFound;
                     } else {
                       out.record = std::move(rows.front());
                     }
                   }
                   done(std::move(out));
                 });
    return;
  }
  upstream.call("GET", res.route() + "/" + id, "", [&res, done = std::move(done)](ApiResult r) {
    FetchedRecord out;
    out.disposition = classify(r.kind, r.status, r.code, res.not_found_code);
    if (out.disposition == Disposition::Success) {
      out.record = unwrap(res, r.response.body);
      if (!out.record) out.disposition = Disposition::Transient;  // a garbled answer: read again later
    }
    out.result = std::move(r);
    done(std::move(out));
  });
}

}  // namespace knosc::sync
