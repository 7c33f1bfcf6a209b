#!/usr/bin/env bash
# Build the appliance payload that goes to /opt/checkpoint on every SD card image:
#   wheels/            the appliance wheel and (unless --no-deps) every dependency as a wheel for the
#                      Pi (linux aarch64 unless --arch says otherwise, the target's CPython), so nothing
#                      is downloaded on the device;
#   wheels.sha256      the lock: every wheel by SHA-256 (bake.sh refuses a payload that differs);
#   constraints.txt    the target's pins (numpy from the system on Bookworm, numpy 2 on Trixie);
#   os-packages.txt    the OS packages the image step bakes in;
#   systemd/           checkpoint.service, checkpoint-firstboot.service;
#   firmware_config/   bake.sh, firstboot.sh, config.example.toml, boot/config.txt.append.
# Then put it into an image with firmware_config/install-into-image.sh.
#
# Usage: firmware_config/build-payload.sh OUT_DIR [--target bookworm|trixie] [--arch aarch64|x86_64] [--no-deps]
#   bookworm: Raspberry Pi OS 12 (CPython 3.11, system numpy 1.24); trixie: Raspberry Pi OS 13 (3.13).
#   --arch x86_64: the same payload for a PC (scripts/check-units.sh boots it under systemd there).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: build-payload.sh OUT_DIR [--target bookworm|trixie] [--arch aarch64|x86_64] [--no-deps]}
shift
target=bookworm arch=aarch64 with_deps=1
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs bookworm or trixie}; shift 2 ;;
    --arch) arch=${2:?--arch needs aarch64 or x86_64}; shift 2 ;;
    --no-deps) with_deps=0; shift ;;
    *) echo "build-payload: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$target" in
  bookworm) pyver=3.11 abi=cp311 ;;
  trixie) pyver=3.13 abi=cp313 ;;
  *) echo "build-payload: unknown target '$target' (bookworm or trixie)" >&2; exit 2 ;;
esac
case "$arch" in aarch64|x86_64) ;; *) echo "build-payload: unknown arch '$arch' (aarch64 or x86_64)" >&2; exit 2 ;; esac
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3

mkdir -p "$out/wheels" "$out/systemd" "$out/firmware_config/boot"
echo "build-payload: building the appliance wheel" >&2
"$python" -m pip wheel -q --no-deps --disable-pip-version-check -w "$out/wheels" . 2>/dev/null
cp "firmware_config/constraints/$target.txt" "$out/constraints.txt"
if [ $with_deps = 1 ]; then
  echo "build-payload: downloading dependency wheels for linux $arch / CPython $pyver ($target)" >&2
  "$python" -m pip download -q --disable-pip-version-check --only-binary=:all: -d "$out/wheels" \
    -c "$out/constraints.txt" --python-version "$pyver" --implementation cp --abi "$abi" \
    --platform "manylinux_2_28_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" \
    --platform "linux_$arch" "$(ls "$out"/wheels/checkpoint_appliance-*.whl)"
fi
(cd "$out/wheels" && sha256sum -- *.whl) > "$out/wheels.sha256"   # the payload's lock: exact files, by hash
echo "$target" > "$out/target"
echo "$arch" > "$out/arch"
grep -v '^#' firmware_config/os-packages.txt | grep . > "$out/os-packages.txt"
for unit in systemd/*.service systemd/*.path; do  # the device's units, not the central server's
  case "$(basename "$unit")" in checkpoint-server*|checkpoint-retention*) ;; *) cp "$unit" "$out/systemd/" ;; esac
done
cp firmware_config/bake.sh firmware_config/firstboot.sh firmware_config/config.example.toml "$out/firmware_config/"
cp firmware_config/boot/config.txt.append "$out/firmware_config/boot/"
echo "build-payload: wrote $out for $target ($(ls "$out/wheels" | wc -l) wheels)" >&2
