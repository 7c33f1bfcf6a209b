"""The project's one exception root.

Every error the appliance, the sync wire or the central server raises on purpose derives from
``CheckpointError``, so a command line or a daemon loop can tell "ours, with a message meant for an
operator" from a programming error with one ``except``. Messages are plain sentences saying what
happened and, where it helps, what to do; the log line that reports one adds ``event=`` and
``action=`` keys, never the exception itself.
"""

from __future__ import annotations


class CheckpointError(Exception):
    """Root of every deliberate error in the project."""
