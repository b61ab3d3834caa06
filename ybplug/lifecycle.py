"""A birth's life: which state follows which answer, and what a reviewer reads.

Pure decisions, no storage: the journal asks here and stores what it is told, so the rules can
be read (and table-tested) in one place.  The rules that keep a registration from being lost or
silently wrong:

* Only a clear registration (``flag`` 1 with a well-formed ``baz726``) registers a birth.
* An upload whose outcome is unknown (the reply was lost, late or unreadable; the process died
  after the request left) makes the birth *in doubt*: the centre may hold it.  Once in doubt,
  any later answer other than a clear registration (a duplicate, a refusal for another reason
  such as 系统繁忙) sends the birth to needs review with every answer kept, never to refused.
* A duplicate answer for a birth never in doubt means it was registered outside this HIS (by
  hand in 定点机构管理系统): needs review too.
* Anything else the centre refuses is refused, with its cause.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class BirthState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    REGISTERED = "registered"
    REFUSED = "refused"
    NEEDS_REVIEW = "needs_review"
    VOIDED = "voided"
    REAL_NAMED = "real_named"


@dataclass(frozen=True)
class Answer:
    """One earlier exchange of a birth's upload, as the reviewer should read it."""

    outcome: str
    error: str | None


@dataclass(frozen=True)
class UploadDecision:
    """What an answer to yb04.13.01.21 does to a birth."""

    state: BirthState
    #: What ``status`` and the reviewer read (the refusal's cause, or why a person must look).
    reason: str | None
    #: True: the event is ``birth_needs_review``; else ``collection_result``.
    review: bool = False


def after_upload(
    *, ok: bool, cause: str | None, ineligibility: str | None, duplicate: bool, earlier: Sequence[Answer]
) -> UploadDecision:
    """The state after the centre answered an upload.

    ``earlier`` are the birth's earlier upload exchanges; any of them ``sent`` (no answer
    recorded) or ``unknown`` means the birth is in doubt.
    """
    if ok:
        return UploadDecision(BirthState.REGISTERED, ineligibility)
    in_doubt = [a for a in earlier if a.outcome in ("sent", "unknown")]
    said = f"the centre answers: {cause or 'no cause given'}"
    if in_doubt:
        history = "; ".join(f"{a.outcome} ({a.error})" if a.error else a.outcome for a in earlier)
        return UploadDecision(
            BirthState.NEEDS_REVIEW,
            f"{said}; but an earlier upload's answer was lost, so the centre may have registered it "
            f"(earlier answers: {history}); look up its baz726 at the centre",
            review=True,
        )
    if duplicate:
        return UploadDecision(
            BirthState.NEEDS_REVIEW,
            f"{said}; it was probably registered outside this HIS (e.g. by hand in 定点机构管理系统); "
            "look up its baz726 at the centre",
            review=True,
        )
    return UploadDecision(BirthState.REFUSED, cause or "refused without a cause")


__all__ = ["Answer", "BirthState", "UploadDecision", "after_upload"]
