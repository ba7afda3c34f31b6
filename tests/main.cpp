// The Catch2 runner for every TU of contaccum_tests (kept out of the precompiled header).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>

// The tests use Catch2 v2's API (Catch::Contains, CHECK_THROWS_WITH, catch_discover_tests).
static_assert(CATCH_VERSION_MAJOR == 2, "contaccum's tests are written for Catch2 v2 (Debian's catch2 package)");
