#include "harness.h"

int main(int argc, char** argv) {
  int failed = 0, ran = 0;
  for (auto& [name, fn] : emu_test::registry()) {
    if (argc > 1 && name != argv[1]) continue;
    ++ran;
    try {
      fn();
      std::printf("PASS %s\n", name.c_str());
    } catch (const std::exception& e) {
      ++failed;
      std::printf("FAIL %s: %s\n", name.c_str(), e.what());
    }
  }
  if (ran == 0) {
    std::printf("no test named %s\n", argc > 1 ? argv[1] : "");
    return 2;
  }
  std::printf("%d passed, %d failed\n", ran - failed, failed);
  return failed ? 1 : 0;
}
