# cmake -P script: configure, build and run the consumer project in one MODE.
#   find_package:     install contaccum into a prefix, then find_package it from there
#   add_subdirectory: pull the checkout in with add_subdirectory
set(build ${WORK_DIR}/${MODE})
file(REMOVE_RECURSE ${build})
set(prefix ${PREFIX_PATH})
if(MODE STREQUAL "find_package")
  set(install_prefix ${WORK_DIR}/install)
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib-build
                    -DCMAKE_PREFIX_PATH=${PREFIX_PATH} -DCMAKE_INSTALL_PREFIX=${install_prefix}
                    -DCONTACCUM_BUILD_TESTS=OFF -DCONTACCUM_BUILD_EXAMPLES=OFF -DCONTACCUM_BUILD_BENCHMARKS=OFF
                  RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "configuring contaccum for install failed")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${WORK_DIR}/lib-build RESULT_VARIABLE rc)
  if(rc)
    message(FATAL_ERROR "installing contaccum failed")
  endif()
  list(PREPEND prefix ${install_prefix})
endif()
string(REPLACE ";" "\\;" prefix_arg "${prefix}")
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${build}
                  -DCMAKE_PREFIX_PATH=${prefix_arg} -DCONTACCUM_CONSUMER_MODE=${MODE}
                  -DCONTACCUM_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=
                  # no build type, so no optimisation: what is tested is the packaging, and
                  # -O0 compiles the trainer in half the time of Release
                RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "configuring the consumer (${MODE}) failed")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${build} -j2 RESULT_VARIABLE rc)
if(rc)
  message(FATAL_ERROR "building the consumer (${MODE}) failed")
endif()
execute_process(COMMAND ${build}/consumer RESULT_VARIABLE rc OUTPUT_VARIABLE out)
message(STATUS "${out}")
if(rc OR NOT out MATCHES "consumer ok")
  message(FATAL_ERROR "the consumer (${MODE}) did not run: ${rc}")
endif()
