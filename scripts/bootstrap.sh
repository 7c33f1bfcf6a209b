#!/usr/bin/env bash
# Set up everything this checkout needs, idempotently: a virtual environment in .venv with the
# project and its dependencies, and (when run as root on Debian / Raspberry Pi OS) the system
# packages the appliance uses: libzbar0 (pyzbar fallback decoder) and, for the tests, chromium
# (staff-screen page test), a C compiler with kernel headers (python-evdev, the USB scanner
# source, ships no wheels) and nginx (TLS reverse-proxy test). Re-running is cheap: pip runs
# again only when pyproject.toml changed.
#
# Usage: scripts/bootstrap.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."

want_dev=0
[ "${1:-}" = "--dev" ] && want_dev=1

say() { printf 'bootstrap: %s\n' "$*" >&2; }

PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  say "need Python >= 3.11 as '$PYTHON' (found: $("$PYTHON" --version 2>&1 || echo none))."
  say "On Debian 12 / Raspberry Pi OS: sudo apt-get install python3 python3-venv"
  exit 2
fi

apt_install() {
  # Install Debian packages that are missing, when we may (root + apt). Never fatal.
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}") \
      >/dev/null 2>&1 || say "could not install ${missing[*]}: the features that need them are skipped"
  else
    say "system packages missing: ${missing[*]} (install with: sudo apt-get install ${missing[*]})"
  fi
}

if command -v dpkg-query >/dev/null; then
  pkgs=(libzbar0)
  [ $want_dev = 1 ] && pkgs+=(chromium gcc libc6-dev linux-libc-dev python3-dev nginx-light)
  apt_install "${pkgs[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  venv_flags=()
  # On a Pi, picamera2 and lgpio come from the OS archive (apt): let the venv see them.
  [ -e /usr/lib/python3/dist-packages/picamera2 ] && venv_flags+=(--system-site-packages)
  if ! "$PYTHON" -m venv "${venv_flags[@]}" .venv; then
    say "python3 -m venv failed. On Debian: sudo apt-get install python3-venv"
    exit 2
  fi
fi

# .venv/.installed holds "<pyproject digest> <extras>"; a dev install also serves the demo.
digest=$(sha256sum pyproject.toml | cut -c1-16)
installed=$(cat .venv/.installed 2>/dev/null || true)
if [ $want_dev = 1 ]; then
  wanted="$digest dev"
  [ "$installed" = "$wanted" ] && exit 0
  extras="[dev]"
else
  wanted="$digest base"
  [ "$installed" = "$wanted" ] || [ "$installed" = "$digest dev" ] && exit 0
  extras="[server]"  # the demo runs the central server too
fi
say "installing the project and its dependencies into .venv (first run takes a minute)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"
echo "$wanted" > .venv/.installed
