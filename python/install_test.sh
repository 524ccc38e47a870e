#!/usr/bin/env bash
# The Python package as a user gets it (ctest `python_package`): a fresh venv (with the system's
# site packages: Debian's torch, numpy, scikit-learn), `pip install --no-build-isolation .` offline,
# pytest on python/tests against the installed package (never build/python), then
# `pip uninstall nfk`. The install reuses the CMake build folder, so it compiles nothing new.
#
#   python/install_test.sh [BUILD_DIR] [pytest args...]     # BUILD_DIR default <repo>/build
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-$repo/build}" && pwd)"
shift || true
python="${NFK_PYTHON:-/usr/bin/python3}"  # Debian's python3-torch lives under /usr/bin/python3
venv="$build/python-venv"
log() { printf '[python_package] %s\n' "$*"; }

rm -rf "$venv"
log "fresh venv: $python -m venv --system-site-packages $venv"
"$python" -m venv --system-site-packages "$venv"
log "pip install --no-build-isolation --no-index ."
(cd "$repo" && NFK_BUILD_DIR="$build" "$venv/bin/python" -m pip install -q --no-build-isolation \
  --no-index --no-cache-dir --disable-pip-version-check .)
"$venv/bin/python" -m pip show nfk >/dev/null

# From a folder outside the checkout, so that `import nfk` can only find the installed package.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
NFK_EXPECT_INSTALLED="$venv" NFK_CLI="$build/nfk" PYTHONPATH="" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$repo/python/tests" \
  "$repo/python/tests" "$@"

log "pip uninstall nfk"
"$venv/bin/python" -m pip uninstall -q -y nfk
if "$venv/bin/python" -c "import nfk" 2>/dev/null; then
  log "error: nfk still imports after pip uninstall"
  exit 1
fi
rm -rf "$venv"
log "ok"
