"""Hard bounds on every pass input: checked before any work that could grow with the input."""

from __future__ import annotations

#: longest QR text we look at (a version-40 QR holds 4,296 alphanumeric characters)
MAX_TEXT_CHARS = 4_400
#: largest compressed CWT (base45 turns 2 bytes into 3 characters)
MAX_COMPRESSED_BYTES = MAX_TEXT_CHARS * 2 // 3 + 2
#: largest CWT after inflating; real passes are well under 2 KiB
MAX_INFLATED_BYTES = 16 * 1024
#: deepest CBOR nesting a pass may use (DCC payloads need about 5)
MAX_CBOR_DEPTH = 16
