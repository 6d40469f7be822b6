"""Model text made safe for a terminal: a reply is untrusted input, and printed as-is its escape codes
would retitle the window (OSC), clear the screen (CSI), or worse. Layout (newline, tab) is kept."""

from __future__ import annotations

import re

# Whole escape sequences first, so none leaves its parameters behind as text: OSC (to BEL or ST), the
# string ones (DCS, SOS, PM, APC, to ST), CSI, then any other two-character ESC sequence.
_ESCAPES = re.compile(
    r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"
    r"|\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[ -/]*[0-~]?"
)
# Then every C0 and C1 control character but \t and \n (ESC, BEL, CR, backspace, the 8-bit CSI 0x9b...),
# which also disarms a sequence split across two pieces of a stream: without its introducer it is text.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """`text` without escape sequences and control characters other than newline and tab."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text))
