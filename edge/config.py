"""The device's one typed configuration (TOML), rejecting unknown keys with a clear message.

Every hardware seam is chosen here, never by ``if testing`` branches: ``camera.source`` picks
the frame source, ``light.backend`` the lamp driver, ``clock.backend`` the clock.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from sync.wire.errors import CheckpointError


class ConfigError(CheckpointError, ValueError):
    """The configuration file is missing, unreadable, or names a key or value we do not know."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME = r"^[A-Za-z0-9._-]{1,64}$"


class DeviceConfig(_Section):
    id: str = "demo-device"
    #: the checkpoint id: a policy is installed only if it names this id or one of ``groups``
    checkpoint: str = Field(default="demo-checkpoint", pattern=_NAME)
    #: checkpoint groups this device belongs to (e.g. its zone), as policies name them
    groups: list[Annotated[str, StringConstraints(pattern=_NAME)]] = []
    data_dir: Path = Path("/var/lib/checkpoint")


class CameraConfig(_Section):
    source: Literal["replay", "opencv", "picamera2", "hid_scanner"] = "picamera2"
    #: hid_scanner: the reader's evdev node, e.g. /dev/input/by-id/usb-<maker>-event-kbd (stable across replugs)
    scanner_device: str | None = None
    #: hid_scanner: a code not ended by Enter within this long after its last key is dropped
    scanner_gap_s: float = Field(default=0.5, gt=0, le=10)
    #: replay: a folder of images or a video file; opencv: a video file (or use device/url)
    path: Path | None = None
    #: opencv: USB camera index
    device: int | None = None
    #: opencv: RTSP / HTTP stream URL
    url: str | None = None
    fps: float = Field(default=15.0, gt=0, le=120)
    loop: bool = False
    width: int = Field(default=1280, gt=0)
    height: int = Field(default=720, gt=0)
    #: picamera2: size of the lores YUV stream whose Y plane is decoded
    lores_width: int = Field(default=640, gt=0)
    lores_height: int = Field(default=480, gt=0)
    #: picamera2: manual lens position (dioptres) for a fixed mount; None keeps autofocus
    lens_position: float | None = None
    capture_timeout_s: float = Field(default=2.0, gt=0)
    #: no frame for this long -> camera-lost pattern, close and reopen
    no_frame_timeout_s: float = Field(default=5.0, gt=0)
    #: after this many failed reopens in a row, exit non-zero so systemd restarts us
    max_reopen_attempts: int = Field(default=5, ge=1)
    reopen_backoff_s: float = Field(default=1.0, gt=0)
    reopen_backoff_max_s: float = Field(default=30.0, gt=0)


class DecoderConfig(_Section):
    #: region of interest [x, y, width, height] in frame pixels; None = whole frame
    roi: tuple[int, int, int, int] | None = None
    #: scale factor applied before decoding (0 < f <= 1)
    downscale: float = Field(default=1.0, gt=0, le=1)
    #: try pyzbar on a code zxing-cpp located but could not read (only if libzbar is present)
    pyzbar_fallback: bool = True
    #: look for light-on-dark (inverted) codes on every n-th frame, and on every frame while a code
    #: was just read; 1 = every frame, 0 = never
    invert_every: int = Field(default=3, ge=0, le=30)
    #: also decode a 2x upscaled frame on every n-th frame (codes whose modules are 2-3 pixels wide),
    #: offset from the invert frames, and on every frame while such a code was just read; 0 = never
    upscale_every: int = Field(default=3, ge=0, le=30)
    #: the upscaled pass runs only on frames (after roi and downscale) whose longer side is at most
    #: this many pixels: at 1280x720 a pass QR's modules are wide enough already
    upscale_max_side: int = Field(default=800, ge=0, le=4096)
    #: on every n-th frame (offset from the invert and upscale frames) look for a busy, code-like
    #: region and decode it alone, smoothed, sharpened and upscaled 2x (blurred codes of 2-3 pixel
    #: modules, codes cut by the frame's edge), and on every frame while such a code was just read;
    #: frames without such a region skip it; regions longer than upscale_max_side too; 0 = never
    region_every: int = Field(default=3, ge=0, le=30)


class DebounceConfig(_Section):
    #: a code must be out of view this long before it may be decided again
    forget_after_s: float = Field(default=2.0, ge=0)
    #: even while held in view, decide again after this long (0 = never)
    repeat_after_s: float = Field(default=0.0, ge=0)
    #: anti-passback: the same pass given green again within this many seconds is CHECK repeat_pass
    #: (a phone handed back over the barrier); 0 = off
    repeat_pass_window_s: float = Field(default=600.0, ge=0, le=86400)


class LightConfig(_Section):
    backend: Literal["gpio", "terminal", "none"] = "gpio"
    #: gpiozero pin factory name ("lgpio", "rpigpio", "mock", ...); empty = gpiozero's default order
    pin_factory: str = ""
    green_pin: int = 17
    red_pin: int = 27
    amber_pin: int = 22
    buzzer_pin: int | None = 23
    #: one RGB LED instead of three lamps: [red, green, blue] pins
    rgb_pins: tuple[int, int, int] | None = None
    active_high: bool = True
    #: how long a verdict stays lit before the idle state
    verdict_hold_s: float = Field(default=3.0, gt=0)


class PolicyConfig(_Section):
    #: signed policy bundle; relative paths are under device.data_dir
    path: Path = Path("policy.cpenv")


class TrustConfig(_Section):
    #: signed trust-list bundle (issuer keys and EU DSCs)
    path: Path = Path("trust.cpenv")


class ValueSetsConfig(_Section):
    #: signed EU value-set list; absent: the sets shipped with the software are used
    path: Path = Path("valuesets.cpenv")


class RiskConfig(_Section):
    path: Path = Path("risk")


class ListsConfig(_Section):
    #: anti-rollback record: the highest version of each list ever installed (kept apart from the lists)
    versions_path: Path = Path("list-versions.json")


class ScanLogConfig(_Section):
    path: Path = Path("scanlog.sqlite")
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    retention_days: int = Field(default=30, ge=0)
    #: below this much free space the oldest acknowledged records are pruned and the lamp warns
    min_free_mb: int = Field(default=200, ge=0)


class AnswerLimits(_Section):
    """Largest answer body the device reads per request kind, in bytes (bigger ones are refused
    while streaming, so a hostile or broken server costs at most this much)."""

    push: int = Field(default=64 * 1024, ge=1024)
    time: int = Field(default=16 * 1024, ge=1024)
    enrollment: int = Field(default=16 * 1024, ge=1024)
    #: the answer to a heartbeat (empty)
    heartbeat: int = Field(default=4 * 1024, ge=1024)
    trust: int = Field(default=16 * 1024 * 1024, ge=1024)
    policy: int = Field(default=1024 * 1024, ge=1024)
    #: EU value-set list (the EU's sets are tens of kilobytes)
    valuesets: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: risk snapshot or deltas in one answer
    risk: int = Field(default=128 * 1024 * 1024, ge=1024)
    #: a signed software release manifest, and one wheel of a release
    software: int = Field(default=1024 * 1024, ge=1024)
    release_file: int = Field(default=200 * 1024 * 1024, ge=1024)


class SyncConfig(_Section):
    #: central server base URL; empty = never sync (a stand-alone checkpoint)
    server_url: str = ""
    interval_s: float = Field(default=60.0, gt=0)
    batch_size: int = Field(default=500, ge=1, le=10_000)
    #: longest wait for any single read from the server
    timeout_s: float = Field(default=10.0, gt=0)
    #: longest a whole request may take, answer included (a server trickling bytes is cut off)
    request_deadline_s: float = Field(default=120.0, gt=0)
    max_answer_bytes: AnswerLimits = AnswerLimits()
    backoff_max_s: float = Field(default=300.0, gt=0)
    #: unreachable longer than this -> server-unreachable lamp pattern
    unreachable_alarm_s: float = Field(default=6 * 3600, gt=0)


class KeysConfig(_Section):
    """Key material; relative paths are under device.data_dir."""

    #: the device's own Ed25519 signing key (created on the device at provisioning)
    device_key: Path = Path("keys/device_ed25519.pem")
    #: pinned publisher key that signs policy, trust list, risk lists and server time
    publisher_public_key: Path = Path("keys/publisher_ed25519.pub.pem")
    #: the central server's X25519 key: scan-log holder hashes are encrypted to it
    server_encryption_key: Path = Path("keys/server_x25519.pub.pem")
    #: the server's signed statement that the device key is enrolled (re-admission after a server restore)
    enrollment_certificate: Path = Path("keys/enrollment_certificate.txt")
    #: the fleet's one-time enrollment token: the sync client enrolls the device key with it as soon
    #: as the server is reachable, then deletes it (so it sits in the writable data folder)
    enroll_token: Path = Path("enroll.token")


class StatusConfig(_Section):
    path: Path = Path("status.json")
    #: staff screen on loopback; 0 = off
    staff_screen_port: int = Field(default=0, ge=0, le=65535)
    language: Literal["vi", "en"] = "vi"
    #: the name the staff screen shows at the top; empty = device.checkpoint
    checkpoint_name: str = Field(default="", max_length=80)
    #: local time zone for the screen's clock and "today" (IANA name)
    timezone: str = "Asia/Ho_Chi_Minh"
    #: how long the screen keeps a verdict up when nobody else comes; 0 = until the next person
    screen_hold_s: float = Field(default=15.0, ge=0, le=3600)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}: use an IANA name such as Asia/Ho_Chi_Minh") from None
        return v

    def zone(self):
        """The configured time zone as a tzinfo."""
        from zoneinfo import ZoneInfo

        return ZoneInfo(self.timezone)


class ClockConfig(_Section):
    """Where trusted time comes from (see edge/scan/clock.py and the README's clock section)."""

    backend: Literal["system", "fixed"] = "system"
    #: with backend = "fixed": the ISO-8601 instant to use (replays, tests)
    fixed_at: str | None = None
    #: the trusted-time floor (newest publisher-signed time seen), kept across restarts and power cuts
    state_path: Path = Path("clock.json")
    #: hardware RTC: "sysfs" reads ``rtc_path`` where present (Pi 5 RTC, DS3231 via dtoverlay=i2c-rtc,ds3231)
    rtc: Literal["sysfs", "none"] = "sysfs"
    rtc_path: Path = Path("/sys/class/rtc/rtc0")
    #: trust an NTP sync seen by systemd-timesyncd (never a time earlier than the floor)
    trust_ntp: bool = True
    ntp_synchronized_flag: Path = Path("/run/systemd/timesync/synchronized")
    #: a wall clock that moves this much more or less than the monotonic clock is untrusted until the next
    #: signed server time (crystal drift, 100 ppm, is added on top)
    jump_tolerance_s: float = Field(default=60.0, gt=0, le=3600)


class UpdateConfig(_Section):
    """Software updates from the central server (signed releases, installed beside the running one)."""

    #: the OS target whose releases this device installs ("bookworm", "trixie"); empty = no updates
    target: Literal["", "bookworm", "trixie"] = ""
    #: where the daemon stages a downloaded release for the installer (under device.data_dir)
    staging: Path = Path("updates")


class Config(_Section):
    """The whole device configuration."""

    device: DeviceConfig = DeviceConfig()
    camera: CameraConfig = CameraConfig()
    decoder: DecoderConfig = DecoderConfig()
    debounce: DebounceConfig = DebounceConfig()
    light: LightConfig = LightConfig()
    policy: PolicyConfig = PolicyConfig()
    trust: TrustConfig = TrustConfig()
    valuesets: ValueSetsConfig = ValueSetsConfig()
    risk: RiskConfig = RiskConfig()
    lists: ListsConfig = ListsConfig()
    scanlog: ScanLogConfig = ScanLogConfig()
    sync: SyncConfig = SyncConfig()
    keys: KeysConfig = KeysConfig()
    status: StatusConfig = StatusConfig()
    clock: ClockConfig = ClockConfig()
    update: UpdateConfig = UpdateConfig()

    @field_validator("device")
    @classmethod
    def _device_id_is_safe(cls, v: DeviceConfig) -> DeviceConfig:
        if not v.id or not all(c.isalnum() or c in "-_." for c in v.id):
            raise ValueError("device.id must be letters, digits, '-', '_' or '.'")
        return v

    def resolve(self, path: Path) -> Path:
        """A configured path, made absolute under ``device.data_dir`` when relative."""
        return path if path.is_absolute() else self.device.data_dir / path


def closest_key(loc: tuple[str | int, ...]) -> str | None:
    """The known key nearest to a misspelt one (``camera.sorce`` -> ``camera.source``), or None."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    match = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return ".".join([*(str(p) for p in loc[:-1]), match[0]]) if match else None


def _explain(error: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        if item["type"] == "extra_forbidden":
            guess = closest_key(item["loc"])
            hint = f"did you mean '{guess}'?" if guess else "remove it or check its spelling"
            lines.append(f"  - unknown key '{where}': {hint}")
        else:
            lines.append(f"  - {where}: {item['msg']}")
    return "\n".join(lines)


def parse_config(data: dict, source: str = "<config>") -> Config:
    """Validate a config mapping; raise ConfigError naming every bad or unknown key."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source)) from None


def load_config(path: Path | str) -> Config:
    """Load and validate a TOML config file."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    config = parse_config(data, str(path))
    if not config.device.data_dir.is_absolute():
        device = config.device.model_copy(update={"data_dir": (path.parent / config.device.data_dir).resolve()})
        config = config.model_copy(update={"device": device})
    return config
