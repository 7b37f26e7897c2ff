#!/usr/bin/env bash
# Proves the suite passes every time: a fresh clone of the current commit (uncommitted changes are not
# included), one `npm ci`, then `npm test` N times (default 10) while another process keeps one core busy.
#
#   npm run test:soak            # 10 runs
#   npm run test:soak -- 3       # 3 runs
#
# Prints one line per run and a final tally, `soak: N passed, M failed`; exits non-zero if any run
# failed. The logs of every run stay in the directory printed at the start.
set -euo pipefail

runs="${1:-${SOAK_RUNS:-10}}"
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [runs]   (a positive number of runs, default 10)" >&2
  exit 2
fi

repo="$(git rev-parse --show-toplevel)"
commit="$(git -C "$repo" rev-parse HEAD)"
work="$(mktemp -d "${TMPDIR:-/tmp}/keywarden-soak.XXXXXX")"
logs="$work/logs"
mkdir -p "$logs"
busy_pid=""

cleanup() {
  if [[ -n "$busy_pid" ]]; then
    kill "$busy_pid" 2>/dev/null || true
    wait "$busy_pid" 2>/dev/null || true
  fi
  rm -rf "$work/keywarden"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "soak: commit $commit, $runs runs, logs in $logs"
git clone --quiet --no-hardlinks "$repo" "$work/keywarden"
git -C "$work/keywarden" checkout --quiet --detach "$commit"
cd "$work/keywarden"
npm ci --no-audit --no-fund >"$logs/npm-ci.log" 2>&1 || {
  echo "soak: npm ci failed, see $logs/npm-ci.log" >&2
  exit 1
}

# The load: one process spinning on one core (pinned to the last core when taskset is available).
spin=(node -e "for (;;) {}")
if command -v taskset >/dev/null 2>&1; then
  "${spin[@]}" &
  busy_pid=$!
  taskset -cp "$(($(nproc) - 1))" "$busy_pid" >/dev/null 2>&1 || true
else
  "${spin[@]}" &
  busy_pid=$!
fi
echo "soak: busy process $busy_pid keeps one core busy"

passed=0
failed=0
for ((i = 1; i <= runs; i++)); do
  start=$(date +%s)
  if npm test >"$logs/run-$i.log" 2>&1; then
    result="passed"
    passed=$((passed + 1))
  else
    result="FAILED (log: $logs/run-$i.log)"
    failed=$((failed + 1))
  fi
  echo "soak: run $i/$runs $result in $(($(date +%s) - start)) s"
done

echo "soak: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]
