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
# CUDA-enabled LibTorch: turn on the CUDA memory statistics and RNG paths.
if(TARGET torch_cuda OR TORCH_CUDA_LIBRARIES)
  set(CONTACCUM_WITH_CUDA ON)
endif()
