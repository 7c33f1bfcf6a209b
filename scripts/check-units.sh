#!/usr/bin/env bash
# The device's systemd units on a real systemd: first boot with no network, then the network arrives,
# the daemon enrolls by itself, a signed software release is staged, checkpoint-update.path starts the
# installer, and the new release runs. Run it before any change to the units, firstboot.sh, bake.sh or
# the updater. Needs root and the network (Debian archive, PyPI) for the downloads.
#
#   1. a Debian bookworm root with systemd (debootstrap; kept in WORK/base and reused), for this PC's
#      architecture (the arm64 proof is check-arm64.sh), made into a card image laid out as Raspberry Pi
#      OS Lite's is (MBR, FAT boot partition at /boot/firmware, ext4 root): the "stock image";
#   2. build-payload.sh --arch of this PC, baked into that image by bake-image.sh exactly as into a
#      Raspberry Pi OS image (grown, OS packages, service user, release 0, units enabled); the card's
#      partitions are then mounted and systemd-nspawn boots them as a container;
#   3. a central server on this PC: keys, signed lists, camera-like frames of the demo's travellers,
#      and `checkpoint provision` makes the device's bundle (one-time token), copied to the boot folder
#      with the camera set to replay those frames and the lamps to the journal;
#   4. boot with no network (--private-network): checkpoint-firstboot.service installs the bundle, sets
#      the hostname, makes the device key; checkpoint.service runs and decides scans, not enrolled;
#   5. the network appears without a reboot (the server starts in the container's network namespace)
#      with a published release: the daemon enrolls with its token, fetches its lists, pushes its
#      scans, stages the release; checkpoint-update.path runs
#      `checkpoint update apply`, which installs release 1 beside release 0, health-checks it,
#      switches `current` and restarts the daemon on it;
#   6. a release whose daemon exits at start: installed, health check failed, `current` switched back.
#
# Usage: sudo scripts/check-units.sh [WORK]    (WORK defaults to /var/tmp/checkpoint-units)
#        MIRROR=URL overrides the Debian mirror; PORT the server's loopback port (default 18480).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
work=$(realpath -m "${1:-/var/tmp/checkpoint-units}")
port=${PORT:-18480}
python=${PYTHON:-$src/.venv/bin/python}
checkpoint=$(dirname "$python")/checkpoint
say() { printf 'check-units: %s\n' "$*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (debootstrap, chroot, systemd-nspawn)"; exit 2; }
[ -x "$checkpoint" ] || { say "no $checkpoint: run scripts/bootstrap.sh --demo first"; exit 2; }
case "$(uname -m)" in x86_64|aarch64) arch=$(uname -m) ;; *) say "unsupported architecture $(uname -m)"; exit 2 ;; esac

need=()
for tool in systemd-nspawn:systemd-container debootstrap:debootstrap mcopy:mtools mkfs.vfat:dosfstools sfdisk:fdisk; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [ -n "$MIRROR" ] || MIRROR=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
fi
[ -n "${MIRROR:-}" ] || { say "no Debian mirror found: set MIRROR=URL"; exit 2; }

base=$work/base root=$work/root server=$work/server
mkdir -p "$work"
if [ ! -x "$base/lib/systemd/systemd" ]; then
  say "debootstrap bookworm with systemd into $base (a few minutes)"
  rm -rf "$base"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3,python3-venv,python3-numpy,libzbar0,ca-certificates \
    bookworm "$base" "$MIRROR" > "$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
fi

nspawn_pid="" server_pid="" mounts=() loops=()
cleanup() {
  # (|| true: a killed process's status must not become the script's under set -e)
  [ -n "$nspawn_pid" ] && kill "$nspawn_pid" 2>/dev/null && wait "$nspawn_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  for loop in "${loops[@]}"; do losetup -d "$loop" 2>/dev/null || true; done
  return 0
}
trap cleanup EXIT

stock_image() {  # stock_image OUT: the base root as a two-partition card image, made without mounting
  local boot_mb=256 root_mb
  root_mb=$(( $(du -sm "$base" | cut -f1) * 5 / 4 + 64 ))
  rm -rf "$work/stock" && mkdir -p "$work/stock/root"
  cp -a "$base"/. "$work/stock/root/"
  mkdir -p "$work/stock/root/boot/firmware"
  # as on Raspberry Pi OS; nofail and a short timeout because a container has no such block device
  printf 'LABEL=bootfs /boot/firmware vfat defaults,nofail,x-systemd.device-timeout=1s 0 2\n' > "$work/stock/root/etc/fstab"
  mkfs.vfat -n bootfs -C "$work/stock/boot.part" $((boot_mb * 1024)) > /dev/null
  mkfs.ext4 -q -L rootfs -d "$work/stock/root" "$work/stock/root.part" "${root_mb}M"
  truncate -s $((4 + boot_mb + root_mb))M "$1"
  printf 'label: dos\nstart=8192, size=%d, type=c\nstart=%d, size=%d, type=83\n' \
    $((boot_mb * 2048)) $((8192 + boot_mb * 2048)) $((root_mb * 2048)) | sfdisk -q "$1"
  dd if="$work/stock/boot.part" of="$1" bs=1M seek=4 conv=notrunc,sparse status=none
  dd if="$work/stock/root.part" of="$1" bs=1M seek=$((4 + boot_mb)) conv=notrunc,sparse status=none
  rm -rf "$work/stock"
}
card_fat() {  # card_fat IMAGE: its FAT boot partition as an mtools image reference
  echo "$1@@$(( $(sfdisk --json "$1" | python3 -c 'import json, sys
print(json.load(sys.stdin)["partitiontable"]["partitions"][0]["start"])') * 512 ))"
}
mount_card() {  # mount_card IMAGE DIR: its root at DIR; the boot partition's files in DIR/boot/firmware
  local start size loop
  read -r start size < <(sfdisk --json "$1" | python3 -c 'import json, sys
p = json.load(sys.stdin)["partitiontable"]["partitions"][1]; print(p["start"], p["size"])')
  loop=$(losetup -f --show -o $((start * 512)) --sizelimit $((size * 512)) "$1"); loops+=("$loop")
  mkdir -p "$2" && mount "$loop" "$2" && mounts+=("$2")
  # a container cannot mount the FAT partition (nor can a kernel without vfat): its files are copied
  # to where the Pi's fstab mounts it
  mcopy -s -n -i "$(card_fat "$1")" '::*' "$2/boot/firmware/"
}

say "building the payload for $arch; baking it into a stock-like card image (offline install, wheels only)"
# a run that was killed may have left the card mounted
mountpoint -q "$root" && umount -R -l "$root"
[ -f "$work/card.img" ] && losetup -j "$work/card.img" | cut -d: -f1 | xargs -r -n1 losetup -d
rm -rf "$root" "$work/payload" "$server" "$work/bundles" "$work/frames" "$work/png" "$work"/*.img
PYTHON=$python firmware_config/build-payload.sh "$work/payload" --target bookworm --arch "$arch"
stock_image "$work/stock.img"
started=$SECONDS
# Debian has no picamera2 or lgpio: the OS packages are those Debian has
OS_PACKAGES=python3-venv,python3-numpy,libzbar0 firmware_config/bake-image.sh "$work/stock.img" "$work/payload" "$work/card.img" --grow-mb 700 \
  2> "$work/bake.log" || { tail -20 "$work/bake.log" >&2; exit 1; }
say "baked in $((SECONDS - started)) s: $(tail -2 "$work/bake.log" | head -1 | sed 's/^bake-image: //')"

say "central server: keys, signed lists, frames; 'checkpoint provision' writes the device's bundle"
checkpoint_id=$("$python" - "$server" "$work/frames" <<'EOF'
import sys
from pathlib import Path

from edge.devtools.demo.world import CHECKPOINT_ID, Central, demo_now, make_travellers, render_frames
from edge.scan.greyimage import bgr_to_grey, write_pgm

import cv2

server, frames = Path(sys.argv[1]), Path(sys.argv[2])
central = Central.create(server)
now = demo_now()
central.publish(now)
png = frames.with_name("png")
render_frames(png, make_travellers(central, now))
frames.mkdir()
for frame in sorted(png.iterdir()):  # grey PGM frames: the device decodes them without OpenCV
    write_pgm(frames / f"{frame.stem}.pgm", bgr_to_grey(cv2.imread(str(frame))))
print(CHECKPOINT_ID)
EOF
)
"$checkpoint" provision --server-data "$server" --server-url "http://127.0.0.1:$port" --prefix HN-CP- --start 7 \
  --count 1 --checkpoint "$checkpoint_id" --out "$work/bundles" > /dev/null
bundle=$work/bundles/HN-CP-007
"$python" - "$bundle/config.toml" <<'EOF'
import sys
import tomllib

import tomli_w

path = sys.argv[1]
with open(path, "rb") as f:
    config = tomllib.load(f)
# no camera or lamps in a container: the replay of the frames stands in for the camera, the journal for the lamps
config["camera"] = {"source": "replay", "path": "/opt/checkpoint-frames", "fps": 4.0, "loop": True}
config["light"] = {"backend": "terminal"}
config["sync"] = {**config["sync"], "interval_s": 5.0}
config["status"] = {**config.get("status", {}), "path": "/run/checkpoint/status.json"}
with open(path, "wb") as f:
    tomli_w.dump(config, f)
EOF
mcopy -s -i "$(card_fat "$work/card.img")" "$bundle" ::checkpoint   # Provincial IT copies it onto the card
mount_card "$work/card.img" "$root"
cp -r "$work/frames" "$root/opt/checkpoint-frames"

fail=0
ok() { say "ok    $1"; }
bad() { say "FAIL  $1"; fail=1; }
leader() { pgrep -P "$nspawn_pid" | head -n1; }
in_box() { nsenter -t "$(leader)" -m -u -i -n -p -- /usr/bin/env -i PATH=/opt/checkpoint/current/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
boot() {  # boot LABEL [nspawn options]: start the container, wait until systemd has booted
  local label=$1; shift
  systemd-nspawn -q -D "$root" --boot --register=no --keep-unit --console=read-only "$@" > "$work/$label.console" 2>&1 &
  nspawn_pid=$!
  for _ in $(seq 120); do
    sleep 1
    [ -n "$(leader)" ] && in_box systemctl is-system-running --wait > /dev/null 2>&1 && return 0
    [ -n "$(leader)" ] && [ "$(in_box systemctl is-system-running 2>/dev/null)" = degraded ] && return 0
  done
  say "the container did not finish booting (see $work/$label.console)"; return 1
}
halt() {
  in_box systemctl poweroff > /dev/null 2>&1 || true
  for _ in $(seq 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 1; done
  kill "$nspawn_pid" 2>/dev/null || true; wait "$nspawn_pid" 2>/dev/null || true; nspawn_pid=""
}
wait_for() {  # wait_for SECONDS COMMAND...: until the command succeeds
  local seconds=$1; shift
  for _ in $(seq "$seconds"); do "$@" > /dev/null 2>&1 && return 0; sleep 1; done
  return 1
}
status_says() {  # status_says PYTHON-EXPRESSION: on the daemon's status snapshot d (checkpoint status --json)
  in_box checkpoint status --config /etc/checkpoint/config.toml --json \
    | python3 -c "import json, sys; d = json.load(sys.stdin); sys.exit(0 if ($1) else 1)"
}
journal() { in_box journalctl --no-pager -o cat -u "$1" > "$work/$2" 2>&1 || true; }
server_decisions() {  # the decisions the server holds from this device: "CHECK=n PASS=n REFUSE=n"
  "$python" -c "import sqlite3, sys; print(' '.join(f'{d}={n}' for d, n in sqlite3.connect(sys.argv[1]).execute(
  \"SELECT decision, count(*) FROM records WHERE device_id = 'HN-CP-007' GROUP BY decision ORDER BY 1\")))" \
  "$server/server.sqlite"
}
decided_with_lists() { server_decisions 2>/dev/null | grep -q PASS= && server_decisions | grep -q REFUSE=; }

say "boot: no network at all"
boot offline --private-network || exit 1
journal checkpoint-firstboot.service firstboot.log
if in_box systemctl is-active --quiet checkpoint-firstboot.service; then ok "first boot set-up ran offline"; else bad "first boot (see $work/firstboot.log)"; fi
[ "$(in_box hostname)" = hn-cp-007 ] && [ "$(cat "$root/etc/hostname")" = hn-cp-007 ] && ok "hostname from the device id" \
  || bad "hostname is '$(in_box hostname)'"
[ ! -e "$root/boot/firmware/checkpoint" ] && ok "bundle removed from the boot partition" || bad "bundle still on the boot partition"
[ -f "$root/var/lib/checkpoint/enroll.token" ] && ok "one-time token waiting in the data folder" || bad "no token in the data folder"
if wait_for 90 status_says 'd["state"] == "running" and d["decisions"] > 0'; then
  ok "daemon running offline, scans decided and logged (CHECK until the first lists arrive)"
else
  bad "daemon not deciding offline: $(in_box checkpoint status --config /etc/checkpoint/config.toml 2>&1 | head -3)"
fi
journal checkpoint.service daemon-offline.log

say "the network appears (no reboot): the central server starts on the device's own network, with a release"
# the server runs from this PC's files inside the container's network namespace: to the daemon, the
# server has just become reachable at its configured address
nsenter -t "$(leader)" -n -- "$checkpoint" server --data-dir "$server" --port "$port" --serve device \
  > "$work/server.log" 2>&1 &
server_pid=$!
wait_for 30 nsenter -t "$(leader)" -n -- "$python" -c \
  "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v1/health', timeout=2)" \
  || { say "server did not start (see $work/server.log)"; exit 1; }
"$checkpoint" release publish --data-dir "$server" --payload "$work/payload" > "$work/release.log" 2>&1 \
  || { cat "$work/release.log" >&2; exit 1; }
if wait_for 120 test ! -e "$root/var/lib/checkpoint/enroll.token"; then ok "enrolled by itself, no reboot"; else bad "not enrolled"; fi
if wait_for 180 decided_with_lists; then
  ok "scans pushed, decided with the synced lists ($(server_decisions))"
else
  bad "the server holds no scans decided with lists from the device ($(server_decisions 2>&1))"
fi
applied=$root/var/lib/checkpoint/updates/applied.json
if wait_for 600 grep -q '"outcome": "installed"' "$applied"; then
  ok "release installed by checkpoint-update.path ($(readlink "$root/opt/checkpoint/current"))"
else
  bad "release not installed: $(cat "$applied" 2>/dev/null || echo 'nothing applied')"
fi
journal checkpoint-update.service update.log
journal checkpoint.service daemon-online.log
[ "$(readlink "$root/opt/checkpoint/current")" = /opt/checkpoint/releases/1 ] && in_box systemctl is-active --quiet checkpoint.service \
  && ok "daemon running on release 1" || bad "daemon not running on release 1"

say "a release whose daemon cannot start (0.1.1, its 'checkpoint run' exits at once): the installer must switch back"
broken=$work/broken
rm -rf "$broken" && mkdir -p "$broken/src" && git archive HEAD | tar -x -C "$broken/src"
sed -i 's/^version = .*/version = "0.1.1"/' "$broken/src/pyproject.toml"
sed -i 's/^def run(config_path: Path, fault_hold: float | None) -> None:$/&\n    raise SystemExit("a release that cannot run")/' \
  "$broken/src/edge/cli/run.py"
grep -q "a release that cannot run" "$broken/src/edge/cli/run.py" || { say "could not make the broken release"; exit 1; }
(cd "$broken/src" && PYTHON=$python firmware_config/build-payload.sh "$broken/payload" --target bookworm --arch "$arch" \
  --no-deps) 2> "$work/broken-build.log"
"$checkpoint" release publish --data-dir "$server" --payload "$broken/payload" >> "$work/release.log" 2>&1 \
  || { cat "$work/release.log" >&2; exit 1; }
if wait_for 600 grep -q '"outcome": "rolled_back"' "$applied"; then
  ok "broken release rolled back: $(readlink "$root/opt/checkpoint/current")"
else
  bad "broken release not rolled back: $(cat "$applied" 2>/dev/null)"
fi
journal checkpoint-update.service update-broken.log
[ "$(readlink "$root/opt/checkpoint/current")" = /opt/checkpoint/releases/1 ] \
  && wait_for 60 in_box systemctl is-active --quiet checkpoint.service && ok "daemon running on release 1 again" \
  || bad "daemon not back on release 1"
halt

if [ $fail = 0 ]; then say "units check passed"; else say "units check FAILED (logs in $work)"; fi
exit $fail
