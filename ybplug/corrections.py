"""A person's corrections of a birth, on the host (a part of :class:`ybplug.host.Host`).

A clerk amends a birth not yet registered or refused, replaces a registered one (void and register
again, one journaled two-step operation) and resolves a review with what the centre shows.  Each
is checked whole before anything is journaled, journaled with who did it, and the events follow.
"""

from __future__ import annotations

import logging
from typing import Any

from ybplug.config import Config
from ybplug.errors import Error
from ybplug.journal import BirthStatus, Delivery
from ybplug.lifecycle import ResolutionError, realname_mismatch
from ybplug.messages import REALNAME, Birth, RealNameQuery, VoidRequest, VoidResult, load
from ybplug.naming import birth_id_of, operator_of, registration_number_of
from ybplug.transactions import Refused, Transactions

log = logging.getLogger("ybplug.host")


class Corrections(Transactions):
    """Amend, replace, resolve; :class:`ybplug.host.Host` supplies the lookups, the void and the
    wake-ups."""

    config: Config

    async def birth(self, key: int | str, multiple_birth_number: int | None = None) -> BirthStatus:
        raise NotImplementedError

    async def void(self, registration_number: str, reason: str) -> VoidResult:
        raise NotImplementedError

    def births_waiting(self) -> None:
        raise NotImplementedError

    def deliver_soon(self, due: list[Delivery]) -> None:
        raise NotImplementedError

    async def amend_birth(self, birth_id: int, corrected: Birth | dict[str, Any], *, operator: str = "HIS") -> BirthStatus:
        """Correct a birth not yet answered by the centre, or refused by it, and send it again.

        The old record is kept in the journal with who amended it.  A registered birth is
        corrected with :meth:`replace_birth`.  Raises :class:`~ybplug.lifecycle.InvalidTransition`
        (nothing changed) for a birth in another state, and
        :class:`~ybplug.lifecycle.BirthConflict` when the corrected record is another birth's.
        """
        birth_id, operator = birth_id_of(birth_id), operator_of(operator)
        corrected = self._validated(corrected)
        await self.run_journal(self.journal.amend, birth_id, corrected, operator)
        self.births_waiting()
        return await self.birth(birth_id)

    async def replace_birth(
        self, birth_id: int, corrected: Birth | dict[str, Any], reason: str, *, operator: str = "HIS"
    ) -> BirthStatus:
        """Correct a registered birth: the centre has no update, so void its registration
        (yb04.13.01.22, with ``reason``) and register the corrected record as a new birth.

        One journaled two-step operation: the intent is journaled first, and the corrected birth
        is recorded in the same commit as the void.  A process killed in between carries on at
        its next start (or ``sync``), so the newborn never ends with neither or both registrations
        live.  Returns the corrected birth's status; the old one gets ``collection_voided``, the
        new one ``birth_recorded`` then its own ``collection_result``.
        """
        birth_id, operator = birth_id_of(birth_id), operator_of(operator)
        corrected = self._validated(corrected)
        # The void's request checked now, before the intent is journaled: a reason the void
        # would refuse must not leave a replacement under way that can never be carried on.
        registered = (await self.birth(birth_id)).registration_number
        if registered is not None:
            load(VoidRequest, {"baz726": registered, "bae016": reason}, charset=self.config.charset)
        replacement, number = await self.run_journal(self.journal.begin_replacement, birth_id, corrected, reason, operator)
        await self._carry_on_replacement(replacement, number, reason)
        status = await self.birth(birth_id)
        assert status.replaced_by is not None
        return await self.birth(status.replaced_by)

    async def _carry_on_replacement(self, replacement: int, number: str, reason: str) -> None:
        try:
            await self.void(number, reason)
        except Refused as exc:
            await self.run_journal(self.journal.replacement_failed, replacement, str(exc))
            raise
        self.births_waiting()

    async def resume_replacements(self) -> int:
        """Carry on replacements whose void is not known done (a process stopped between the
        steps); returns how many completed."""
        done = 0
        for replacement, number, reason in await self.run_journal(self.journal.replacements_under_way):
            try:
                await self._carry_on_replacement(replacement, number, reason)
                done += 1
            except Error as exc:
                log.warning("replacement #%d: %s", replacement, exc)
        return done

    # The signature is the journal's resolve_review's (which `duplicates` pairs): the host checks
    # and delivers, the journal records.
    async def resolve_review(
        self,
        birth_id: int,
        *,
        operator: str,
        registration_number: str | None = None,
        eligible: bool | None = None,
        refused: str | None = None,
        send_again: bool = False,
    ) -> BirthStatus:
        """Resolve a birth in needs review, as the person who looked at the centre found it:

        * ``registration_number="XSE...", eligible=True|False``: it is registered there; the
          birth becomes registered, ``collection_result`` says who resolved it, and the real-name
          poll asks about it.  The number is checked with the centre first (yb04.13.01.24): one it
          does not know, or has voided, is a :class:`ResolutionError`;
        * ``refused="cause"``: the centre refused it;
        * ``send_again=True``: the centre holds nothing; upload it again (the doubt is cleared).

        Journaled with ``operator`` and the time.
        """
        birth_id, operator = birth_id_of(birth_id), operator_of(operator)
        if refused is not None and (not isinstance(refused, str) or not refused.strip()):
            raise ResolutionError("refused=...: the cause the centre gave is required (what 定点机构管理系统 shows)")
        if registration_number is not None:
            registration_number = registration_number_of(registration_number)
            await self._check_at_centre(birth_id, registration_number)
        _, claimed = await self.run_journal(
            self.journal.resolve_review, birth_id, operator=operator, registration_number=registration_number,
            eligible=eligible, refused=refused, send_again=send_again,
        )
        self.deliver_soon(claimed)
        if send_again:
            self.births_waiting()
        return await self.birth(birth_id)

    async def _check_at_centre(self, birth_id: int, number: str) -> None:
        """Ask the centre (yb04.13.01.24, which changes nothing there) about a number a person
        typed to resolve a review: it must be a live registration there.  A typo that happens to
        have the right shape would otherwise be polled quietly for a year (the centre leaves
        numbers it does not know out of its answer), and a voided one would void the newborn at
        the next real-name poll.  A centre that cannot be asked now raises its WireError."""
        result = await self.ask(REALNAME, RealNameQuery.of([number]), lambda exchange_id, result: result)
        if not result.ok:
            raise ResolutionError(f"the centre would not say whether it knows baz726 {number}: {result.cause or 'no cause given'}")
        found = [r for r in result.records if str(r.registration_number) == number]
        if not found:
            raise ResolutionError(
                f"the centre does not know baz726 {number}: check the number in 定点机构管理系统 (birth #{birth_id} stays in review)"
            )
        if found[0].voided:
            raise ResolutionError(f"baz726 {number} is voided at the centre: a voided registration cannot be this birth's")
        mismatch = realname_mismatch((await self.birth(birth_id)).birth, found[0])  # already real-named: whose?
        if mismatch is not None:
            raise ResolutionError(mismatch.replace(" (typed when a review was resolved)", ""))

    def _validated(self, birth: Birth | dict[str, Any]) -> Birth:
        """A corrected record checked as ``record_birth`` checks one (the configured charset too):
        a correction the centre would refuse must not void the registration it replaces."""
        if isinstance(birth, Birth):
            birth.check(self.config.charset)
            return birth
        return load(Birth, birth, charset=self.config.charset)
