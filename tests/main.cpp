// The Catch2 runner for every TU of contaccum_tests (kept out of the precompiled header).
// `contaccum_tests --worker ...` runs a child process of the resume tests instead
// (tests/unit/test_resume.cpp): a run that must continue in a *new* process; and
// `--dist-worker ...` one rank of the multi-process tests (tests/unit/test_dist.cpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstring>

// The tests use Catch2 v2's API (Catch::Contains, CHECK_THROWS_WITH, catch_discover_tests).
static_assert(CATCH_VERSION_MAJOR == 2, "contaccum's tests are written for Catch2 v2 (Debian's catch2 package)");

namespace test {
int run_worker(int argc, char** argv);  // tests/unit/test_resume.cpp
#ifdef CONTACCUM_WITH_C10D
int run_dist_worker(int argc, char** argv);  // tests/unit/test_dist.cpp
#endif
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--worker") == 0) return test::run_worker(argc, argv);
#ifdef CONTACCUM_WITH_C10D
  if (argc > 1 && std::strcmp(argv[1], "--dist-worker") == 0) return test::run_dist_worker(argc, argv);
#endif
  return Catch::Session().run(argc, argv);
}
