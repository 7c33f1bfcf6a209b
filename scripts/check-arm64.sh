#!/usr/bin/env bash
# The arm64 proof: install the appliance as the image would, in a Debian arm64 root run under
# qemu-user emulation, then run the demo and a test subset there. Run it before any change to the
# dependencies or the image. Needs root and the network (Debian archive, PyPI) for the downloads;
# the install itself is offline (wheels only, --no-index), as on a Pi at first boot.
#
#   1. qemu-user-static + binfmt_misc (installed and enabled when missing);
#   2. a Debian bookworm arm64 root (debootstrap, minbase; kept in WORK/root and reused);
#   3. build-payload.sh --target bookworm (aarch64 / CPython 3.11 wheels, numpy from the system as on
#      Raspberry Pi OS Bookworm) and install-into-image.sh, which bakes it into the root;
#   4. in the root: `checkpoint config check` on the baked config, `checkpoint run` on it (no pin
#      library there: it must say so in one line), `checkpoint bench footprint --quick` after adding
#      the demo's wheels (offline too), `checkpoint demo`, and the test subset.
# Emulated timings say nothing about a Pi. Debian has no picamera2 or lgpio: OS_PACKAGES leaves them out.
#
# Usage: sudo scripts/check-arm64.sh [WORK]      (WORK defaults to /var/tmp/checkpoint-arm64)
#        MIRROR=URL overrides the Debian mirror (default: the host's first apt source).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
work=$(realpath -m "${1:-/var/tmp/checkpoint-arm64}")
root=$work/root
say() { printf 'check-arm64: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (debootstrap, chroot, mounts)"; exit 2; }

need=()
for tool in qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support debootstrap:debootstrap; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64 2>/dev/null || true
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { say "binfmt_misc has no qemu-aarch64 entry"; exit 1; }

if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
fi
[ -n "${MIRROR:-}" ] || { say "no Debian mirror found: set MIRROR=URL"; exit 2; }

mkdir -p "$work"
if [ ! -f "$root/etc/debian_version" ]; then
  say "debootstrap bookworm arm64 into $root (a few minutes)"
  rm -rf "$root"
  debootstrap --arch=arm64 --variant=minbase --include=python3,ca-certificates bookworm "$root" "$MIRROR" \
    > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
fi
# The root's apt uses the same mirror; a local certificate authority of the host (if any) too.
cp /etc/resolv.conf "$root/etc/resolv.conf"
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  chroot "$root" update-ca-certificates >/dev/null 2>&1 || true
fi

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for fs in proc sys dev; do
  mountpoint -q "$root/$fs" || { mount --bind "/$fs" "$root/$fs"; mounted+=("$root/$fs"); }
done

say "building the bookworm payload (aarch64 wheels, downloaded once)"
rm -rf "$work/payload" "$root/opt/checkpoint" "$root/etc/checkpoint"
PYTHON=${PYTHON:-$src/.venv/bin/python} firmware_config/build-payload.sh "$work/payload" --target bookworm
mkdir -p "$work/boot" && touch "$work/boot/config.txt"
say "baking it into the arm64 root (offline install from the wheels)"
started=$SECONDS
IN_ROOT="chroot $root env OS_PACKAGES=python3-venv,python3-numpy,libzbar0" \
  firmware_config/install-into-image.sh "$work/payload" "$root" "$work/boot"
say "baked in $((SECONDS - started)) s"

in_root() { chroot "$root" /usr/bin/env -i PATH=/opt/checkpoint/current/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
  LANG=C.UTF-8 "$@"; }
fail=0
check() {  # check NAME COMMAND...: run in the root, report, remember failures
  local name=$1; shift
  if in_root "$@" > "$work/$name.log" 2>&1; then say "ok    $name"; else say "FAIL  $name (see $work/$name.log)"; tail -15 "$work/$name.log" >&2; fail=1; fi
}
check uname sh -c 'test "$(uname -m)" = aarch64 && python3 -c "import numpy, sys; print(sys.version, numpy.__version__)"'
check config-check checkpoint config check /etc/checkpoint/config.toml
# the baked, unprovisioned config drives GPIO lamps: with no pin library here it must say what to do
in_root checkpoint run --config /etc/checkpoint/config.toml > "$work/run-unprovisioned.log" 2>&1 || true
if grep -q "no usable GPIO pin library" "$work/run-unprovisioned.log" && ! grep -q Traceback "$work/run-unprovisioned.log"; then
  say "ok    run-unprovisioned (one clear line, no traceback)"
else
  say "FAIL  run-unprovisioned"; cat "$work/run-unprovisioned.log" >&2; fail=1
fi
check no-server-packages sh -c '! python3 -c "import fastapi" 2>/dev/null && ! python3 -c "import cv2" 2>/dev/null'
# the updater's real install step: release 1 beside release 0, offline, then its own config check
check update-install python3 -c '
import hashlib, subprocess
from pathlib import Path
from edge.device.updates import install_release
from sync.wire.software import Release, ReleaseFile
wheel = sorted(Path("/opt/checkpoint/wheels").glob("checkpoint_appliance-*.whl"))[0]
item = ReleaseFile(name=wheel.name, sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(), size=wheel.stat().st_size)
release = Release(version="0.1.0", target="bookworm", requirement="checkpoint-appliance", files=(item,))
folder = install_release(Path("/opt/checkpoint"), 1, wheel.parent, release)
subprocess.run([str(folder / "bin" / "checkpoint"), "config", "check", "/etc/checkpoint/config.toml"], check=True)
'

say "adding the demo's and the tests' wheels (downloaded here, installed offline)"
wheel=$(ls "$work"/payload/wheels/checkpoint_appliance-*.whl)
"${PYTHON:-$src/.venv/bin/python}" -m pip download -q --disable-pip-version-check --only-binary=:all: \
  -d "$work/wheels-demo" -c "$work/payload/constraints.txt" --python-version 3.11 --implementation cp --abi cp311 \
  --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 \
  --platform linux_aarch64 "$wheel[demo]" pytest hypothesis httpx
cp -r "$work/wheels-demo" "$root/opt/checkpoint/wheels-demo"
check install-demo python3 -m pip install -q --disable-pip-version-check --no-index \
  --find-links /opt/checkpoint/wheels --find-links /opt/checkpoint/wheels-demo -c /opt/checkpoint/constraints.txt \
  "checkpoint-appliance[demo]" pytest hypothesis httpx
check footprint checkpoint bench footprint --quick
check demo checkpoint demo
rm -rf "$root/opt/checkpoint-src" && mkdir -p "$root/opt/checkpoint-src"
git archive HEAD | tar -x -C "$root/opt/checkpoint-src"
check tests sh -c 'cd /opt/checkpoint-src && pytest -q -p no:cacheprovider tests/test_config.py \
  tests/test_startup.py tests/test_lean_install.py tests/test_decode.py tests/test_debounce.py tests/test_cp1.py \
  tests/test_scanlog.py tests/test_light.py'
grep -E "passed|failed" "$work/tests.log" | tail -1 >&2 || true
grep -E "daemon_peak_rss_mb_(raw|opencv) |installed_mb_device" "$work/footprint.log" >&2 || true
if [ $fail = 0 ]; then say "arm64 check passed"; else say "arm64 check FAILED"; fi
exit $fail
