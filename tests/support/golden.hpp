// tests/support/golden.hpp — reading the golden cases copied under tests/data/golden/.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "io/npy.hpp"
#include "support/catch.hpp"

namespace tokred::testing {

/// The folder of one golden case, e.g. golden_case("pooling", "llava_average_27to13").
inline std::string golden_case(const std::string& method, const std::string& name) {
  return std::string(TOKRED_TEST_DATA_DIR) + "/golden/" + method + "/" + name + "/";
}

/// Reads a .npy file; the test fails (REQUIRE) with the reader's message if it cannot.
inline io::npy_array load_npy(const std::string& path) {
  io::npy_array a;
  const std::string error = io::read_npy(path, a);
  INFO(error);
  REQUIRE(error.empty());
  return a;
}

/// The numbers after `"key":` in a case's params.json (flat, machine-written): one number, or
/// each element of a [list].
inline std::vector<double> json_numbers(const std::string& dir, const std::string& key) {
  std::ifstream f(dir + "params.json");
  std::stringstream text;
  text << f.rdbuf();
  const std::string s = text.str();
  const auto at = s.find("\"" + key + "\"");
  INFO(key);
  REQUIRE(at != std::string::npos);
  std::size_t i = s.find(':', at) + 1;
  while (s[i] == ' ' || s[i] == '\n') ++i;
  if (s[i] != '[') return {std::stod(s.substr(i))};
  std::vector<double> values;
  std::stringstream list(s.substr(i + 1, s.find(']', i) - i - 1));
  for (std::string item; std::getline(list, item, ',');) values.push_back(std::stod(item));
  return values;
}

/// The number after `"key":` in a case's params.json.
inline double json_number(const std::string& dir, const std::string& key) {
  return json_numbers(dir, key).at(0);
}

/// The integer after `"key":` in a case's params.json.
inline std::int64_t json_int(const std::string& dir, const std::string& key) {
  return static_cast<std::int64_t>(json_number(dir, key));
}

}  // namespace tokred::testing
