# Finds every dependency from its Debian package and fails with a message naming the package
# to install when one is missing.  Each dependency becomes an imported target sb::<name>.
find_package(PkgConfig)
if(NOT PkgConfig_FOUND)
  message(FATAL_ERROR "pkg-config not found: apt-get install pkg-config (or run scripts/setup-deps.sh)")
endif()

function(sb_pkg target module debpkg)
  pkg_check_modules(_sb_${target} QUIET IMPORTED_TARGET ${module})
  if(NOT _sb_${target}_FOUND)
    message(FATAL_ERROR "Missing dependency '${module}': apt-get install ${debpkg} (or run scripts/setup-deps.sh)")
  endif()
  add_library(sb::${target} INTERFACE IMPORTED GLOBAL)
  target_link_libraries(sb::${target} INTERFACE PkgConfig::_sb_${target})
endfunction()

sb_pkg(uv        libuv         libuv1-dev)
sb_pkg(msgpack   msgpack       libmsgpack-dev)
sb_pkg(lws       libwebsockets libwebsockets-dev)
sb_pkg(jwt       libjwt        libjwt-dev)
sb_pkg(jansson   jansson       libjansson-dev)
sb_pkg(hiredis   hiredis       libhiredis-dev)
sb_pkg(seccomp   libseccomp    libseccomp-dev)
sb_pkg(crypto    libcrypto     libssl-dev)
sb_pkg(sqlite    sqlite3       libsqlite3-dev)

# NNG ships a CMake package config, not a .pc file.
find_package(nng CONFIG QUIET)
if(NOT nng_FOUND)
  message(FATAL_ERROR "Missing dependency 'nng': apt-get install libnng-dev (or run scripts/setup-deps.sh)")
endif()
add_library(sb::nng INTERFACE IMPORTED GLOBAL)
target_link_libraries(sb::nng INTERFACE nng::nng)

# llhttp: Debian's node-llhttp installs the generated C sources; we compile them here (never
# copied into the repository).
set(SB_LLHTTP_SRC_DIR /usr/share/llhttp CACHE PATH "where node-llhttp installs llhttp's C sources")
set(SB_LLHTTP_INC_DIR /usr/share/include/llhttp CACHE PATH "where node-llhttp installs llhttp.h")
foreach(f api.c http.c llhttp.c)
  if(NOT EXISTS ${SB_LLHTTP_SRC_DIR}/${f})
    message(FATAL_ERROR "Missing ${SB_LLHTTP_SRC_DIR}/${f}: apt-get install node-llhttp (or run scripts/setup-deps.sh)")
  endif()
endforeach()
add_library(sb_llhttp STATIC ${SB_LLHTTP_SRC_DIR}/api.c ${SB_LLHTTP_SRC_DIR}/http.c
            ${SB_LLHTTP_SRC_DIR}/llhttp.c)
target_include_directories(sb_llhttp SYSTEM PUBLIC ${SB_LLHTTP_INC_DIR})
# Third-party code: build it without our warning flags.
target_compile_options(sb_llhttp PRIVATE -w)
set_target_properties(sb_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
add_library(sb::llhttp ALIAS sb_llhttp)
