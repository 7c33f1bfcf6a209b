#!/usr/bin/env bash
# Bake the appliance into a stock Raspberry Pi OS Lite image file, giving a card image Provincial IT
# flashes as is (Raspberry Pi Imager, or dd): the image step of pi-gen, on the image the Raspberry Pi
# Foundation publishes. It
#   1. copies (or un-xz's) STOCK to OUT and grows OUT by --grow-mb, root partition and file system with
#      it (the stock root has a few hundred MB free; wheels and OS packages need more);
#   2. attaches the root partition by offset (no partition device nodes needed: works in containers and
#      on build machines without udev) and mounts it; the FAT boot partition is read and written with
#      mtools, so a build kernel without vfat works too;
#   3. runs install-into-image.sh, which bakes the payload in inside the image root (OS packages,
#      service user, the venv from the wheels, units enabled), so first boot needs no network, and
#      appends the boot settings to the FAT partition's config.txt;
#   4. checks the root file system, detaches, and prints OUT's SHA-256 (and compresses with --xz).
# Needs root, sfdisk, e2fsprogs, mtools, and on a PC qemu-user-static with binfmt_misc for the arm64 chroot.
#
# Usage: firmware_config/bake-image.sh STOCK.img[.xz] PAYLOAD OUT.img [--grow-mb N] [--xz]
set -euo pipefail
usage="usage: bake-image.sh STOCK.img[.xz] PAYLOAD OUT.img [--grow-mb N] [--xz]"
stock=${1:?$usage} payload=${2:?$usage} out=${3:?$usage}
shift 3
grow_mb=1024 compress=0
while [ $# -gt 0 ]; do
  case "$1" in
    --grow-mb) grow_mb=${2:?--grow-mb needs a number of MB}; shift 2 ;;
    --xz) compress=1; shift ;;
    *) echo "bake-image: unknown option $1 ($usage)" >&2; exit 2 ;;
  esac
done
here=$(cd "$(dirname "$0")" && pwd)
log() { echo "bake-image: $*" >&2; }
[ "$(id -u)" = 0 ] || { log "run as root (loop devices, mounts, chroot)"; exit 2; }
[ -f "$stock" ] || { log "no image at $stock"; exit 2; }
[ -d "$payload/wheels" ] || { log "$payload is not a payload (no wheels/): make one with build-payload.sh"; exit 2; }
[[ "$grow_mb" =~ ^[0-9]+$ ]] || { log "--grow-mb takes a whole number of MB"; exit 2; }
for tool in sfdisk losetup e2fsck resize2fs mcopy; do
  command -v "$tool" >/dev/null || { log "$tool is missing (apt-get install fdisk e2fsprogs mount mtools)"; exit 2; }
done
payload_arch=$(cat "$payload/arch" 2>/dev/null || echo aarch64)
if [ "$(uname -m)" != "$payload_arch" ] && [ -z "${IN_ROOT:-}" ] && [ ! -e "/proc/sys/fs/binfmt_misc/qemu-$payload_arch" ]; then
  log "this $(uname -m) machine cannot run the $payload_arch image root: install qemu-user-static and binfmt-support"
  exit 2
fi

log "copying $stock to $out"
case "$stock" in
  *.xz) xz -dc -- "$stock" > "$out.partial" ;;
  *) cp --sparse=always -- "$stock" "$out.partial" ;;
esac
truncate -s "+${grow_mb}M" "$out.partial"

# the stock layout: an MBR with the FAT boot partition first and the ext4 root second
table=$(sfdisk --json "$out.partial")
read -r boot_start boot_size root_start root_type < <(python3 -c '
import json, sys
parts = json.loads(sys.argv[1])["partitiontable"]["partitions"]
if len(parts) < 2:
    sys.exit("bake-image: the image has fewer than two partitions: not a Raspberry Pi OS image")
print(parts[0]["start"], parts[0]["size"], parts[1]["start"], parts[1]["type"])' "$table")
[ "$root_type" = 83 ] || { log "partition 2 is of type $root_type, not a Linux root (83)"; exit 2; }
echo ", +" | sfdisk -q -N 2 --no-reread "$out.partial" >/dev/null 2>&1
root_size=$(sfdisk --json "$out.partial" | python3 -c 'import json, sys; print(json.load(sys.stdin)["partitiontable"]["partitions"][1]["size"])')

loops=() mounts=()
cleanup() {
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
  for loop in "${loops[@]}"; do losetup -d "$loop" 2>/dev/null || true; done
  [ -n "${mnt:-}" ] && rmdir "$mnt" 2>/dev/null || true
}
trap cleanup EXIT
attach() {  # attach START SIZE (in 512-byte sectors): a loop device for that partition
  losetup -f --show -o $(($1 * 512)) --sizelimit $(($2 * 512)) "$out.partial"
}
root_loop=$(attach "$root_start" "$root_size"); loops+=("$root_loop")
e2fsck -fy "$root_loop" >/dev/null 2>&1 || [ $? -le 1 ] || { log "the root file system has errors e2fsck cannot fix"; exit 1; }
resize2fs "$root_loop" >/dev/null 2>&1
log "root file system grown by $grow_mb MB"

mnt=$(mktemp -d)
mount "$root_loop" "$mnt"; mounts+=("$mnt")
boot_fat="$out.partial@@$((boot_start * 512))"   # the FAT partition, for mtools
boot_copy=$(mktemp -d)
mcopy -n -i "$boot_fat" ::config.txt "$boot_copy/config.txt" 2>/dev/null || touch "$boot_copy/config.txt"
for fs in proc sys dev; do mount --bind "/$fs" "$mnt/$fs"; mounts+=("$mnt/$fs"); done
resolv=$mnt/etc/resolv.conf stock_resolv=0   # apt in the root needs this machine's name servers meanwhile
if [ -e "$resolv" ] || [ -L "$resolv" ]; then mv "$resolv" "$resolv.stock"; stock_resolv=1; fi
cp /etc/resolv.conf "$resolv"

status=0
"$here/install-into-image.sh" "$payload" "$mnt" "$boot_copy" || status=$?
[ $status = 0 ] && { mcopy -o -i "$boot_fat" "$boot_copy/config.txt" ::config.txt || status=$?; }
rm -rf "$boot_copy"
rm -f "$resolv"
[ $stock_resolv = 1 ] && mv "$resolv.stock" "$resolv"
[ $status = 0 ] || { log "baking failed: $out is not written"; rm -f "$out.partial"; exit $status; }

for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[$i]}"; done
mounts=()
e2fsck -fy "$root_loop" >/dev/null 2>&1 || [ $? -le 1 ] || { log "the baked root file system has errors"; exit 1; }
for loop in "${loops[@]}"; do losetup -d "$loop"; done
loops=()
sync "$out.partial"
mv "$out.partial" "$out"
if [ $compress = 1 ]; then
  xz -T0 -f "$out"
  out=$out.xz
fi
log "wrote $out ($(du -h --apparent-size "$out" | cut -f1)), sha256 $(sha256sum "$out" | cut -d' ' -f1)"
log "flash it with Raspberry Pi Imager (Use custom) or dd; then copy a bundle to the boot partition as checkpoint/"
