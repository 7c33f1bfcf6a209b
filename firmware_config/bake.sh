#!/usr/bin/env bash
# Bake the appliance into an image root: runs INSIDE the root (chroot, or a pi-gen stage's on_chroot),
# once, at image build time, where the network is. Afterwards first boot needs no network at all:
#   0. checks every wheel against the payload's lock (wheels.sha256);
#   1. installs the OS packages of os-packages.txt (OS_PACKAGES overrides the list) and cleans apt's cache;
#   2. creates the service user (groups gpio, video and input: the lamps, the camera, a HID scanner);
#   3. creates the first release, $PREFIX/releases/0, a venv with the system site packages (apt's
#      picamera2, lgpio, numpy), installs the appliance from the payload's wheels only (--no-index)
#      with the target's constraints, and points $PREFIX/current at it (updates add releases/N beside);
#   4. installs both units; enables first boot and the daemon with an "unprovisioned" config, so a
#      card flashed without a bundle blinks the not-provisioned pattern instead of staying dark.
# Safe to run again.
set -euo pipefail
PREFIX=${PREFIX:-/opt/checkpoint}
ETC=${ETC:-/etc/checkpoint}
UNITS=${UNITS:-/etc/systemd/system}
SERVICE_USER=${SERVICE_USER:-checkpoint}
log() { echo "checkpoint-bake: $*" >&2; }

if [ -f "$PREFIX/wheels.sha256" ] && ! (cd "$PREFIX/wheels" && sha256sum --quiet --strict -c ../wheels.sha256); then
  log "the wheels differ from the payload's wheels.sha256 (damaged or changed copy): rebuild the payload"
  exit 1
fi

list=${OS_PACKAGES:-$(grep -v '^#' "$PREFIX/os-packages.txt")}
read -r -a packages <<< "$(echo ${list//,/ })"  # OS_PACKAGES: names separated by spaces or commas
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing OS packages: ${missing[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           "${missing[@]}" >/dev/null; }; then
    log "cannot install ${missing[*]}: bake the image where its package archive is reachable"
    exit 1
  fi
  apt-get clean
fi

# every group checkpoint.service names in SupplementaryGroups= must exist, or systemd refuses to start
# it (status 216/GROUP); Raspberry Pi OS has all three, a plain Debian root may have none
for group in gpio video input; do getent group "$group" >/dev/null || groupadd --system "$group"; done
id "$SERVICE_USER" >/dev/null 2>&1 || useradd --system --home-dir /var/lib/checkpoint --shell /usr/sbin/nologin \
  "$SERVICE_USER"
usermod -a -G gpio,video,input "$SERVICE_USER"

release=$PREFIX/releases/0
log "installing the appliance into $release from the payload's wheels (offline)"
[ -x "$release/bin/python" ] || python3 -m venv --system-site-packages "$release"
constraints=()
[ -f "$PREFIX/constraints.txt" ] && constraints=(-c "$PREFIX/constraints.txt")
"$release/bin/python" -m pip install -q --disable-pip-version-check --no-index --find-links "$PREFIX/wheels" \
  "${constraints[@]}" checkpoint-appliance
"$release/bin/checkpoint" --version >&2
[ -e "$PREFIX/current" ] || ln -s "$release" "$PREFIX/current"

install -d -m 0755 "$UNITS/multi-user.target.wants"
install -m 0644 "$PREFIX"/systemd/*.service "$PREFIX"/systemd/*.path "$UNITS/"
for unit in checkpoint-firstboot.service checkpoint.service checkpoint-update.path; do
  ln -sf "$UNITS/$unit" "$UNITS/multi-user.target.wants/$unit"
done
if [ ! -f "$ETC/config.toml" ]; then
  install -d -m 0750 -o root -g "$SERVICE_USER" "$ETC"
  sed 's/^id = .*/id = "unprovisioned"             # first boot installs the bundle from the boot partition/' \
    "$PREFIX/firmware_config/config.example.toml" > "$ETC/config.toml"
  chgrp "$SERVICE_USER" "$ETC/config.toml"; chmod 0640 "$ETC/config.toml"
fi
log "done: the image needs no network at first boot"
