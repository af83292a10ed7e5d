# How tests are registered (tests/CMakeLists.txt says how they are laid out).  Included before
# load-tests/ and tests/, which both use it.
set(SB_TEST_SKIP 77)

# sb_add_test(NAME SOURCES... LABEL label [TIMEOUT s] [LIBS ...]): one executable = one test.
function(sb_add_test name)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE sb_test ${T_LIBS})
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                       SKIP_RETURN_CODE ${SB_TEST_SKIP})
endfunction()

# sb_add_py_test(NAME SCRIPT LABEL label [TIMEOUT s] [ARGS ...] [ENV ...]): a Python test on
# Debian's interpreter, with tests/lib on its path.
function(sb_add_py_test name script)
  cmake_parse_arguments(T "" "LABEL;TIMEOUT" "ARGS;ENV" ${ARGN})
  add_test(NAME ${name} COMMAND ${SB_PYTHON} ${script} ${T_ARGS})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS ${T_LABEL} TIMEOUT ${T_TIMEOUT}
                       SKIP_RETURN_CODE ${SB_TEST_SKIP}
                       ENVIRONMENT "PYTHONPATH=${PROJECT_SOURCE_DIR}/tests/lib;${T_ENV}")
endfunction()

