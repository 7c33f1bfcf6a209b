#!/usr/bin/env bash
# Staff screen kiosk on Raspberry Pi OS Lite: run once as root on the device (network needed for apt).
#   1. installs cage (Wayland kiosk compositor) and Chromium from the OS archive;
#   2. creates the unprivileged kiosk user (video, render, input groups for the display);
#   3. installs and enables checkpoint-screen.service (page server) and checkpoint-kiosk.service
#      (cage + Chromium on tty1), and boots into the graphical target.
# The page port is 8088 unless status.staff_screen_port says otherwise (then edit the kiosk URL).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
units=${UNITS:-$here/systemd}
log() { echo "checkpoint-kiosk: $*"; }

[ "$(id -u)" = 0 ] || { log "run as root"; exit 1; }
packages=(cage chromium fonts-dejavu-core)
# Raspberry Pi OS (Bookworm) names the browser package chromium-browser; Debian and Trixie, chromium
apt-cache show chromium >/dev/null 2>&1 || packages=(cage chromium-browser fonts-dejavu-core)
log "installing ${packages[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
if [ ! -x /usr/bin/chromium ] && [ -x /usr/bin/chromium-browser ]; then
  ln -sf /usr/bin/chromium-browser /usr/bin/chromium
fi

id checkpoint-kiosk >/dev/null 2>&1 || useradd --system --create-home --home-dir /var/lib/checkpoint-kiosk \
  --shell /usr/sbin/nologin checkpoint-kiosk
for group in video render input; do
  getent group "$group" >/dev/null && usermod -a -G "$group" checkpoint-kiosk
done

install -m 0644 "$units/checkpoint-screen.service" "$units/checkpoint-kiosk.service" /etc/systemd/system/
systemctl daemon-reload
systemctl enable checkpoint-screen.service checkpoint-kiosk.service
systemctl set-default graphical.target
log "enabled: the staff screen appears on the HDMI display at the next boot (or: systemctl start checkpoint-kiosk)"
