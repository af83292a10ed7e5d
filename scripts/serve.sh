#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (idempotent), builds SoulBox and starts the server on its
# embedded defaults: 127.0.0.1:3000, data in /var/lib/soulbox, no Redis, no config file.
# Extra arguments go to `soulbox serve` (e.g. --port 8080).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec build/bin/soulbox serve "$@"
