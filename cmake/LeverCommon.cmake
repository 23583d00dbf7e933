# Helpers shared by every layer's CMakeLists.txt.

# lever_warnings(<target>): the project's warning set; -Werror with LEVER_WERROR.
function(lever_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wnon-virtual-dtor
    $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local>
    -Wno-missing-field-initializers
    $<$<BOOL:${LEVER_WERROR}>:-Werror>)
endfunction()

# lever_test(<name> SOURCES ... LIBS ...): a GoogleTest binary registered in
# CTest, one CTest entry per test case.
function(lever_test name)
  if(NOT LEVER_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  lever_warnings(${name})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main GTest::gmock)
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  gtest_discover_tests(${name}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
    PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
    DISCOVERY_TIMEOUT 60)
endfunction()

# lever_fuzzer(<name> SOURCES ... LIBS ... CORPUS <dir>): with clang and
# LEVER_BUILD_FUZZERS a libFuzzer binary; otherwise the same entry point linked
# with a small driver that replays the corpus, registered as a CTest test so the
# corpus is a regression suite on every build.
function(lever_fuzzer name)
  cmake_parse_arguments(F "" "CORPUS" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${F_SOURCES})
  lever_warnings(${name})
  target_link_libraries(${name} PRIVATE ${F_LIBS})
  if(LEVER_BUILD_FUZZERS AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  else()
    target_sources(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc)
    if(LEVER_BUILD_TESTS)
      add_test(NAME ${name}_corpus COMMAND ${name} ${F_CORPUS})
      set_tests_properties(${name}_corpus PROPERTIES LABELS fuzz TIMEOUT 120)
    endif()
  endif()
endfunction()

# lever_grpc_proto(<file.proto> <out dir> <var>): generates the protobuf and
# gRPC C++ code of one proto file into <out dir> and sets <var> to the two
# .cc files to compile.
function(lever_grpc_proto proto out var)
  get_filename_component(dir ${proto} DIRECTORY)
  get_filename_component(name ${proto} NAME_WE)
  file(MAKE_DIRECTORY ${out})
  get_target_property(plugin gRPC::grpc_cpp_plugin LOCATION)
  add_custom_command(
    OUTPUT ${out}/${name}.pb.cc ${out}/${name}.pb.h ${out}/${name}.grpc.pb.cc ${out}/${name}.grpc.pb.h
    COMMAND protobuf::protoc
    ARGS --proto_path=${dir} --cpp_out=${out} --grpc_out=${out} --plugin=protoc-gen-grpc=${plugin} ${proto}
    DEPENDS ${proto}
    COMMENT "Generating C++ from ${name}.proto")
  set(${var} ${out}/${name}.pb.cc ${out}/${name}.grpc.pb.cc PARENT_SCOPE)
endfunction()
