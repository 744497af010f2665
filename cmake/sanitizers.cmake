# Sanitizer and fuzzing builds (docs/fuzzing.md).
#
#   -DMEMFIT_SANITIZE=ON  everything built with ASan + UBSan (g++ or clang++);
#                         any UB aborts (no recovery), so the tests fail on it.
#   -DMEMFIT_FUZZ=ON      the libFuzzer targets of fuzz/ (clang++ only). The
#                         library modules are instrumented for coverage
#                         (-fsanitize=fuzzer-no-link) under ASan + UBSan; the
#                         targets link libFuzzer's main. Tests, benchmarks, the
#                         Python module, the CLI and the modules no reader
#                         needs (models, autodiff, sched, remat, optimize: no
#                         CBC) are not built.
option(MEMFIT_SANITIZE "Build with AddressSanitizer + UndefinedBehaviorSanitizer" OFF)
option(MEMFIT_FUZZ "Build only the libFuzzer targets (needs clang++)" OFF)

set(MEMFIT_SANITIZER_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)

if(MEMFIT_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MEMFIT_FUZZ=ON needs clang (libFuzzer): configure with -DCMAKE_CXX_COMPILER=clang++ "
                        "(found ${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER})")
  endif()
  # Fuzz mode builds the readers and their targets, nothing else.
  set(MEMFIT_BUILD_TESTS OFF CACHE BOOL "Build the GoogleTest suites" FORCE)
  set(MEMFIT_BUILD_BENCH OFF CACHE BOOL "Build the benchmark programs" FORCE)
  set(MEMFIT_BUILD_PYTHON OFF CACHE BOOL "Build the Python module (needs pybind11)" FORCE)
  # -g for symbolized stacks in crash reports; -UNDEBUG keeps the internal
  # assertions on whatever the build type.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer -g -UNDEBUG)
  add_link_options(-fsanitize=address,undefined)
elseif(MEMFIT_SANITIZE)
  # A Python interpreter cannot load an ASan-built extension without
  # preloading the runtime: the module (and its tests) is off by default.
  set(MEMFIT_BUILD_PYTHON OFF CACHE BOOL "Build the Python module (needs pybind11)")
  add_compile_options(${MEMFIT_SANITIZER_FLAGS} -g)
  add_link_options(-fsanitize=address,undefined)
endif()
