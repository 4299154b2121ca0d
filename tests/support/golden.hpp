// tests/support/golden.hpp — reading the golden cases copied under tests/data/golden/.
#pragma once

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

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

/// The integer after `"key":` in a case's params.json (the files are flat and machine-written).
inline std::int64_t json_int(const std::string& dir, const std::string& key) {
  std::ifstream f(dir + "params.json");
  std::stringstream text;
  text << f.rdbuf();
  const std::string s = text.str();
  const auto at = s.find("\"" + key + "\"");
  INFO(key);
  REQUIRE(at != std::string::npos);
  return std::stoll(s.substr(s.find(':', at) + 1));
}

}  // namespace tokred::testing
