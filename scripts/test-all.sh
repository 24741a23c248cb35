#!/usr/bin/env bash
# The whole check, as CI runs it (`.ci/run`) and as the README tells you to:
# install pnpm if needed, install dependencies from the lockfile, build, start
# the test services, then typecheck, lint and test.
#
# Usage: bash scripts/test-all.sh    (from anywhere; needs Node >= 20.19)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf 'test-all: ERROR: %s\n' "$*" >&2
  exit 1
}

require_node() {
  command -v node >/dev/null 2>&1 || fail "node is not installed; install Node.js 20 (>= 20.19)"
  node -e '
    const [major, minor] = process.versions.node.split(".").map(Number);
    process.exit(major > 20 || (major === 20 && minor >= 19) ? 0 : 1);
  ' || fail "Node.js >= 20.19 is required, found $(node --version)"
}

# pnpm 10 from npm (corepack is not relied on).
ensure_pnpm() {
  local major=0
  if command -v pnpm >/dev/null 2>&1; then
    major=$(pnpm --version 2>/dev/null | cut -d. -f1) || major=0
  fi
  if [[ $major =~ ^[0-9]+$ ]] && ((major >= 10)); then
    echo "pnpm $(pnpm --version)"
    return
  fi
  step "npm install -g pnpm@10"
  if [[ -w "$(npm prefix -g)" ]]; then
    npm install -g pnpm@10
  elif command -v sudo >/dev/null 2>&1; then
    sudo -n npm install -g pnpm@10
  else
    fail "pnpm 10 is missing and the npm global prefix $(npm prefix -g) is not writable; run as root or install pnpm@10 yourself"
  fi
  hash -r
  command -v pnpm >/dev/null 2>&1 || fail "pnpm is still not on PATH after npm install -g pnpm@10"
  echo "pnpm $(pnpm --version)"
}

step "node $(node --version 2>/dev/null || echo missing)"
require_node
ensure_pnpm

step "pnpm install --frozen-lockfile"
pnpm install --frozen-lockfile

step "pnpm build"
pnpm build

step "bash scripts/services.sh up"
bash scripts/services.sh up

step "pnpm typecheck"
pnpm typecheck

step "pnpm lint"
pnpm lint

step "pnpm test"
pnpm test

step "all checks passed"
