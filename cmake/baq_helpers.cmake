# Helpers shared by every folder: one library per folder (baq_cc_library),
# one test binary per class (baq_cc_test). Warnings are errors on our code only.

set(BAQ_WARNING_FLAGS -Wall -Wextra -Werror -Wno-unused-parameter)

function(baq_cc_library name)
  cmake_parse_arguments(A "" "" "SRCS;DEPS;PUBLIC_DEPS" ${ARGN})
  add_library(${name} ${A_SRCS})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR})
  # C++ only: nvcc takes host-compiler warnings through -Xcompiler (worker/cuda/*.cu).
  target_compile_options(${name} PRIVATE "$<$<COMPILE_LANGUAGE:CXX>:${BAQ_WARNING_FLAGS}>"
                         "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra;-Werror=all-warnings>")
  target_link_libraries(${name} PUBLIC ${A_PUBLIC_DEPS} PRIVATE ${A_DEPS})
endfunction()

function(baq_cc_binary name)
  cmake_parse_arguments(A "" "OUTPUT_NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${name} ${A_SRCS})
  target_compile_options(${name} PRIVATE ${BAQ_WARNING_FLAGS})
  target_link_libraries(${name} PRIVATE ${A_DEPS})
  if(A_OUTPUT_NAME)
    set_target_properties(${name} PROPERTIES OUTPUT_NAME ${A_OUTPUT_NAME})
  endif()
endfunction()

# baq_cc_test(name SRCS ... DEPS ... [LABELS ...])
# Registers each TEST() with CTest; tests find the shared fixtures through
# BAQ_TEST_DATA_DIR and the build tree through BAQ_BINARY_DIR.
function(baq_cc_test name)
  cmake_parse_arguments(A "" "" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${A_SRCS})
  target_compile_options(${name} PRIVATE ${BAQ_WARNING_FLAGS})
  target_link_libraries(${name} PRIVATE ${A_DEPS} baq_testing GTest::gmock_main)
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS "${A_LABELS}")
endfunction()
