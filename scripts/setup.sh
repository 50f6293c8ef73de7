#!/usr/bin/env bash
# One set-up for every README command: system packages (as root), npm packages, the native
# addon and the TypeScript build. Each step is skipped when already done, so it is cheap to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  missing=()
  dpkg -s libsecp256k1-dev >/dev/null 2>&1 || missing+=(libsecp256k1-dev)
  # the status pages' browser tests drive Debian's Chromium (playwright-core never downloads one)
  dpkg -s chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v make >/dev/null 2>&1 || missing+=(make)
  command -v g++ >/dev/null 2>&1 || missing+=(g++)
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
elif ! [ -f /usr/include/secp256k1_schnorrsig.h ]; then
  log "libsecp256k1-dev is not installed and we are not root: the native addon cannot be built"
  log "(install it with: sudo apt-get install libsecp256k1-dev); the pure-JS fallback will be used"
fi
if ! [ -x /usr/bin/chromium ]; then
  log "Debian's chromium is not installed: the status pages' browser tests will be skipped"
fi

# Install only when the lock file changed since the last install. `npm install --no-save` with
# the committed lock installs exactly the locked versions; `npm ci` cannot be used here because
# the registry mirror serves only this platform's optional packages (e.g. anvil's darwin/win32
# binaries 404), which npm drops from the lock and `npm ci` then reports as missing.
stamp=node_modules/.pegout-setup-stamp
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if ! [ -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "npm install (locked versions)"
  npm install --no-save --no-audit --no-fund
  echo "$want" > "$stamp"
else
  node scripts/build-native.mjs --if-stale
fi

log "compiling TypeScript"
npm run --silent build
