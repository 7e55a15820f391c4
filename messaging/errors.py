"""Errors of partner messaging, under ``caregraph.errors`` (the one rooted tree).

    CaregraphError
    └── MappingError                 (caregraph.errors)
        └── MessagingError           a message caregraph refuses
            ├── NotAMessage          400: not a Bundle of type message with a MessageHeader
            │                        first (no response message can be addressed)
            ├── UnsupportedEvent     the event is not one caregraph processes: fatal-error
            ├── InvalidContent       a resource in the message is invalid: fatal-error
            └── MessageRefused       the partner's token does not allow a write: fatal-error

``api.py`` is the edge: ``NotAMessage`` becomes a 400 OperationOutcome, every other
``MessagingError`` a response message with code ``fatal-error``, and a failing database
(``StoreUnavailable``) one with ``transient-error`` (the partner should retry).
"""

from __future__ import annotations

from caregraph.errors import MappingError


class MessagingError(MappingError):
    """A partner message caregraph refuses; ``issue_code`` is the FHIR IssueType."""

    issue_code = "invalid"

    def __init__(
        self,
        message: str,
        location: str | None = None,
        issues: list[tuple[str | None, str]] | None = None,
    ) -> None:
        super().__init__(message, location)
        #: Every problem found, as (element, why); at least the message itself.
        self.issues = issues or [(location, message)]


class NotAMessage(MessagingError):
    issue_code = "structure"


class UnsupportedEvent(MessagingError):
    issue_code = "not-supported"


class InvalidContent(MessagingError):
    issue_code = "invalid"


class MessageRefused(MessagingError):
    issue_code = "forbidden"
