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

import re
from pathlib import Path
from typing import Literal

import msgspec

from ybplug.dotnet import DotnetSection
from ybplug.errors import Error
from ybplug.system import default_journal
from ybplug.wire import WireConfig


class ConfigError(Error):
    """A configuration a person wrote is wrong; the message says where and how."""


class WireSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: str | None = None
    usr: str | None = None
    pwd: str | None = None
    sign_in: bool = False
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_connections: int = 64


class VoucherSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``[voucher]``: the EcTrans library (see :class:`ybplug.binding.VoucherConfig`) and the
    defaults of every QR request made here (``org_id``, ``district_no``)."""

    library: str
    convention: Literal["auto", "stdcall", "cdecl"] = "auto"
    backend: Literal["thread", "process", "dotnet"] = "process"
    buffer_size: int = 65536
    timeout: float = 15.0
    scan_timeout: float = 120.0
    python: str | None = None
    workdir: str | None = None
    org_id: str | None = None
    district_no: str | None = None
    dotnet_type: str | None = None
    """backend = "dotnet": the class holding EcTrans (``library`` is then the .NET assembly)."""
    dotnet_method: str = "EcTrans"

    def __post_init__(self) -> None:
        if self.backend == "dotnet" and not self.dotnet_type:
            raise ValueError('backend = "dotnet" needs dotnet_type, the .NET class holding EcTrans')


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Everything the host needs; defaults are the embedded sandbox setup."""

    journal: str = msgspec.field(default_factory=default_journal)
    """Where the journal lives; left out, the platform's place for a service's data
    (``%PROGRAMDATA%\\ybplug`` / ``/var/lib/ybplug``), never the current directory."""
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
    plugins: list[str] = msgspec.field(default_factory=list)
    wire: WireSection = msgspec.field(default_factory=WireSection)
    voucher: VoucherSection | None = None
    dotnet: DotnetSection | None = None

    def __post_init__(self) -> None:
        if upload_time(self.upload) is None and self.upload != "immediate":
            raise ValueError(f"upload must be 'immediate' or 'daily at HH:MM', got {self.upload!r}")
        if self.log_max_bytes < 0 or self.log_backups < 0:
            raise ValueError("log_max_bytes and log_backups must not be negative")
        for name in ("realname_interval", "hook_timeout", "lease", "realname_batch", "realname_concurrency",
                     "upload_batch", "upload_concurrency", "delivery_attempts"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.realname_batch > 99999:
            raise ValueError("realname_batch must be at most 99999 (rownum is number(5))")

    def wire_config(self) -> WireConfig:
        """The wire settings, with ``YBPLUG_URL``/``YBPLUG_USR``/``YBPLUG_PWD`` filling what the file leaves out."""
        fields = msgspec.structs.asdict(self.wire)
        return WireConfig.from_env(**fields)

    @classmethod
    def load(cls, path: str | Path) -> Config:
        """Read a TOML file; any problem becomes one :class:`ConfigError` naming the file and key."""
        file = Path(path)
        try:
            text = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read ({exc.strerror})") from None
        try:
            config = msgspec.toml.decode(text, type=cls)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{file}: {_readable(exc)}") from None
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML ({exc})") from None
        base = file.resolve().parent
        journal = Path(config.journal)
        if not journal.is_absolute():
            config.journal = str(base / journal)
        if config.log_file is not None and not Path(config.log_file).is_absolute():
            config.log_file = str(base / config.log_file)
        if config.dotnet is not None:
            config.dotnet = config.dotnet.resolve(base)
        if config.voucher is not None and config.voucher.backend == "dotnet" and not Path(config.voucher.library).is_absolute():
            config.voucher.library = str(base / config.voucher.library)  # an assembly path, not a loader name
        return config


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
