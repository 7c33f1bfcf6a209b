"""The decision and reason vocabulary of a scan: what the lamp showed and why, with the words staff
and commanders read (Vietnamese, English).

It is part of the wire: every scan record carries a decision and a reason code, and the central
server labels them on its dashboard with the same words the device's staff screen shows.
Codes are stable; add new ones, never rename.
"""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    """What the lamp shows: green, red, or amber (staff check by hand)."""

    PASS = "PASS"
    REFUSE = "REFUSE"
    CHECK = "CHECK"


class Reason(StrEnum):
    """Stable machine reason codes. Never rename one: logs and the server keep them."""

    OK = "ok"
    NOT_A_PASS = "not_a_pass"
    MALFORMED = "malformed"
    TOO_LARGE = "too_large"
    UNSUPPORTED_ALGORITHM = "unsupported_algorithm"
    UNKNOWN_ISSUER = "unknown_issuer"
    BAD_SIGNATURE = "bad_signature"
    ISSUER_KEY_EXPIRED = "issuer_key_expired"
    ISSUER_KEY_USAGE = "issuer_key_usage"
    SCHEMA_INVALID = "schema_invalid"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    PASS_REVOKED = "pass_revoked"
    RISK_F0 = "risk_f0"
    RISK_F1 = "risk_f1"
    RISK_REVOKED = "risk_revoked"
    FORMAT_NOT_ACCEPTED = "format_not_accepted"
    KIND_NOT_ACCEPTED = "kind_not_accepted"
    ZONE_NOT_ALLOWED = "zone_not_allowed"
    INSUFFICIENT_VACCINATION = "insufficient_vaccination"
    TEST_TOO_OLD = "test_too_old"
    TEST_POSITIVE = "test_positive"
    RECOVERY_NOT_VALID = "recovery_not_valid"
    NO_RULE = "no_rule"
    RISK_LIST_STALE = "risk_list_stale"
    RISK_LIST_MISSING = "risk_list_missing"
    CLOCK_UNTRUSTED = "clock_untrusted"
    INTERNAL_ERROR = "internal_error"
    DEVICE_NOT_READY = "device_not_ready"
    UNKNOWN_CODE = "unknown_code"
    RISK_NOT_COVERED = "risk_not_covered"
    RISK_LIST_DAMAGED = "risk_list_damaged"
    REPEAT_PASS = "repeat_pass"
    ISSUER_COUNTRY_MISMATCH = "issuer_country_mismatch"


#: reason -> (Vietnamese, English). Short enough for a lamp-side screen.
MESSAGES: dict[Reason, tuple[str, str]] = {
    Reason.OK: ("Hợp lệ, được qua", "Valid, may pass"),
    Reason.NOT_A_PASS: ("Mã QR không phải thẻ thông hành", "This QR code is not a pass"),
    Reason.MALFORMED: ("Mã QR bị hỏng hoặc sai định dạng", "QR code is damaged or malformed"),
    Reason.TOO_LARGE: ("Mã QR quá lớn, không hợp lệ", "QR code is too large to be a pass"),
    Reason.UNSUPPORTED_ALGORITHM: ("Thuật toán chữ ký không được hỗ trợ", "Signature algorithm not supported"),
    Reason.UNKNOWN_ISSUER: ("Không rõ đơn vị cấp", "Issuer is not trusted"),
    Reason.BAD_SIGNATURE: ("Chữ ký giả mạo hoặc sai", "Signature is forged or invalid"),
    Reason.ISSUER_KEY_EXPIRED: ("Khóa của đơn vị cấp đã hết hạn", "Issuer key was not valid at signing"),
    Reason.ISSUER_KEY_USAGE: ("Đơn vị cấp không được phép cấp loại này", "Issuer may not sign this kind"),
    Reason.SCHEMA_INVALID: ("Nội dung thẻ không hợp lệ", "Pass content is invalid"),
    Reason.NOT_YET_VALID: ("Thẻ chưa có hiệu lực", "Pass is not yet valid"),
    Reason.EXPIRED: ("Thẻ đã hết hạn", "Pass has expired"),
    Reason.PASS_REVOKED: ("Thẻ đã bị thu hồi", "Pass has been revoked by its issuer"),
    Reason.RISK_F0: ("Người nhiễm (F0): không được qua", "Infected person (F0): refuse"),
    Reason.RISK_F1: ("Tiếp xúc gần (F1): không được qua", "Close contact (F1): refuse"),
    Reason.RISK_REVOKED: ("Người giữ thẻ trong danh sách thu hồi", "Holder is on the revocation list"),
    Reason.FORMAT_NOT_ACCEPTED: ("Chốt này không nhận loại mã này", "This checkpoint does not accept this format"),
    Reason.KIND_NOT_ACCEPTED: ("Chốt này không nhận loại thẻ này", "This checkpoint does not accept this pass kind"),
    Reason.ZONE_NOT_ALLOWED: ("Thẻ không có hiệu lực tại vùng này", "Pass not valid in this zone"),
    Reason.INSUFFICIENT_VACCINATION: ("Chưa tiêm đủ liều", "Not enough vaccine doses"),
    Reason.TEST_TOO_OLD: ("Kết quả xét nghiệm đã quá hạn", "Test result is too old"),
    Reason.TEST_POSITIVE: ("Xét nghiệm dương tính", "Test result is positive"),
    Reason.RECOVERY_NOT_VALID: ("Giấy khỏi bệnh không còn hiệu lực", "Recovery certificate not valid now"),
    Reason.NO_RULE: ("Không có quy định áp dụng: kiểm tra thủ công", "No rule applies: check by hand"),
    Reason.RISK_LIST_STALE: ("Danh sách nguy cơ đã cũ: kiểm tra thủ công", "Risk list is stale: check by hand"),
    Reason.RISK_LIST_MISSING: ("Chưa có danh sách nguy cơ: kiểm tra thủ công", "No risk list: check by hand"),
    Reason.CLOCK_UNTRUSTED: ("Đồng hồ thiết bị chưa tin cậy: kiểm tra thủ công",
                             "Device clock untrusted: check by hand"),
    Reason.INTERNAL_ERROR: ("Lỗi thiết bị: kiểm tra thủ công", "Device error: check by hand"),
    Reason.DEVICE_NOT_READY: ("Thiết bị chưa nhận danh sách tin cậy hoặc quy định: kiểm tra thủ công",
                              "Device has no trust list or policy yet: check by hand"),
    Reason.RISK_NOT_COVERED: ("Danh sách nguy cơ không bao gồm loại thẻ/đơn vị cấp này: kiểm tra thủ công",
                              "Risk list does not cover this pass format or issuer: check by hand"),
    Reason.RISK_LIST_DAMAGED: ("Danh sách nguy cơ trên thẻ nhớ bị hỏng hoặc bị sửa: kiểm tra thủ công",
                               "Risk list on the card is damaged or edited: check by hand"),
    Reason.REPEAT_PASS: ("Thẻ này vừa được dùng tại chốt: kiểm tra người giữ thẻ",
                         "This pass was just used here: check who holds it"),
    Reason.UNKNOWN_CODE: ("Mã vắc-xin/xét nghiệm/quốc gia không có trong danh mục EU: kiểm tra thủ công",
                          "Vaccine/test/country code not in the EU value sets: check by hand"),
    Reason.ISSUER_COUNTRY_MISMATCH: ("Quốc gia cấp thẻ khác quốc gia của khóa ký",
                                     "Pass names another issuing country than its signing key"),
}
