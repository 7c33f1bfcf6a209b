#!/usr/bin/env bash
# Customise a stock Raspberry Pi OS Lite image with a payload (build-payload.sh), whose partitions are
# mounted at ROOTFS and BOOTFS (after `losetup -P` and `mount`, or as a pi-gen stage's ${ROOTFS_DIR}):
#   - copies the payload to ROOTFS/opt/checkpoint;
#   - bakes it in: runs firmware_config/bake.sh inside the root (OS packages, service user, the venv
#     from the wheels, both units enabled), so first boot needs no network at all;
#   - appends the boot settings (camera auto-detect, hardware watchdog) to BOOTFS/config.txt once.
# Running an arm64 root on another machine needs qemu-user-static with binfmt_misc (as pi-gen does);
# IN_ROOT overrides how a command is run inside the root (default: chroot ROOTFS); OS_PACKAGES is passed in.
#
# Usage: firmware_config/install-into-image.sh PAYLOAD ROOTFS BOOTFS [--no-bake]
set -euo pipefail
payload=${1:?usage: install-into-image.sh PAYLOAD ROOTFS BOOTFS [--no-bake]}
rootfs=${2:?usage: install-into-image.sh PAYLOAD ROOTFS BOOTFS [--no-bake]}
bootfs=${3:?usage: install-into-image.sh PAYLOAD ROOTFS BOOTFS [--no-bake]}
bake=1
[ "${4:-}" = "--no-bake" ] && bake=0
[ -d "$payload/wheels" ] || { echo "install-into-image: $payload is not a payload (no wheels/)" >&2; exit 2; }

mkdir -p "$rootfs/opt/checkpoint"
cp -r "$payload"/. "$rootfs/opt/checkpoint/"
chmod 0755 "$rootfs/opt/checkpoint/firmware_config/firstboot.sh" "$rootfs/opt/checkpoint/firmware_config/bake.sh"
if [ $bake = 1 ]; then
  read -r -a in_root <<< "${IN_ROOT:-chroot $rootfs}"
  # OS_PACKAGES (bake.sh's override of os-packages.txt) reaches into the root when set
  "${in_root[@]}" env ${OS_PACKAGES:+"OS_PACKAGES=$OS_PACKAGES"} /opt/checkpoint/firmware_config/bake.sh
fi
marker="# --- checkpoint appliance ---"
if ! grep -qF "$marker" "$bootfs/config.txt" 2>/dev/null; then
  { echo "$marker"; cat "$payload/firmware_config/boot/config.txt.append"; } >> "$bootfs/config.txt"
fi
echo "install-into-image: done; copy a provisioning bundle to $bootfs/checkpoint/ per card" >&2
