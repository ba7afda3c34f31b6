// Must NOT compile: a memory bank is not an accumulation strategy. The assertion is the
// Trainer's static_assert: ctest (compile_fail.wrong_strategy) builds this file and passes
// only if the log carries "contaccum: Trainer's second parameter must satisfy Strategy".
#include <contaccum/contaccum.hpp>

int main() {
  using Model = contaccum::DualEncoder<contaccum::Bert, contaccum::ClsPooling>;
  contaccum::Trainer<Model, contaccum::DualBank> trainer(Model(contaccum::BertConfig{}));
  return 0;
}
