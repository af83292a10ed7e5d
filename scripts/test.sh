#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotent), builds SoulBox and runs the whole test suite
# twice: a release build (unit, integration, security, load smoke) and an ASan+UBSan build
# (everything but the load smoke runs).  Exit status is non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
jobs="$(nproc)"
# Every runtime the setup installed must pass its end-to-end plugin test (none skipped).
SB_REQUIRE_PLUGINS="$(sed -n 's/^SB_REQUIRE_PLUGINS="\(.*\)"$/\1/p' scripts/setup-deps.sh)"
export SB_REQUIRE_PLUGINS

echo "== release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

echo "== ASan+UBSan build"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DSB_ASAN=ON -DSB_UBSAN=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs" -LE load)
