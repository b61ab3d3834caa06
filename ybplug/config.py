"""Configuration: one TOML file (``ybplug.toml``), every key optional, misspelled keys refused.

Example::

    journal = "/var/lib/ybplug/journal.db"   # default: ybplug.system.default_journal()
    log_file = "/var/log/ybplug/ybplug.log"  # default: stderr only
    upload = "daily at 02:00"          # or "immediate"
    realname_interval = 86400          # seconds between yb04.13.01.24 polls
    plugins = ["st_mary_his.ybplug_plugin"]

    [wire]
    url = "http://10.1.2.3:8080"
    usr = "H35020001"                  # pwd from YBPLUG_PWD rather than this file

    [voucher]
    library = "C:/ylz/ylz-certificate.dll"
    backend = "process"
"""

from __future__ import annotations

import math
import os
import re
import urllib.parse
from pathlib import Path
from typing import Any, Literal

import msgspec

from ybplug.alerts.config import AlertsSection
from ybplug.console.config import ConsoleSection
from ybplug.dotnet.config import DotnetSection
from ybplug.envelope import OUTPUT_LEN
from ybplug.errors import Error
from ybplug.system import default_journal
from ybplug.textfile import UnreadableFile, decode_text
from ybplug.voucher.config import VoucherConfig


class ConfigError(Error):
    """A configuration a person wrote is wrong; the message says where and how."""


#: The centre when neither the file nor ``YBPLUG_URL`` names one: the sandbox's default port.
DEFAULT_URL = "http://127.0.0.1:8721"


class WireConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[wire]``: where the centre is and who we are; the TOML loads into it, the transport takes it.

    One struct for both, so a setting cannot have one default in the file and another in the
    transport.  An empty ``url``/``usr``/``pwd`` means "not set here": :meth:`with_env` fills it from
    ``YBPLUG_URL``/``YBPLUG_USR``/``YBPLUG_PWD`` (a password rather lives in the environment than in a
    file).  ``repr``/``str`` mask ``pwd``; ``msgspec.to_builtins`` keeps it (it is sent on the wire).
    """

    url: str = ""
    usr: str = ""
    pwd: str = ""
    sign_in: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    output_len: int = OUTPUT_LEN
    max_connections: int = 64

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout"):
            if not 0 < getattr(self, name) < math.inf:  # NaN fails both comparisons
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)}")
        if not 1 <= self.max_connections <= 1000:
            raise ValueError(f"max_connections must be 1 to 1000 connections at once, got {self.max_connections}")
        if not 1 <= self.output_len <= 10_000_000:
            raise ValueError(f"output_len must be 1 to 10000000 (the reply buffer the centre is told), got {self.output_len}")
        if self.url and not _is_http_url(self.url):
            raise ValueError("url must be the centre's http:// or https:// address (e.g. http://10.1.2.3:8080/)")

    @property
    def endpoint(self) -> str:
        """The centre's base URL (:data:`DEFAULT_URL` when none is set)."""
        return self.url or DEFAULT_URL

    def with_env(self) -> WireConfig:
        """A copy whose unset ``url``/``usr``/``pwd`` come from ``YBPLUG_URL``/``YBPLUG_USR``/``YBPLUG_PWD``
        (the url, failing those, is :data:`DEFAULT_URL`)."""
        filled = {name: os.environ.get(f"YBPLUG_{name.upper()}", "") for name in ("url", "usr", "pwd")
                  if not getattr(self, name)}
        values = {k: v for k, v in filled.items() if v}
        values.setdefault("url", self.endpoint)
        return msgspec.structs.replace(self, **values)

    def __repr__(self) -> str:
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            parts.append(f"{name}={'***' if name == 'pwd' and value else repr(value)}")
        return f"WireConfig({', '.join(parts)})"

    __str__ = __repr__

    def __rich_repr__(self) -> list[tuple[str, Any]]:  # msgspec's own would list pwd in the clear
        return [(name, "***" if name == "pwd" and getattr(self, name) else getattr(self, name))
                for name in self.__struct_fields__]


#: The name this section had before the transport and the file shared one struct.
WireSection = WireConfig


#: ``[voucher]``: the EcTrans library and the defaults of every QR request made here (``org_id``,
#: ``district_no``); one struct with :class:`ybplug.voucher.Voucher`'s own configuration.
VoucherSection = VoucherConfig


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything the host needs; defaults are the embedded sandbox setup."""

    journal: str = msgspec.field(default_factory=default_journal)
    """Where the journal lives; left out, the platform's place for a service's data
    (``%PROGRAMDATA%\\ybplug`` / ``/var/lib/ybplug``), never the current directory.  A
    ``postgresql://user@host/db`` URL puts it on PostgreSQL (``pip install 'ybplug[postgresql]'``),
    for several workers on several machines; its password comes from ``YBPLUG_JOURNAL_PASSWORD``
    (or libpq's ``PGPASSWORD``, ``~/.pgpass``), not from this file."""
    log_file: str | None = None
    """``ybplug run`` also logs to this file (0600), rotated at ``log_max_bytes``, keeping ``log_backups``."""
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per line (time, level, logger, message), for a log shipper."""
    upload: str = "daily at 02:00"
    realname_interval: float = 86400.0
    realname_batch: int = 100
    realname_concurrency: int = 4
    #: Days after registration a newborn not yet real-named stops being polled daily (stale).
    realname_horizon_days: float = 365.0
    upload_batch: int = 50
    upload_concurrency: int = 8
    hook_timeout: float = 30.0
    hook_threads: int = 8
    delivery_attempts: int = 10
    delivery_backoff: float = 1.0
    delivery_backoff_cap: float = 600.0
    upload_backoff: float = 5.0
    upload_backoff_cap: float = 3600.0
    lease: float = 120.0
    charset: Literal["gbk", "gb18030"] = "gbk"
    duplicate_markers: list[str] = msgspec.field(default_factory=lambda: ["重复", "duplicate", "已存在"])
    already_void_markers: list[str] = msgspec.field(default_factory=lambda: ["已作废", "already void"])
    plugins: list[str] = msgspec.field(default_factory=list)
    wire: WireConfig = msgspec.field(default_factory=WireConfig)
    voucher: VoucherSection | None = None
    dotnet: DotnetSection | None = None
    console: ConsoleSection | None = None
    alerts: AlertsSection | None = None

    def __post_init__(self) -> None:
        if not self.journal_on_server and looks_like_keywords(self.journal):
            raise ValueError(KEYWORDS_RULE)
        if upload_time(self.upload) is None and self.upload != "immediate":
            raise ValueError(f"upload must be 'immediate' or 'daily at HH:MM', got {self.upload!r}")
        for name in self.__struct_fields__:  # nan or inf would make a timer never fire, or fire at once forever
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value}")
        if not self.journal_on_server and not Path(self.journal).name:
            raise ValueError(f"journal {self.journal!r} names a folder, not the journal's file (e.g. /var/lib/ybplug/journal.db)")
        if self.log_max_bytes < 0 or self.log_backups < 0:
            raise ValueError("log_max_bytes and log_backups must not be negative")
        for name in ("realname_interval", "hook_timeout", "lease", "realname_batch", "realname_concurrency",
                     "upload_batch", "upload_concurrency", "delivery_attempts"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        exchange = self.wire.connect_timeout + self.wire.read_timeout
        if self.lease <= exchange:
            raise ValueError(
                f"lease ({self.lease:g} s) must be longer than [wire] connect_timeout + read_timeout"
                f" ({exchange:g} s): a worker's claim on a birth must outlast its slowest exchange with"
                " the centre, or another worker takes the birth over and sends it a second time"
            )
        if self.lease <= self.hook_timeout + 1:
            raise ValueError(
                f"lease ({self.lease:g} s) must be longer than hook_timeout ({self.hook_timeout:g} s) and a second:"
                " a delivery's claim must outlast the plugin's longest call, or it is handed to the plugin twice"
            )
        if self.realname_batch > 99999:
            raise ValueError("realname_batch must be at most 99999 (rownum is number(5))")
        for name in ("duplicate_markers", "already_void_markers"):  # "" would be found in every cause
            if any(not marker.strip() for marker in getattr(self, name)):
                raise ValueError(f"{name} must not hold an empty text: it would match every refusal's cause")
        for name in ("journal", "log_file"):
            value = getattr(self, name)
            if isinstance(value, str) and any(ord(c) < 32 for c in value):
                raise ValueError(f"{name} must not contain control characters (such as NUL)")
        if self.log_file is not None and not Path(self.log_file).name:
            raise ValueError(f"log_file {self.log_file!r} names a folder, not the log's file (e.g. /var/log/ybplug/ybplug.log)")

    def wire_config(self) -> WireConfig:
        """The wire settings, with ``YBPLUG_URL``/``YBPLUG_USR``/``YBPLUG_PWD`` filling what the file leaves out."""
        return self.wire.with_env()

    def __repr__(self) -> str:
        # Spelled out: the journal URL's password masked here, wire.pwd by WireConfig.__repr__.
        parts = ", ".join(
            f"{name}={self.journal_shown if name == 'journal' else getattr(self, name)!r}"
            for name in self.__struct_fields__
        )
        return f"Config({parts})"

    __str__ = __repr__

    @property
    def journal_on_server(self) -> bool:
        """Whether ``journal`` is a database server's URL (PostgreSQL), not a file."""
        return self.journal.startswith(("postgresql://", "postgres://"))

    @property
    def journal_shown(self) -> str:
        """``journal`` as messages and logs show it: a URL's password masked."""
        return without_password(self.journal)

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file; any problem becomes one :class:`ConfigError` naming the file and key."""
        file = Path(path)
        try:
            text = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
        try:
            config = msgspec.toml.decode(decode_text(text, str(file)), type=cls)  # as Notepad saves it
        except UnreadableFile as exc:
            raise ConfigError(str(exc)) from None
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{file}: {_readable(exc)}") from None
        except (msgspec.DecodeError, UnicodeError) as exc:  # msgspec before 0.19: UnicodeDecodeError
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        except RecursionError:  # the TOML parser recurses once per level of [[[...]]] or {a={...}}
            raise ConfigError(f"{file}: not valid TOML (arrays or tables nested too deeply)") from None
        if config.journal_on_server and config.journal_shown != config.journal:
            raise ConfigError(
                f"{file}: journal: the URL carries a password ({config.journal_shown}), and ybplug.toml never "
                f"holds one: remove it and set {JOURNAL_PASSWORD_ENV} (or libpq's PGPASSWORD, ~/.pgpass) instead"
            )
        base = file.resolve().parent
        journal = Path(config.journal)
        if not journal.is_absolute() and not config.journal_on_server:
            config.journal = str(base / journal)
        if config.log_file is not None and not Path(config.log_file).is_absolute():
            config.log_file = str(base / config.log_file)
        if config.dotnet is not None:
            config.dotnet = config.dotnet.resolve(base)
        if config.voucher is not None and config.voucher.backend == "dotnet" and not Path(config.voucher.library).is_absolute():
            config.voucher.library = str(base / config.voucher.library)  # an assembly path, not a loader name
        return config


#: Where the journal's database password comes from (or libpq's ``PGPASSWORD`` and ``~/.pgpass``):
#: never from ybplug.toml.  A :class:`Config` a HIS builds in Python may carry one in the URL.
JOURNAL_PASSWORD_ENV = "YBPLUG_JOURNAL_PASSWORD"

_KEYWORDS = re.compile(
    r"(?:^|\s)(?:host|hostaddr|port|dbname|user|password|passfile|sslmode|options|service|target_session_attrs)\s*=",
    re.IGNORECASE,
)

#: What a ``journal`` written as libpq's ``key=value`` string is told (never echoing it: it may hold a password).
KEYWORDS_RULE = (
    "journal: a libpq connection string (host=... dbname=...) is not taken, it would be read as a SQLite file's "
    "name: write the database as a URL, journal = \"postgresql://user@host/dbname\" (the schema as "
    f"?options=-csearch_path%3Dybplug), its password in {JOURNAL_PASSWORD_ENV}"
)


def looks_like_keywords(journal: str) -> bool:
    """Whether ``journal`` is libpq's ``host=... dbname=...`` form rather than a path."""
    return bool(_KEYWORDS.search(journal))


def _is_http_url(url: str) -> bool:
    """Whether ``url`` is an http(s) address aiohttp can reach (a scheme and a host)."""
    try:
        parsed = urllib.parse.urlsplit(url)
        return parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:  # "http://[::1" and the like
        return False


def without_password(url: str) -> str:
    """A URL (the journal's, the centre's) without its password (``user:***@``, ``password=***``);
    a path unchanged."""
    url = re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
    return re.sub(r"(password=)[^&\s]*", r"\1***", url)


def _readable(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    rule, _, where = text.partition(" - at `$.")
    if where:
        return f"{where.rstrip('`')}: {rule}"
    if text.startswith("Object contains unknown field"):
        return text.replace("Object contains unknown field", "unknown key")
    return text


_DAILY = re.compile(r"^daily at ([01]\d|2[0-3]):([0-5]\d)$")


def upload_time(upload: str) -> tuple[int, int] | None:
    """``daily at 02:00`` -> ``(2, 0)``; None for anything else."""
    match = _DAILY.match(upload.strip())
    return (int(match.group(1)), int(match.group(2))) if match else None
