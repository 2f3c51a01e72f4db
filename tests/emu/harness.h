// A minimal test harness for the emulator's C++ tests (no dependencies):
// EMU_TEST(name) { ... CHECK(cond); ... }. Run all: `emu_tests`; one: `emu_tests NAME`
// (CMake registers each EMU_TEST with ctest by name).
#pragma once

#include <cstdio>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace emu_test {

inline std::map<std::string, std::function<void()>>& registry() {
  static std::map<std::string, std::function<void()>> r;
  return r;
}
struct Register {
  Register(const char* name, std::function<void()> f) { registry()[name] = std::move(f); }
};

#define EMU_TEST(name)                                          \
  void test_##name();                                           \
  const ::emu_test::Register register_##name(#name, test_##name); \
  void test_##name()

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + \
                                          ": CHECK failed: " #cond);                              \
  } while (0)

// Runs f, which must throw a std::runtime_error whose message contains every needle.
inline void expect_error(const std::function<void()>& f, std::vector<std::string> needles) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    const std::string msg = e.what();
    for (const auto& n : needles)
      if (msg.find(n) == std::string::npos) throw std::runtime_error("error message lacks '" + n + "': " + msg);
    std::printf("    (reported as expected: %s)\n", msg.c_str());
    return;
  }
  throw std::runtime_error("expected an emulator error, got none");
}

}  // namespace emu_test
