#!/usr/bin/env bash
# First boot of a checkpoint Pi from a baked image (install-into-image.sh): run as root by
# checkpoint-firstboot.service whenever a provisioning bundle is on the boot partition. Needs no
# network: everything was baked into the image. It:
#   1. moves the bundle (config, pinned keys) from the boot partition to /etc/checkpoint and the
#      one-time enrollment token into the data folder, then deletes the bundle from the FAT partition;
#   2. sets the hostname from the device id (HN-CP-001 -> hn-cp-001);
#   3. creates the device's own signing key, on the device;
#   4. (re)starts the daemon, which enrolls the key by itself as soon as a network appears.
# If the image was not baked (no venv), it bakes now from the payload's wheels (offline) first.
# Safe to run again. ROOT, BOOT_BUNDLE, PREFIX, ETC, DATA, SERVICE_USER and SYSTEMCTL can be overridden.
set -euo pipefail

ROOT=${ROOT:-}
BOOT_BUNDLE=${BOOT_BUNDLE:-$ROOT/boot/firmware/checkpoint}
PREFIX=${PREFIX:-$ROOT/opt/checkpoint}
ETC=${ETC:-$ROOT/etc/checkpoint}
DATA=${DATA:-$ROOT/var/lib/checkpoint}
SERVICE_USER=${SERVICE_USER:-checkpoint}
SYSTEMCTL=${SYSTEMCTL:-systemctl}
log() { echo "checkpoint-firstboot: $*"; }

if [ ! -d "$BOOT_BUNDLE" ]; then
  log "no provisioning bundle at $BOOT_BUNDLE: copy one made by 'checkpoint provision' onto the boot partition as checkpoint/ and reboot"
  exit 0
fi
if [ ! -x "$PREFIX/current/bin/checkpoint" ]; then
  log "the image was not baked: installing from $PREFIX/wheels"
  PREFIX="$PREFIX" ETC="$ETC" "$PREFIX/firmware_config/bake.sh"
fi

log "installing provisioning bundle into $ETC"
install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$DATA"
if [ -f "$BOOT_BUNDLE/enroll.token" ]; then
  # the daemon deletes the token once enrolled, so it lives in the service's writable data folder
  install -m 0600 -o "$SERVICE_USER" -g "$SERVICE_USER" "$BOOT_BUNDLE/enroll.token" "$DATA/enroll.token"
  rm -f "$BOOT_BUNDLE/enroll.token"
fi
cp -r "$BOOT_BUNDLE"/. "$ETC"/
chgrp -R "$SERVICE_USER" "$ETC"; chmod -R g+rX,g-w,o-rwx "$ETC"
rm -rf "$BOOT_BUNDLE"   # nothing of the bundle stays on the FAT boot partition
# the image knows its OS target; a bundle that does not choose one gets software updates for it
if [ -f "$PREFIX/target" ] && ! grep -q '^\[update\]' "$ETC/config.toml"; then
  printf '\n[update]\ntarget = "%s"\n' "$(cat "$PREFIX/target")" >> "$ETC/config.toml"
  log "software updates: releases for $(cat "$PREFIX/target")"
fi

device_id=$(sed -n 's/^id *= *"\([^"]*\)".*/\1/p' "$ETC/config.toml" | head -n1)
hostname=$(printf '%s' "${device_id:-checkpoint}" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9-' '-' | sed 's/^-*//; s/-*$//' | cut -c1-63)
hostname=${hostname:-checkpoint}
log "hostname $hostname (device $device_id)"
echo "$hostname" > "$ROOT/etc/hostname"
if grep -q '^127\.0\.1\.1' "$ROOT/etc/hosts" 2>/dev/null; then
  sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$hostname/" "$ROOT/etc/hosts"
else
  printf '127.0.1.1\t%s\n' "$hostname" >> "$ROOT/etc/hosts"
fi
[ -z "$ROOT" ] && command -v hostname >/dev/null && hostname "$hostname" || true

log "creating the device key (on the device, offline)"
runuser -u "$SERVICE_USER" -- "$PREFIX/current/bin/checkpoint" device-key --config "$ETC/config.toml" >/dev/null

"$SYSTEMCTL" enable systemd-timesyncd.service checkpoint.service || log "could not enable the units"
"$SYSTEMCTL" restart --no-block checkpoint.service || log "could not start checkpoint.service"
log "done: the daemon runs offline and enrolls when the network appears ('checkpoint doctor' checks it)"
