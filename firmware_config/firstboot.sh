#!/usr/bin/env bash
# First boot of a checkpoint Pi (Raspberry Pi OS Lite, Bookworm or later). Run once as root by
# checkpoint-firstboot.service; safe to run again. It:
#   1. installs the OS packages the appliance needs (picamera2, lgpio and libzbar come from the
#      Raspberry Pi OS archive, never from PyPI);
#   2. creates the service user in the gpio and video groups;
#   3. creates /opt/checkpoint/.venv with --system-site-packages and installs the appliance wheel;
#   4. moves the provisioning bundle from the boot partition to /etc/checkpoint (config, pinned
#      keys, enrollment token), creates the device key ON the device, and enables the service.
set -euo pipefail

BOOT_BUNDLE=${BOOT_BUNDLE:-/boot/firmware/checkpoint}
PREFIX=${PREFIX:-/opt/checkpoint}
ETC=${ETC:-/etc/checkpoint}
DATA=${DATA:-/var/lib/checkpoint}
log() { echo "checkpoint-firstboot: $*"; }

if [ ! -d "$BOOT_BUNDLE" ] && [ ! -f "$ETC/config.toml" ]; then
  log "no provisioning bundle at $BOOT_BUNDLE and no $ETC/config.toml: copy a bundle made by 'checkpoint provision' onto the boot partition"
  exit 1
fi

# Recent Raspberry Pi OS images ship most of these; install only what is missing (needs network).
packages=(python3-venv python3-picamera2 python3-lgpio libzbar0 systemd-timesyncd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing OS packages: ${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           "${missing[@]}"; }; then
    log "cannot install ${missing[*]} (no network?): connect the device once, or bake them into the image"
    exit 1
  fi
fi

id checkpoint >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin checkpoint
usermod -a -G gpio,video checkpoint

log "installing the appliance into $PREFIX"
mkdir -p "$PREFIX"
[ -x "$PREFIX/.venv/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX/.venv"
"$PREFIX/.venv/bin/pip" install -q --no-index --find-links "$PREFIX/wheels" checkpoint-appliance

if [ -d "$BOOT_BUNDLE" ]; then
  log "installing provisioning bundle"
  install -d -m 0750 -o root -g checkpoint "$ETC"
  cp -r "$BOOT_BUNDLE"/. "$ETC"/
  chgrp -R checkpoint "$ETC"; chmod -R g+rX,o-rwx "$ETC"
  rm -rf "$BOOT_BUNDLE"   # the enrollment token must not stay on the FAT boot partition
fi
install -d -m 0750 -o checkpoint -g checkpoint "$DATA"

# The device key is created here, on the device, and enrolled with this device's one-time token
# (bound to its id, expiring, single use: made by 'checkpoint provision'); the token is
# then deleted. Offline at first boot? The daemon still starts (amber until the first sync), and
# enrollment is retried by this unit on the next boot.
if [ -f "$ETC/enroll.token" ]; then
  # the token travels in the environment (not argv, which every user can read in ps)
  if CHECKPOINT_ENROLL_TOKEN="$(cat "$ETC/enroll.token")" runuser -u checkpoint \
       --whitelist-environment=CHECKPOINT_ENROLL_TOKEN -- \
       "$PREFIX/.venv/bin/checkpoint" sync --config "$ETC/config.toml" --once --deadline 120; then
    rm -f "$ETC/enroll.token"
    log "device enrolled and synced"
  else
    log "enrollment failed: no network (retried at next boot), or the token expired or was used (put a new one from 'checkpoint server token DEVICE_ID' into $ETC/enroll.token)"
  fi
fi

install -m 0644 "$PREFIX"/systemd/*.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now systemd-timesyncd checkpoint.service
[ -f "$ETC/enroll.token" ] || systemctl disable checkpoint-firstboot.service 2>/dev/null || true
log "done: 'checkpoint status' shows the daemon"
