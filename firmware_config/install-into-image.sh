#!/usr/bin/env bash
# Put a payload (build-payload.sh) into a Raspberry Pi OS image whose partitions are mounted at
# ROOTFS and BOOTFS (e.g. after `losetup -P` and `mount`, or as a pi-gen stage's ${ROOTFS_DIR}):
# copies it to ROOTFS/opt/checkpoint, enables the first-boot unit, and appends the boot settings
# (camera auto-detect, hardware watchdog) to BOOTFS/config.txt once.
#
# Usage: firmware_config/install-into-image.sh PAYLOAD ROOTFS BOOTFS
set -euo pipefail
payload=${1:?usage: install-into-image.sh PAYLOAD ROOTFS BOOTFS}
rootfs=${2:?usage: install-into-image.sh PAYLOAD ROOTFS BOOTFS}
bootfs=${3:?usage: install-into-image.sh PAYLOAD ROOTFS BOOTFS}
[ -d "$payload/wheels" ] || { echo "install-into-image: $payload is not a payload (no wheels/)" >&2; exit 2; }

mkdir -p "$rootfs/opt/checkpoint" "$rootfs/etc/systemd/system/multi-user.target.wants"
cp -r "$payload"/. "$rootfs/opt/checkpoint/"
chmod 0755 "$rootfs/opt/checkpoint/firmware_config/firstboot.sh"
cp "$payload/systemd/checkpoint-firstboot.service" "$rootfs/etc/systemd/system/"
ln -sf /etc/systemd/system/checkpoint-firstboot.service \
  "$rootfs/etc/systemd/system/multi-user.target.wants/checkpoint-firstboot.service"
marker="# --- checkpoint appliance ---"
if ! grep -qF "$marker" "$bootfs/config.txt" 2>/dev/null; then
  { echo "$marker"; cat "$payload/firmware_config/boot/config.txt.append"; } >> "$bootfs/config.txt"
fi
echo "install-into-image: done; copy a provisioning bundle to $bootfs/checkpoint/ per card" >&2
