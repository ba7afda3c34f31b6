# The examples and benchmarks: one TU each, all with the same usage requirements, so they
# share one precompiled header of <torch/torch.h> and <contaccum/contaccum.hpp>. Parsing
# those two costs ~45 s of CPU per TU on the 2-core CI machine; loading the PCH ~7 s.
# The PCH belongs to an object library with an empty source (REUSE_FROM needs a target
# that owns it and that every program can see, whichever of examples/benchmarks is built).
function(contaccum_program name)
  if(NOT TARGET contaccum_program_pch)
    set(empty ${CMAKE_BINARY_DIR}/contaccum_program_pch.cpp)
    if(NOT EXISTS ${empty})
      file(WRITE ${empty} "// the owner of the examples' and benchmarks' precompiled header\n")
    endif()
    add_library(contaccum_program_pch OBJECT ${empty})
    target_link_libraries(contaccum_program_pch PRIVATE contaccum::contaccum)
    target_precompile_headers(contaccum_program_pch PRIVATE <torch/torch.h> <contaccum/contaccum.hpp>)
  endif()
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE contaccum::contaccum)
  target_precompile_headers(${name} REUSE_FROM contaccum_program_pch)
endfunction()
