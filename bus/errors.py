"""Bus errors finer than ``caregraph.errors.BusError``; still caught by ``except BusError``."""

from __future__ import annotations

from caregraph.errors import BusError


class CommitFailed(BusError):
    """The group was rebalanced and this member no longer owns a partition it tried to
    commit. Nothing is lost: the new owner starts from the last good commit, so the
    messages are delivered again (at-least-once). Callers log it and go on polling."""


class DeadLetterFormatError(BusError):
    """Bytes on the deadletter topic that are not a deadletter record of a known version."""
