#pragma once
/// The names users type for nfk's enums — in CLI flags, JSON files and Python — kept in one table
/// per enum. Parsing, printing and the CLI's list of choices all read that table, so a new value
/// is added in one place. Example (a header):
///   const Names<Estimator>& estimator_names();  // {kAuto, "auto"}, {kTrue, "true"}, ...
/// and `estimator_names().parse("true")`, `estimator_names().name(Estimator::kTrue)`,
/// `CLI::IsMember(estimator_names().all())`.

#include <c10/util/Exception.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace nfk {

template <typename E>
class Names {
 public:
  /// `what` names the choice in messages ("estimator", "model kind").
  Names(std::string what, std::initializer_list<std::pair<E, const char*>> entries)
      : what_(std::move(what)) {
    for (const auto& [value, name] : entries) entries_.emplace_back(value, name);
  }

  /// The value's name; every value of the enum is in the table.
  const std::string& name(E value) const {
    for (const auto& [v, n] : entries_) {
      if (v == value) return n;
    }
    TORCH_INTERNAL_ASSERT(false, "nfk: a ", what_, " without a name");
  }

  /// The value named `name`; anything else throws one line that lists the names.
  E parse(const std::string& name) const {
    for (const auto& [v, n] : entries_) {
      if (n == name) return v;
    }
    TORCH_CHECK(false, "nfk: unknown ", what_, " `", name, "` (expected ", choices(), ")");
  }

  /// Every name, in the table's order.
  std::vector<std::string> all() const {
    std::vector<std::string> out;
    for (const auto& entry : entries_) out.push_back(entry.second);
    return out;
  }

  /// "a, b or c".
  std::string choices() const {
    std::string out;
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (i > 0) out += i + 1 == entries_.size() ? " or " : ", ";
      out += entries_[i].second;
    }
    return out;
  }

 private:
  std::string what_;
  std::vector<std::pair<E, std::string>> entries_;
};

}  // namespace nfk
