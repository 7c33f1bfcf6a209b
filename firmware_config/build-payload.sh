#!/usr/bin/env bash
# Build the appliance payload that goes to /opt/checkpoint on every SD card image:
#   wheels/            the appliance wheel and (unless --no-deps) its dependencies as wheels for
#                      the Pi (linux aarch64, CPython 3.11: Raspberry Pi OS Bookworm), so first boot
#                      installs offline from the card;
#   systemd/           checkpoint.service, checkpoint-firstboot.service;
#   firmware_config/   firstboot.sh, config.example.toml, boot/config.txt.append.
# Then put it into an image with firmware_config/install-into-image.sh.
#
# Usage: firmware_config/build-payload.sh OUT_DIR [--no-deps]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: build-payload.sh OUT_DIR [--no-deps]}
with_deps=1
[ "${2:-}" = "--no-deps" ] && with_deps=0
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3

mkdir -p "$out/wheels" "$out/systemd" "$out/firmware_config/boot"
echo "build-payload: building the appliance wheel" >&2
"$python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$out/wheels" . 2>/dev/null
if [ $with_deps = 1 ]; then
  echo "build-payload: downloading dependency wheels for linux aarch64 / CPython 3.11" >&2
  "$python" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$out/wheels" \
    --python-version 3.11 --implementation cp --abi cp311 \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
    --platform linux_aarch64 "$(ls "$out"/wheels/checkpoint_appliance-*.whl)"
fi
cp systemd/checkpoint.service systemd/checkpoint-firstboot.service "$out/systemd/"  # not the server units
cp firmware_config/firstboot.sh firmware_config/config.example.toml "$out/firmware_config/"
cp firmware_config/boot/config.txt.append "$out/firmware_config/boot/"
echo "build-payload: wrote $out ($(ls "$out/wheels" | wc -l) wheels)" >&2
