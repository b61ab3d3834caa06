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
from enum import StrEnum

import msgspec

from ybplug.errors import Error
from ybplug.messages import Birth, RealNameRecord
from ybplug.privacy import mask


class BirthState(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    REGISTERED = "registered"
    REFUSED = "refused"
    NEEDS_REVIEW = "needs_review"
    VOIDED = "voided"
    REAL_NAMED = "real_named"
    #: Registered, not real-named within the horizon: no longer polled daily (on demand only).
    STALE = "stale"


class Action(StrEnum):
    """What a person (through the HIS, the CLI or the console) can do to a birth."""

    AMEND = "amend"
    REPLACE = "replace"
    RESOLVE = "resolve review"
    VOID = "void"
    POLL_STALE = "poll stale"


#: The states each action may start from; anything else is :class:`InvalidTransition`.
ALLOWED: dict[Action, frozenset[BirthState]] = {
    # Not yet answered by the centre (and not in doubt), or refused: nothing is registered.
    Action.AMEND: frozenset({BirthState.PENDING, BirthState.REFUSED}),
    # Registered: the centre has no update, so void it and register the corrected record.
    Action.REPLACE: frozenset({BirthState.REGISTERED, BirthState.STALE}),
    Action.RESOLVE: frozenset({BirthState.NEEDS_REVIEW}),
    Action.VOID: frozenset({BirthState.REGISTERED, BirthState.STALE, BirthState.REAL_NAMED}),
    Action.POLL_STALE: frozenset({BirthState.STALE}),
}

_ADVICE: dict[Action, str] = {
    Action.AMEND: "amend is for a birth not yet answered by the centre, or refused by it"
    " (a registered birth is corrected with replace)",
    Action.REPLACE: "replace is for a registered birth (one not yet sent or refused is corrected with amend)",
    Action.RESOLVE: "only a birth in needs review is resolved",
    Action.VOID: "only a registration the centre holds can be voided",
    Action.POLL_STALE: "only a stale birth (registered, not real-named within the horizon) is polled on demand",
}


class InvalidTransition(Error):
    """An action on a birth in a state it does not apply to; nothing was changed."""

    def __init__(self, action: Action, birth_id: int, state: BirthState, why: str = "") -> None:
        self.action, self.birth_id, self.state = action, birth_id, state
        super().__init__(f"cannot {action} birth #{birth_id}: it is {state}; {why or _ADVICE[action]}")


class ResolutionError(Error):
    """A review resolved in a way that does not hold together (two ways at once, no eligibility)."""


def check(action: Action, birth_id: int, state: BirthState) -> None:
    """Raise :class:`InvalidTransition` unless ``action`` applies to a birth in ``state``."""
    if state not in ALLOWED[action]:
        raise InvalidTransition(action, birth_id, state)


class BirthConflict(Error):
    """A birth matches a journaled one (the centre's key, or the HIS serial) with other data.

    Never merged silently: ``differences`` names each differing field (wire name and Chinese
    name; personal values masked), ``birth_id`` and ``state`` say which journaled birth it meets.
    """

    def __init__(self, birth_id: int, state: BirthState, matched_by: str, differences: list[str]) -> None:
        self.birth_id, self.state, self.differences = birth_id, state, differences
        # No difference: the very record is journaled already as another birth (an amend or a
        # replacement that would make two births of one).
        other = f"but other data: {'; '.join(differences)}" if differences else "and the very same data"
        super().__init__(
            f"this birth conflicts with journaled birth #{birth_id} ({state}), which has the same {matched_by} "
            f"{other}.  If the journaled record is wrong, correct it "
            f"(amend_birth for a birth not yet registered, replace_birth for a registered one); if this is "
            "another newborn, fix its bme027 多胞胎序号 / bke042 his流水号"
        )


def differences(old: Birth, new: Birth) -> list[str]:
    """Each field whose value differs, as ``bkee30 新生儿姓名: 陈* -> 林*`` (personal values masked)."""
    out = []
    wire = dict(zip(Birth.__struct_fields__, Birth.__struct_encode_fields__, strict=True))
    for name in Birth.__struct_fields__:
        before, after = getattr(old, name), getattr(new, name)
        if before != after:
            show = mask if name in Birth.personal else repr
            out.append(f"{wire[name]} {Birth.labels.get(wire[name], '')}: {show(before)} -> {show(after)}")
    return out


class Answer(msgspec.Struct, frozen=True):
    """One earlier exchange of a birth's upload, as the reviewer should read it."""

    outcome: str
    error: str | None


class UploadDecision(msgspec.Struct, frozen=True):
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


def realname_mismatch(birth: Birth, record: RealNameRecord) -> str | None:
    """Why the identity the centre real-named under a birth's number cannot be this newborn's, or
    None.  The one fact both sides hold is the sex (aac004 新生儿性别, 1 男 2 女): a number typed
    from another newborn's line when a review was resolved shows up here, before the other
    child's ID number reaches the HIS."""
    known = ("1", "2")
    if record.sex in known and birth.newborn_sex in known and record.sex != birth.newborn_sex:
        return (
            f"the centre real-named baz726 {record.registration_number} as aac004 性别 {record.sex},"
            f" but this newborn is {birth.newborn_sex}: the number is probably another newborn's"
            " (typed when a review was resolved); look up this newborn's baz726 at the centre"
        )
    return None


def after_unreadable(in_a_row: int, last: str) -> UploadDecision:
    """The state after ``in_a_row`` upload answers in a row that could not be read (``last`` is
    the latest): each may have registered the birth, and asking again has not helped."""
    return UploadDecision(
        BirthState.NEEDS_REVIEW,
        f"the centre answered {in_a_row} times in a way that cannot be read ({last}); it may have"
        " registered it: look up its baz726 at the centre",
        review=True,
    )


__all__ = [
    "ALLOWED", "Action", "Answer", "BirthConflict", "BirthState", "InvalidTransition", "UploadDecision",
    "after_unreadable", "after_upload", "check", "differences", "realname_mismatch",
]
