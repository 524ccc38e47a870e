#!/usr/bin/env bash
# Shared by the CLI checks (bad_input.sh, reliability.sh): source it with the nfk binary as $1.
# Sets nfk, py, tmp (removed on exit), w (inputs and outputs, snapshotted around every failing
# run), log, o=$w/out (where failing runs write; it must stay empty) and defines
#   expect_fail CASE KEYWORD OUT [OUT...] -- NFK-ARGS...   a run that must fail with one line
#   must CASE NFK-ARGS...                                  a run that must succeed (setup)
#   fail CASE WHY, check CASE CONDITION-COMMAND...          record a failure / assert
#   finish                                                  summary and exit status
nfk=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3  # Debian's python3 with python3-torch and python3-numpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
w=$tmp/work  # inputs and outputs; snapshotted around every failing run
log=$tmp/log # stdout/stderr of the run under test
mkdir -p "$w" "$log"

failures=0
fail() {  # case, why
  echo "FAIL: $1: $2"
  failures=$((failures + 1))
}

snapshot() {  # every file under $w with its size and checksum
  (cd "$w" && find . -mindepth 1 -printf '%y %p\n' | sort && find . -type f -exec sha256sum {} + | sort)
}

# expect_fail CASE KEYWORD OUT [OUT...] -- NFK-ARGS...
# KEYWORD is an extended regex matched case-insensitively against the error line. Each OUT must
# not exist afterwards (nor a .nfk-*.tmp beside it); use `-` for none. Nothing under $w may change.
expect_fail() {
  local name=$1 key=$2
  shift 2
  local outs=()
  while [[ $1 != -- ]]; do
    [[ $1 != - ]] && outs+=("$1")
    shift
  done
  shift
  local before after rc=0
  before=$(snapshot)
  # Bounded: a hang (a FIFO read, a loop) shows as exit status 124.
  timeout "${NFK_CASE_TIMEOUT:-300}" "$nfk" "$@" >"$log/stdout" 2>"$log/stderr" || rc=$?
  after=$(snapshot)
  local lines nlines
  lines=$(grep -v '^[[:space:]]*$' "$log/stderr" || true)
  nlines=$(printf '%s' "$lines" | grep -c '' || true)
  local why=()
  ((rc != 0)) || why+=("exit status 0")
  ((rc != 124)) || why+=("timed out (a hang)")
  ((rc < 128)) || why+=("killed by a signal (exit status $rc)")
  ((nlines == 1)) || why+=("$nlines non-empty stderr lines, expected 1")
  if grep -Eq 'frame #|Exception raised from|terminate called' "$log/stderr"; then
    why+=("C++ backtrace on stderr")
  fi
  printf '%s' "$lines" | grep -Eqi -- "$key" || why+=("error does not mention /$key/")
  local o
  for o in "${outs[@]}"; do
    [[ ! -e $o ]] || why+=("output $o was left behind")
    if compgen -G "$(dirname "$o")/.nfk-*.tmp" >/dev/null; then why+=("temp file .nfk-*.tmp was left beside $o"); fi
  done
  if [[ $before != "$after" ]]; then
    local changes
    changes=$(diff <(echo "$before") <(echo "$after") | grep '^[<>]' | tr '\n' ' ' || true)
    why+=("files under the work folder changed: $changes")
  fi
  if ((${#why[@]} == 0)); then
    echo "ok: $name"
  else
    local IFS=';'
    fail "$name" "${why[*]}"
    echo "  command: nfk $(printf '%q ' "$@")"
    echo "  exit status: $rc"
    sed 's/^/  stderr| /' "$log/stderr" | head -20
  fi
  # keep later cases independent of this one's leftovers
  for o in "${outs[@]}"; do rm -rf "$o"; done
  find "$w/out" -mindepth 1 -delete
}

must() {  # case, nfk args...: a run that has to succeed to set up later cases
  local name=$1
  shift
  if ! "$nfk" "$@" >"$log/stdout" 2>"$log/stderr"; then
    fail "$name" "setup command failed: nfk $*"
    sed 's/^/  stderr| /' "$log/stderr" | head -20
    return 1
  fi
}

o=$w/out
mkdir -p "$o"

check() {  # case, command...: the command must succeed
  local name=$1
  shift
  if "$@"; then echo "ok: $name"; else fail "$name" "check failed: $*"; fi
}

finish() {
  local leftover
  leftover=$(find "$o" -mindepth 1)
  [[ -z $leftover ]] || fail "output folder" "files left in it: $leftover"
  if ((failures > 0)); then
    echo "$failures case(s) failed"
    exit 1
  fi
  echo "all cases passed"
}
