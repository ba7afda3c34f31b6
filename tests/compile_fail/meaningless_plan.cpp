// Must NOT compile: CachedReplay makes the whole step one loss, so it cannot score each
// micro-batch alone. ctest (compile_fail.meaningless_plan) builds this file and passes
// only if the log carries the AccumulationPlan banner.
#include <contaccum/contaccum.hpp>

int main() {
  contaccum::Accumulate<contaccum::CachedReplay, contaccum::MicroBatch> strategy;
  (void)strategy;
  return 0;
}
