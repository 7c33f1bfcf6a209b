"""CWT claim keys (RFC 8392) used by both pass formats, and each format's own payload claim."""

from __future__ import annotations

CLAIM_ISS, CLAIM_EXP, CLAIM_NBF, CLAIM_IAT, CLAIM_CTI = 1, 4, 5, 6, 7
#: EU DCC: the health certificate claim (HCERT spec), holding {1: DCC payload}
CLAIM_HCERT = -260
#: our CP1 pass: a private-use claim holding the pass body
CLAIM_CP1 = -65537
