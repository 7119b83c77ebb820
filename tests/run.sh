#!/bin/sh
# Run every test of a build and print "N passed, N failed" last.
#   sh tests/run.sh [BUILD]     (default build/)
# C tests (cmocka) and the busted specs both report in TAP; a test binary
# that crashes counts as a failure even if it printed no TAP.
B=${1:-build}
LOG=$(mktemp -d)
trap 'rm -rf "$LOG"' EXIT
passed=0
failed=0

# count_tap FILE STATUS NAME: add FILE's ok / not ok lines to the totals.
count_tap() {
  ok=$(grep -c '^ok ' "$1")
  bad=$(grep -c '^not ok ' "$1")
  if [ "$2" -ne 0 ] && [ "$bad" -eq 0 ]; then
    echo "FAIL: $3 exited with status $2" >&2
    bad=1
  fi
  passed=$((passed + ok))
  failed=$((failed + bad))
}

for t in "$B"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  echo "== C: $name"
  CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$LOG/$name" 2>&1
  st=$?
  grep -v '^ok ' "$LOG/$name"
  count_tap "$LOG/$name" "$st" "$name"
done

if [ -x "$B/examples/embed" ]; then
  echo "== example: embed"
  if "$B/examples/embed" >"$LOG/embed" 2>&1; then
    passed=$((passed + 1))
  else
    cat "$LOG/embed"
    echo "FAIL: examples/embed" >&2
    failed=$((failed + 1))
  fi
fi

echo "== Lua specs (busted under $B/vlua)"
VLUA_BIN="$B/vlua" "$B/vlua" tests/busted.lua -o TAP tests/lua >"$LOG/specs" 2>&1
st=$?
grep -v '^ok ' "$LOG/specs"
count_tap "$LOG/specs" "$st" "busted"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
