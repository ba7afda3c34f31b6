// Must NOT compile: a memory bank is not an accumulation strategy. The build log must
// carry the banner "contaccum: Trainer's second parameter must satisfy Strategy".
#include <contaccum/contaccum.hpp>

int main() {
  using Model = contaccum::DualEncoder<contaccum::Bert, contaccum::ClsPooling>;
  contaccum::Trainer<Model, contaccum::DualBank> trainer(Model(contaccum::BertConfig{}));
  return 0;
}
