"""A hospital plugin for the lifecycle tests: subscribed to every event hook, it remembers each
delivery (hook, birth id, event id and what the hook says)."""

from __future__ import annotations

from typing import Any

from ybplug.hooks import hookimpl
from ybplug.messages import Birth, CollectionResult, RealNameRecord


class Recorder:
    """A hospital plugin subscribed to every event hook, remembering (hook, birth id, event id)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None, str, dict[str, Any]]] = []

    def of(self, hook: str, birth_id: int | None = None) -> list[dict[str, Any]]:
        return [kw for h, b, _, kw in self.seen if h == hook and (birth_id is None or b == birth_id)]

    @hookimpl
    def birth_recorded(self, birth: Birth, birth_id: int, event_id: str) -> None:
        self.seen.append(("birth_recorded", birth_id, event_id, {"birth": birth}))

    @hookimpl
    def collection_result(
        self, birth: Birth, result: CollectionResult, birth_id: int, event_id: str, resolved_by: str | None
    ) -> None:
        self.seen.append(("collection_result", birth_id, event_id, {"result": result, "resolved_by": resolved_by}))

    @hookimpl
    def birth_needs_review(self, reason: str, birth_id: int, event_id: str) -> None:
        self.seen.append(("birth_needs_review", birth_id, event_id, {"reason": reason}))

    @hookimpl
    def realname_resolved(self, record: RealNameRecord, birth_id: int, event_id: str) -> None:
        self.seen.append(("realname_resolved", birth_id, event_id, {"record": record}))

    @hookimpl
    def collection_voided(self, registration_number: str, reason: str, birth_id: int | None, event_id: str) -> None:
        self.seen.append(("collection_voided", birth_id, event_id, {"registration_number": registration_number}))

    def event_ids(self) -> list[str]:
        return [e for _, _, e, _ in self.seen]
