"""A hospital plugin for the lifecycle tests: subscribed to every event hook, it remembers each
delivery (hook, birth id, event id and what the hook says)."""

from __future__ import annotations

import json
from pathlib import Path
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


class FileRecorder:
    """The same, for hosts in other processes: each delivery appended to a file as one JSON line
    (hook, birth id, event id, registration number), so a test counts deliveries across a kill."""

    ybplug_name = "file-recorder"

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, hook: str, birth_id: int | None, event_id: str, number: str | None) -> None:
        line = json.dumps({"hook": hook, "birth_id": birth_id, "event_id": event_id, "number": number})
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(line + "\n")

    @hookimpl
    def birth_recorded(self, birth: Birth, birth_id: int, event_id: str) -> None:
        self._write("birth_recorded", birth_id, event_id, None)

    @hookimpl
    def collection_result(self, birth: Birth, result: CollectionResult, birth_id: int, event_id: str) -> None:
        self._write("collection_result", birth_id, event_id, result.registration_number)

    @hookimpl
    def collection_voided(self, registration_number: str, reason: str, birth_id: int | None, event_id: str) -> None:
        self._write("collection_voided", birth_id, event_id, registration_number)


def read_file_recorder(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
