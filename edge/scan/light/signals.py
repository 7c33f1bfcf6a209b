"""The one table of lamp and buzzer signals: the lamps, the terminal rendering and the printed legend
all read it, so what staff learn from the legend is what the lamps do.

Rules the table keeps (tests check each):
- green means one thing, "may pass": no fault ever uses it; "alive and ready" is a brief green
  blip that no verdict or fault resembles, so a dark lamp means "not running";
- red means "refuse" and nothing else;
- amber is "check by hand": steady with two short beeps for a CHECK verdict, and a distinct
  blinking rhythm for each fault (a fault announces itself with one short chirp);
- each signal is one lamp colour, so a three-lamp head and a single RGB LED show the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from edge.verdict import Decision


class Lamp(StrEnum):
    """A lamp colour (one LED of a three-lamp head, or one colour of the RGB LED)."""

    GREEN = "green"
    RED = "red"
    AMBER = "amber"


class Fault(StrEnum):
    """Conditions staff must know about; listed most urgent first."""

    CAMERA_LOST = "camera_lost"
    DEVICE_NOT_READY = "device_not_ready"
    #: a list on the card (risk list, trust list, policy) was refused at open: edited, damaged or rolled back
    LIST_DAMAGED = "list_damaged"
    CLOCK_UNTRUSTED = "clock_untrusted"
    RISK_STALE = "risk_stale"
    DISK_LOW = "disk_low"
    SERVER_UNREACHABLE = "server_unreachable"


#: most urgent first: only the first current fault blinks, the staff screen lists all
FAULT_PRIORITY: tuple[Fault, ...] = tuple(Fault)


@dataclass(frozen=True)
class Beep:
    """``count`` beeps of ``on_s`` seconds, ``off_s`` apart, played once when the signal starts."""

    on_s: float
    count: int = 1
    off_s: float = 0.1

    @property
    def total_s(self) -> float:
        return self.count * self.on_s + (self.count - 1) * self.off_s


@dataclass(frozen=True)
class Signal:
    """One thing the lamp head can say.

    ``rhythm`` is one cycle of alternating lit / dark durations in seconds, starting lit; empty
    means steady (lit until the next signal). A blinking rhythm repeats until replaced. ``lamp``
    None is all lamps dark.
    """

    key: str
    lamp: Lamp | None
    rhythm: tuple[float, ...] = ()
    beep: Beep | None = None
    #: how it looks and sounds, then what it means, then what staff do: (Vietnamese, English)
    looks: tuple[str, str] = ("", "")
    means: tuple[str, str] = ("", "")
    action: tuple[str, str] = ("", "")

    @property
    def steady(self) -> bool:
        return not self.rhythm

    @property
    def period_s(self) -> float:
        return sum(self.rhythm)

    def segments(self) -> list[tuple[Lamp | None, float]]:
        """One cycle as (lamp lit or None for dark, seconds); steady is one endless lit segment."""
        if self.steady:
            return [(self.lamp, float("inf"))]
        return [(self.lamp if i % 2 == 0 else None, s) for i, s in enumerate(self.rhythm)]


_FAULT_CHIRP = Beep(0.05)

READY = Signal(
    "ready", Lamp.GREEN, (0.1, 3.9),
    looks=("Xanh lá chớp rất ngắn mỗi 4 giây", "Green blip every 4 s"),
    means=("Thiết bị đang chạy và sẵn sàng quét", "Running and ready to scan"),
    action=("Mời người tiếp theo đưa mã QR", "Invite the next person to show their QR code"))

OFF = Signal(
    "off", None,
    looks=("Tất cả đèn tắt", "All lamps dark"),
    means=("Thiết bị không chạy (mất điện hoặc phần mềm dừng)", "Not running (no power or software stopped)"),
    action=("Kiểm tra thủ công mọi người; báo kỹ thuật", "Check everyone by hand; call the technician"))

VERDICTS: dict[Decision, Signal] = {
    Decision.PASS: Signal(
        "PASS", Lamp.GREEN, beep=Beep(0.1),
        looks=("Xanh lá sáng liên tục, một tiếng bíp ngắn", "Steady green, one short beep"),
        means=("Thẻ hợp lệ", "Valid pass"),
        action=("Cho qua", "Let the person pass")),
    Decision.REFUSE: Signal(
        "REFUSE", Lamp.RED, beep=Beep(0.8),
        looks=("Đỏ sáng liên tục, một tiếng bíp dài", "Steady red, one long beep"),
        means=("Thẻ không hợp lệ hoặc người có nguy cơ", "Invalid pass or a person at risk"),
        action=("Không cho qua; xem lý do trên màn hình", "Do not let pass; read the reason on the screen")),
    Decision.CHECK: Signal(
        "CHECK", Lamp.AMBER, beep=Beep(0.1, count=2),
        looks=("Vàng sáng liên tục, hai tiếng bíp ngắn", "Steady amber, two short beeps"),
        means=("Thiết bị không tự quyết được", "The device cannot decide alone"),
        action=("Kiểm tra giấy tờ thủ công", "Check the papers by hand")),
}

FAULTS: dict[Fault, Signal] = {
    Fault.CAMERA_LOST: Signal(
        "camera_lost", Lamp.AMBER, (0.2, 0.2), _FAULT_CHIRP,
        looks=("Vàng nháy nhanh liên tục", "Amber fast blink"),
        means=("Mất camera hoặc đầu đọc", "Camera or scanner lost"),
        action=("Kiểm tra cáp camera; kiểm tra thủ công", "Check the camera cable; check by hand")),
    Fault.DEVICE_NOT_READY: Signal(
        "device_not_ready", Lamp.AMBER, (1.0, 1.0), _FAULT_CHIRP,
        looks=("Vàng nháy chậm (1 giây sáng, 1 giây tắt)", "Amber slow blink (1 s on, 1 s off)"),
        means=("Chưa đăng ký hoặc chưa có danh sách tin cậy / quy định",
               "Not enrolled, or no trust list / policy yet"),
        action=("Kiểm tra thủ công; báo kỹ thuật", "Check by hand; call the technician")),
    Fault.LIST_DAMAGED: Signal(
        "list_damaged", Lamp.AMBER, (0.2, 0.3, 0.2, 0.3, 0.2, 0.3, 0.2, 2.3), _FAULT_CHIRP,
        looks=("Vàng nháy 4 lần rồi nghỉ", "Amber 4 flashes, then a pause"),
        means=("Danh sách trên thẻ nhớ bị hỏng hoặc bị sửa", "A list on the card is damaged or edited"),
        action=("Kết quả là KIỂM TRA; kết nối mạng để tải lại, báo kỹ thuật",
                "Results are CHECK; connect so it is fetched again; tell the technician")),
    Fault.CLOCK_UNTRUSTED: Signal(
        "clock_untrusted", Lamp.AMBER, (0.2, 0.3, 0.2, 2.3), _FAULT_CHIRP,
        looks=("Vàng nháy 2 lần rồi nghỉ", "Amber 2 flashes, then a pause"),
        means=("Đồng hồ thiết bị chưa tin cậy", "Device clock not trusted"),
        action=("Kết quả là KIỂM TRA; kết nối mạng để đồng bộ giờ", "Results are CHECK; connect to sync the time")),
    Fault.RISK_STALE: Signal(
        "risk_stale", Lamp.AMBER, (0.2, 0.3, 0.2, 0.3, 0.2, 2.3), _FAULT_CHIRP,
        looks=("Vàng nháy 3 lần rồi nghỉ", "Amber 3 flashes, then a pause"),
        means=("Danh sách nguy cơ đã cũ", "Risk list is out of date"),
        action=("Kết quả là KIỂM TRA; kết nối mạng để cập nhật", "Results are CHECK; connect to update it")),
    Fault.DISK_LOW: Signal(
        "disk_low", Lamp.AMBER, (2.5, 0.5), _FAULT_CHIRP,
        looks=("Vàng sáng lâu, tắt ngắn", "Amber long on, short off"),
        means=("Bộ nhớ sắp đầy", "Storage nearly full"),
        action=("Báo kỹ thuật trong ngày", "Tell the technician today")),
    Fault.SERVER_UNREACHABLE: Signal(
        "server_unreachable", Lamp.AMBER, (0.5, 2.5), _FAULT_CHIRP,
        looks=("Vàng chớp một lần mỗi 3 giây", "Amber single flash every 3 s"),
        means=("Lâu không kết nối được máy chủ", "Server unreachable for a long time"),
        action=("Vẫn quét bình thường; báo kỹ thuật", "Keep scanning; tell the technician")),
}


def top_fault(faults) -> Fault | None:
    """The most urgent of ``faults`` (the one the lamp blinks), or None."""
    current = set(faults)
    return next((f for f in FAULT_PRIORITY if f in current), None)


def legend_rows() -> list[Signal]:
    """Every signal in the order the printed legend lists them."""
    return [READY, *VERDICTS.values(), *(FAULTS[f] for f in FAULT_PRIORITY), OFF]
