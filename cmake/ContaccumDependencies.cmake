# Finds contaccum's dependencies; shared by the build and by the installed package config.
# Torch: the LibTorch of a PyTorch wheel (pass its torch.utils.cmake_prefix_path in
# CMAKE_PREFIX_PATH) or a standalone LibTorch 2.x.
include(CMakeFindDependencyMacro)
if(NOT TARGET torch)
  find_dependency(Torch 2.0)
endif()
if(NOT TARGET range-v3::range-v3)
  find_dependency(range-v3)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_dependency(nlohmann_json 3.10)  # config.json and safetensors headers
endif()
if(NOT TARGET Boost::headers)
  find_dependency(Boost 1.75 CONFIG COMPONENTS headers)  # 1.75+ ships Boost.PFR
endif()
# Tokenizers: ICU for Unicode properties, case mapping and normalisation forms; PCRE2 for
# the byte-level pre-tokenizer's split pattern (Unicode classes and a lookahead).
if(NOT TARGET ICU::uc)
  find_dependency(ICU 60 COMPONENTS uc)
endif()
if(NOT TARGET PkgConfig::PCRE2)
  find_dependency(PkgConfig)
  pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET GLOBAL libpcre2-8)
endif()
# CUDA-enabled LibTorch: turn on the CUDA memory statistics and RNG paths.
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(CONTACCUM_WITH_CUDA ON)
endif()
# Optional FAISS (include/contaccum/eval/faiss_index.hpp): approximate search for corpora too
# large for exact_search. CONTACCUM_WITH_FAISS: AUTO (default) uses it when found, ON
# requires it, OFF leaves it out. Debian's libfaiss-dev is a static libfaiss.a built with
# OpenMP and BLAS/LAPACK, so contaccum::faiss carries those too. It names them by path and
# by the OpenMP link flag, not by other imported targets, so it resolves from any
# directory; it is GLOBAL so that the contaccum target's $<TARGET_EXISTS:contaccum::faiss>
# sees it wherever contaccum is consumed. At run time the process has one OpenMP runtime:
# LibTorch's bundled libgomp.so.1 has the same soname as the system one.
if(NOT DEFINED CONTACCUM_WITH_FAISS)
  set(CONTACCUM_WITH_FAISS AUTO)
endif()
if(CONTACCUM_WITH_FAISS AND NOT TARGET contaccum::faiss)
  include(FindPackageMessage)
  find_path(CONTACCUM_FAISS_INCLUDE_DIR faiss/IndexIVFFlat.h)
  find_library(CONTACCUM_FAISS_LIBRARY NAMES faiss)
  find_library(CONTACCUM_FAISS_BLAS_LIBRARY NAMES blas openblas)
  find_library(CONTACCUM_FAISS_LAPACK_LIBRARY NAMES lapack openblas)
  find_package(OpenMP COMPONENTS CXX QUIET)
  if(CONTACCUM_FAISS_INCLUDE_DIR AND CONTACCUM_FAISS_LIBRARY AND CONTACCUM_FAISS_BLAS_LIBRARY
     AND CONTACCUM_FAISS_LAPACK_LIBRARY AND OpenMP_CXX_FOUND)
    separate_arguments(_contaccum_omp_flags NATIVE_COMMAND "${OpenMP_CXX_FLAGS}")
    add_library(contaccum::faiss UNKNOWN IMPORTED GLOBAL)
    set_target_properties(contaccum::faiss PROPERTIES
      IMPORTED_LOCATION "${CONTACCUM_FAISS_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${CONTACCUM_FAISS_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES "${CONTACCUM_FAISS_LAPACK_LIBRARY};${CONTACCUM_FAISS_BLAS_LIBRARY}"
      INTERFACE_LINK_OPTIONS "${_contaccum_omp_flags}")
    unset(_contaccum_omp_flags)
    find_package_message(contaccum_faiss "contaccum: FAISS: ${CONTACCUM_FAISS_LIBRARY} (eval/faiss_index.hpp on)"
                         "[${CONTACCUM_FAISS_LIBRARY}][${CONTACCUM_FAISS_INCLUDE_DIR}]")
  elseif(CONTACCUM_WITH_FAISS STREQUAL "AUTO")
    find_package_message(contaccum_faiss "contaccum: FAISS not found (eval/faiss_index.hpp off)" "[none]")
  else()
    message(FATAL_ERROR "contaccum: CONTACCUM_WITH_FAISS=${CONTACCUM_WITH_FAISS} but FAISS was not found "
            "(headers: ${CONTACCUM_FAISS_INCLUDE_DIR}, library: ${CONTACCUM_FAISS_LIBRARY}, "
            "BLAS: ${CONTACCUM_FAISS_BLAS_LIBRARY}, LAPACK: ${CONTACCUM_FAISS_LAPACK_LIBRARY}, "
            "OpenMP: ${OpenMP_CXX_FOUND}); install libfaiss-dev or set CONTACCUM_WITH_FAISS=OFF")
  endif()
endif()

# Optional c10d (include/contaccum/dist/c10d.hpp): multi-process training on LibTorch's own
# ProcessGroupGloo and TCPStore. The wheel ships c10d's headers and symbols but not gloo's
# headers, which ProcessGroupGloo.hpp includes; Debian's libgloo-dev provides them. They
# serve declarations only (docs/distributed.md): ProcessGroupGloo keeps gloo objects behind
# pointers and every gloo call happens inside libtorch_cpu.
if(NOT DEFINED CONTACCUM_WITH_C10D)
  set(CONTACCUM_WITH_C10D AUTO)
endif()
if(CONTACCUM_WITH_C10D AND NOT TARGET contaccum::c10d)
  include(FindPackageMessage)
  find_path(CONTACCUM_GLOO_INCLUDE_DIR gloo/rendezvous/store.h)
  set(_contaccum_pg_header "")
  foreach(_dir IN LISTS TORCH_INCLUDE_DIRS)
    if(EXISTS "${_dir}/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
      set(_contaccum_pg_header "${_dir}/torch/csrc/distributed/c10d/ProcessGroupGloo.hpp")
    endif()
  endforeach()
  if(CONTACCUM_GLOO_INCLUDE_DIR AND _contaccum_pg_header)
    add_library(contaccum::c10d INTERFACE IMPORTED GLOBAL)
    set_target_properties(contaccum::c10d PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${CONTACCUM_GLOO_INCLUDE_DIR}")
    find_package_message(contaccum_c10d "contaccum: c10d/Gloo: gloo headers in ${CONTACCUM_GLOO_INCLUDE_DIR} (dist/c10d.hpp on)"
                         "[${CONTACCUM_GLOO_INCLUDE_DIR}][${_contaccum_pg_header}]")
  elseif(CONTACCUM_WITH_C10D STREQUAL "AUTO")
    find_package_message(contaccum_c10d "contaccum: gloo headers not found (dist/c10d.hpp off; apt install libgloo-dev)" "[none]")
  else()
    message(FATAL_ERROR "contaccum: CONTACCUM_WITH_C10D=${CONTACCUM_WITH_C10D} but gloo's headers "
            "(${CONTACCUM_GLOO_INCLUDE_DIR}) or LibTorch's ProcessGroupGloo.hpp were not found; "
            "install libgloo-dev or set CONTACCUM_WITH_C10D=OFF")
  endif()
  unset(_contaccum_pg_header)
endif()
