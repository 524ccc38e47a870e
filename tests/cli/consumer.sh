#!/usr/bin/env bash
# consumer.sh BUILD_DIR SOURCE_DIR: `cmake --install` the build tree into a temporary prefix,
# build tests/consumer (find_package(nfk) + nfk::nfk) against it and run it; then check the
# installed CLI runs and reads data from the installed default folder, not the source tree.
set -euo pipefail
build="$(cd "$1" && pwd)"
src="$(cd "$2" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { printf 'consumer: FAILED: %s\n' "$*" >&2; exit 1; }

prefix="$tmp/prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
  { cat "$tmp/install.log"; fail "cmake --install"; }
for f in include/nfk/nfk.h include/nfk/linalg.h bin/nfk; do
  [[ -e "$prefix/$f" ]] || fail "$f not installed"
done
config="$(find "$prefix" -name nfkConfig.cmake)"
[[ -n "$config" && -e "$(dirname "$config")/nfkConfigVersion.cmake" ]] || fail "no nfkConfig.cmake"
ls "$prefix"/lib*/libnfk.a >/dev/null || fail "libnfk.a not installed"

# ccache (when there is one) sees the same relative paths on every run: the prefix and build
# folders differ only under $tmp, which is the base dir.
configure=(cmake -S "$src/tests/consumer" -B "$tmp/build" -DCMAKE_BUILD_TYPE=Release
           -DCMAKE_PREFIX_PATH="$prefix")
command -v ninja >/dev/null && configure+=(-G Ninja)
if command -v ccache >/dev/null; then
  configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$tmp" CCACHE_NOHASHDIR=1
  export CCACHE_SLOPPINESS=include_file_mtime,include_file_ctime,time_macros
fi
"${configure[@]}" >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; fail "configure"; }
cmake --build "$tmp/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "build"; }
NFK_CONSUMER_TMP="$tmp" "$tmp/build/nfk_consumer" || fail "nfk_consumer"

# The installed CLI: it runs, and without NFK_DATA_DIR it looks for data outside the source tree.
"$prefix/bin/nfk" --help >/dev/null || fail "installed nfk --help"
set +e
msg="$(env -u NFK_DATA_DIR "$prefix/bin/nfk" features --type pixels --data mnist:test \
       --out "$tmp/x.npy" 2>&1)"
set -e
[[ "$msg" != *"$src/data"* ]] || fail "the installed CLI reads data from the source tree: $msg"
default="$(sed -n 's/^set(nfk_DATA_DIR_DEFAULT "\(.*\)").*/\1/p' "$config")"
if [[ -n "$default" && ! -d "$default/mnist" ]]; then
  [[ "$msg" == *"$default/mnist/"* ]] ||
    fail "the installed CLI should look for MNIST in $default/mnist: $msg"
fi
echo "consumer: all checks passed"
