#!/usr/bin/env bash
# Set up everything this checkout needs, idempotently: a virtual environment in .venv with the
# project and its dependencies, and (when run as root on Debian / Raspberry Pi OS) the system
# packages the appliance uses: libzbar0 (pyzbar fallback decoder) and, for the tests, chromium
# (staff-screen page test), a C compiler with kernel headers (python-evdev, the USB scanner
# source, ships no wheels) and nginx (TLS reverse-proxy test). Re-running is cheap: pip runs
# again only when pyproject.toml changed.
#
#   scripts/bootstrap.sh           the device install: what the daemon runs, nothing more
#   scripts/bootstrap.sh --demo    + the central server, OpenCV and the tools (checkpoint demo, bench)
#   scripts/bootstrap.sh --dev     + the test tools (scripts/test.sh)
#
# On a Raspberry Pi (apt's picamera2 or lgpio present) the venv sees the system site packages and
# pip keeps the system numpy, with the constraints of this OS release (firmware_config/constraints/).
set -euo pipefail
cd "$(dirname "$0")/.."

level=0 extras="" name=device plan_only=0
case "${1:-}" in
  --dev) level=2 extras="[dev]" name=dev ;;
  --demo) level=1 extras="[demo]" name=demo ;;
  --plan) plan_only=1 ;;  # print how the venv would be made (system site packages, constraints) and stop
  "") ;;
  *) echo "usage: scripts/bootstrap.sh [--demo|--dev|--plan]" >&2; exit 2 ;;
esac
DIST_PACKAGES=${DIST_PACKAGES:-/usr/lib/python3/dist-packages}
OS_RELEASE=${OS_RELEASE:-/etc/os-release}
want_dev=0
[ $level = 2 ] && want_dev=1

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

if [ $plan_only = 0 ] && command -v dpkg-query >/dev/null; then
  pkgs=(libzbar0)
  [ $want_dev = 1 ] && pkgs+=(chromium gcc libc6-dev linux-libc-dev python3-dev nginx-light)
  apt_install "${pkgs[@]}"
fi

# A Pi's camera and pin libraries come from the OS archive, never from PyPI: let the venv see them.
system_python_packages=0
for lib in picamera2 lgpio; do
  compgen -G "$DIST_PACKAGES/${lib}*" >/dev/null && system_python_packages=1
done
constraints=()
if [ $system_python_packages = 1 ]; then
  codename=$(. "$OS_RELEASE" 2>/dev/null && echo "${VERSION_CODENAME:-}")
  if [ -f "firmware_config/constraints/$codename.txt" ]; then
    constraints=(-c "firmware_config/constraints/$codename.txt")
  else
    say "no constraints for OS release '${codename:-unknown}' in firmware_config/constraints/: numpy is not pinned"
  fi
fi

if [ $plan_only = 1 ]; then
  echo "system_site_packages=$system_python_packages constraints=${constraints[1]:-none}"
  exit 0
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  venv_flags=()
  [ $system_python_packages = 1 ] && venv_flags+=(--system-site-packages)
  if ! "$PYTHON" -m venv "${venv_flags[@]}" .venv; then
    say "python3 -m venv failed. On Debian: sudo apt-get install python3-venv"
    exit 2
  fi
fi

# .venv/.installed holds "<pyproject digest> <level>": a dev install also serves the demo and the device.
digest=$(sha256sum pyproject.toml | cut -c1-16)
read -r have_digest have_level < .venv/.installed 2>/dev/null || true
[ "${have_digest:-}" = "$digest" ] && [ "${have_level:-}" -ge "$level" ] 2>/dev/null && exit 0
say "installing the project ($name) and its dependencies into .venv (first run takes a minute)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
.venv/bin/python -m pip install -q --disable-pip-version-check "${constraints[@]}" -e ".${extras}"
echo "$digest $level" > .venv/.installed
