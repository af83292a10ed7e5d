#!/usr/bin/env bash
# Installs everything SoulBox needs to build, run and test, from Debian's packages (and npm for
# browser assets / test clients). Idempotent: re-running it on a set-up machine is a fast no-op.
set -euo pipefail

PKGS=(
  build-essential cmake pkg-config git ca-certificates
  libuv1-dev libnng-dev libmsgpack-dev node-llhttp libwebsockets-dev libjwt-dev
  libjansson-dev libhiredis-dev libseccomp-dev libssl-dev libsqlite3-dev
  # runtimes the built-in table and tests use
  python3 nodejs bash
  # test tools
  curl python3-requests python3-websockets redis-server clang libclang-rt-14-dev
  prometheus python3-prometheus-client
  valgrind iproute2 procps util-linux
  # the playground's browser test: Debian's chromium, driven by playwright-core (npm, below)
  chromium fonts-dejavu-core
)

# Language runtimes for the plugins (plugins/*/manifest.toml "packages"), tested end to end by
# tests/integration/plugins (every name in SB_REQUIRE_PLUGINS must be installed and pass).  Heavy ones (ghc,
# r-base-core, default-jdk-headless) have manifests but stay out of the default set.
LANG_PKGS=(
  python3 python3-matplotlib nodejs node-typescript bash dash gcc g++ libc6-dev golang-go rustc
  ruby php-cli perl lua5.4 gfortran fp-compiler fp-units-rtl tcl sqlite3 gawk erlang-base elixir
  guile-3.0
)
# CI exports this before ctest so a missing runtime fails instead of being skipped:
SB_REQUIRE_PLUGINS="python,javascript,typescript,bash,sh,c,cpp,go,rust,ruby,php,perl,lua,fortran,pascal,tcl,sqlite,awk,erlang,elixir,scheme"
PKGS+=("${LANG_PKGS[@]}")

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm itself (nodesource's nodejs ships it; Debian's splits it out).
if ! command -v npm >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm
fi

# Browser assets of the playground (xterm.js) and the browser test's driver (playwright-core),
# from npm by their lockfiles into .cache/ (git-ignored, never committed).  No install scripts
# run and no browser is downloaded: the test drives Debian's chromium.  Skipped when the
# installed lockfile matches.
npm_ci() { # npm_ci SRC_DIR DEST_DIR
  local src="$1" dst="$2"
  if [ -d "$dst/node_modules" ] && cmp -s "$src/package-lock.json" "$dst/package-lock.json"; then
    return 0
  fi
  mkdir -p "$dst"
  cp "$src/package.json" "$src/package-lock.json" "$dst/"
  (cd "$dst" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund \
     --loglevel=error >/dev/null)
}
root="$(cd "$(dirname "$0")/.." && pwd)"
npm_ci "$root/gateway/playground" "$root/.cache/playground"
npm_ci "$root/tests/integration/playground" "$root/.cache/playground-test"
