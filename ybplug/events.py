"""The payloads of journaled events.

An event is written to the journal in the same SQLite transaction as the state change that caused
it, then delivered to each plugin until it succeeds.  Its arguments are stored as JSON with the
spec's wire names and decoded back into the same typed messages on every (re)delivery.
"""

from __future__ import annotations

from typing import Any, get_args

import msgspec

from ybplug.fields import trusted
from ybplug.messages import Birth, CollectionResult, RealNameRecord


# Each class is named after its hook (``collection_result`` -> ``CollectionResultEvent``), and its
# tag is the hook's name: what is journaled says which hook delivers it.
class Event(msgspec.Struct, frozen=True):
    """Base of event payloads: the hook's keyword arguments, less ``event_id``."""

    def arguments(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__struct_fields__}


class BirthRecordedEvent(Event, frozen=True, tag="birth_recorded"):
    birth: Birth
    birth_id: int


class CollectionResultEvent(Event, frozen=True, tag="collection_result"):
    birth: Birth
    result: CollectionResult
    birth_id: int
    #: The operator who resolved a review with this result (None: the centre answered).
    resolved_by: str | None = None


class BirthNeedsReviewEvent(Event, frozen=True, tag="birth_needs_review"):
    birth: Birth
    reason: str
    birth_id: int


class CollectionVoidedEvent(Event, frozen=True, tag="collection_voided"):
    registration_number: str
    reason: str
    birth_id: int | None


class RealnameResolvedEvent(Event, frozen=True, tag="realname_resolved"):
    birth: Birth
    record: RealNameRecord
    birth_id: int


AnyEvent = BirthRecordedEvent | CollectionResultEvent | BirthNeedsReviewEvent | CollectionVoidedEvent | RealnameResolvedEvent

#: The hooks whose events are journaled and delivered to durable subscribers.
EVENT_HOOKS: tuple[str, ...] = tuple(str(kind.__struct_config__.tag) for kind in get_args(AnyEvent))

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def hook_of(event: Event) -> str:
    return str(type(event).__struct_config__.tag)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(payload: bytes) -> Event:
    """An event as journaled; its messages were validated before they were recorded."""
    with trusted():
        event: Event = _decoder.decode(payload)
    return event
