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
