"""Hook specifications of ybplug, grouped by phase.

Two kinds of hook:

* **Events** (``birth_recorded``, ``collection_result``, ``birth_needs_review``,
  ``collection_voided``, ``realname_resolved``) are journaled before they are delivered.  Every
  plugin implementing one gets each event at least once, with the same ``event_id`` on every
  retry, so a local write can be made idempotent (``INSERT ... ON CONFLICT(event_id) DO NOTHING``).
  Raising means "not done, try again later"; after the configured attempts the delivery is parked
  and ``ybplug retry`` replays it.  Return values are ignored.
* **Machinery** hooks (``ybplug_*``) run the framework itself: start-up, the transport, the
  transactions.  The built-in plugins implement them; a hospital may too, e.g. to replace the wire.

``qr_decoded`` is an event too, but it is delivered once, live: the identity holds the QR token,
which must not be written in the clear to the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ybplug.hooks import hookspec

if TYPE_CHECKING:
    from ybplug.alerts.model import Alert
    from ybplug.config import Config
    from ybplug.journal import BirthStatus
    from ybplug.messages import (
        Birth,
        CollectionResult,
        QrIdentity,
        QrRequest,
        RealNameRecord,
        VoidResult,
    )
    from ybplug.config import WireConfig
    from ybplug.wire import Transport


class Host(Protocol):
    """What a plugin's machinery hook may use of the host it is given (``ybplug.host.Host`` is the
    whole of it).  A protocol, so that the contract does not depend on the host's module."""

    config: Config
    #: Whether scheduled work runs in this host (False for one-shot commands such as ``ybplug sync``).
    background: bool

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, Any]], name: str | None = None) -> None:
        """Run background work in the host's task group until the host exits."""

    async def birth(self, key: int | str, multiple_birth_number: int | None = None) -> BirthStatus:
        """Where a birth stands."""

    async def status(self) -> dict[str, Any]:
        """Counts by state, deliveries, reviews, subscribers and runs."""


# --- start-up and shutdown -------------------------------------------------------------------


@hookspec
def ybplug_startup(host: Host) -> None:
    """Called once when the host starts, after every plugin is registered and the journal is open.

    A plugin that needs background work starts it here with ``host.start_soon(coroutine_fn)``;
    it runs in the host's task group and is cancelled when the host exits.
    """


@hookspec
def ybplug_shutdown(host: Host) -> None:
    """Called once when the host stops, before background work is cancelled."""


@hookspec(firstresult=True)
def ybplug_transport(config: WireConfig) -> Transport | None:
    """Supply the transport to the centre.  The first non-None result wins.

    The built-in implementation (``trylast``) returns :class:`ybplug.wire.HttpTransport`; a
    hospital whose vendor agent speaks another envelope returns its own
    :class:`ybplug.wire.Transport` here.
    """


# --- transactions (carried out by the built-in plugins) --------------------------------------


@hookspec
async def ybplug_sync(host: Host, job: str, births: list[int] | None) -> dict[str, int] | None:
    """Run scheduled work now: ``job`` is ``"upload"``, ``"realname"``, ``"stale"`` or ``"all"``;
    ``births``, when given, limits the upload to those birth ids (a clerk's correction, sent at
    once without the day's other births in daily mode).

    Called by the schedule and by ``await host.sync()``.  Each plugin runs the jobs it owns and
    returns counts for the summary (``{"uploaded": 3}``), or None if the job is not its own.
    """


@hookspec(firstresult=True)
async def ybplug_void(host: Host, registration_number: str, reason: str) -> VoidResult | None:
    """Carry out yb04.13.01.22 for ``await host.void(...)``.  The first non-None result wins.

    Returns the centre's answer (``ok`` false with ``cause`` for a refusal); raises
    :class:`ybplug.wire.WireError` when no answer was had.
    """


@hookspec(firstresult=True)
async def ybplug_decode_qr(host: Host, request: QrRequest) -> QrIdentity | None:
    """Decode a national insurance QR code for ``await host.decode_qr(...)``.  First result wins.

    The built-in implementation calls ``EcTrans`` of the configured vendor library.
    """


# --- observers ---------------------------------------------------------------------------------


@hookspec
def ybplug_transaction(funid: str, outcome: str, elapsed: float, transaction_id: int) -> None:
    """Called after every transaction with the centre, for audit, metrics and tracing.

    ``outcome`` is ``ok``, ``refused``, ``not_delivered``, ``unknown``, ``auth_failed`` or
    ``failed`` (an EcTrans call that broke);
    ``elapsed`` is seconds on the wire; ``transaction_id`` is the journal row holding request and
    reply.  Observers must be quick; failures are logged and ignored.
    """


@hookspec
def ybplug_alert(alert: Alert) -> None:
    """Something needs a person (``alert.status`` ``firing``), still does after ``[alerts]
    remind_minutes`` (``reminder``), or no longer does (``resolved``).

    Called by the worker (``ybplug run`` with ``[alerts]`` in the config), at most once per
    incident and status: ``alert.key`` names the incident (``parked:PLUGIN``, ``review``,
    ``signin``, ``upload``, ``voucher``, ``stale``), ``alert.text`` says in Chinese what happened
    and what to do, with no personal data.  The built-in ``ybplug.webhook`` posts it to the
    configured group robots; a hospital may page, mail or text.  Return values are ignored;
    raising means "not delivered": when every implementation raised, the alert is sent again at
    the next look.
    """


# --- events --------------------------------------------------------------------------------------


@hookspec
def birth_recorded(birth: Birth, birth_id: int, event_id: str) -> None:
    """A birth is durable in the journal (``await host.record_birth`` returned).

    ``birth_id`` is the journal's id for this newborn; it never changes.
    """


@hookspec
def collection_result(
    birth: Birth, result: CollectionResult, birth_id: int, event_id: str, resolved_by: str | None
) -> None:
    """The centre answered yb04.13.01.21 for ``birth`` (or a person resolved its review).

    ``result.ok``: registered; ``result.registration_number`` is the ``baz726`` to keep, and
    ``result.eligible`` says whether the newborn may pre-enrol (``ineligibility_reason`` if not).
    Not ``ok``: refused (``result.cause``); fix the record and record it again (the corrected
    record replaces the refused one and is sent again), or ``host.amend_birth(birth_id, ...)``.
    ``resolved_by`` names the operator who resolved a review with this result (found the
    ``baz726`` in 定点机构管理系统, or found it refused); None when the centre answered.
    After ``host.replace_birth`` the corrected birth gets its own ``collection_result`` under its
    own ``birth_id``, the old registration a ``collection_voided``.
    """


@hookspec
def birth_needs_review(birth: Birth, reason: str, birth_id: int, event_id: str) -> None:
    """The centre says the birth is a duplicate, but ybplug holds no registration number for it.

    Usually an earlier upload reached the centre and its reply was lost, or the birth was entered
    by hand in 定点机构管理系统.  A person must look up the ``baz726`` there and resolve it with
    ``host.resolve_review`` (``ybplug review resolve``): registered with the number found, refused,
    or sent again when the centre holds nothing.
    """


@hookspec
def collection_voided(registration_number: str, reason: str, birth_id: int | None, event_id: str) -> None:
    """A registration was voided (yb04.13.01.22), by ``host.void`` or at the centre.

    ``birth_id`` is None when the number was not one this journal registered.
    """


@hookspec
def realname_resolved(birth: Birth, record: RealNameRecord, birth_id: int, event_id: str) -> None:
    """A newborn registered here is now real-named (yb04.13.01.24 answered ``bae018`` Y).

    ``record`` carries the real identity (``id_number``, ``name``, ``personal_code``) that
    replaces the newborn's virtual one in the HIS.
    """


@hookspec
def qr_decoded(identity: QrIdentity, request: QrRequest, event_id: str) -> None:
    """A national insurance QR code was decoded (``host.decode_qr``): register the patient.

    Delivered once, live, to every plugin; not journaled because ``identity.ec_token`` is a secret.
    """

