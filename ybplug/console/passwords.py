"""Operators' passwords, kept in ``ybplug.toml`` only as scrypt hashes.

Format: ``scrypt$N$r$p$salt$hash`` (salt and hash in unpadded URL-safe base64), so the cost can be
raised later without breaking the hashes already written.  Standard library only (hashlib.scrypt):
nothing to install, the same on Windows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

#: scrypt's cost: about 16 MiB and 50 ms a login on a hospital server; slow for a guesser.
N, R, P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str) -> str:
    """A new ``scrypt$...`` hash of ``password`` with a random salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${N}${R}${P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    """Whether ``text`` has the shape of a hash this module writes (checked when the config loads)."""
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(p.isdigit() for p in parts[1:4]):
        return False
    try:
        return len(_unb64(parts[4])) >= 8 and len(_unb64(parts[5])) >= 16
    except ValueError:
        return False


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``; compared in constant time."""
    if not is_password_hash(stored):
        return False
    _, n, r, p, salt, expected = stored.split("$")
    try:
        digest = hashlib.scrypt(
            password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), maxmem=_MAXMEM, dklen=len(_unb64(expected))
        )
    except ValueError:  # a cost this machine refuses (memory): a wrong password, never a crash
        return False
    return hmac.compare_digest(digest, _unb64(expected))


#: Hashed once, checked against when the name is unknown, so a wrong name costs as long as a
#: wrong password (the time does not tell which names exist).
_DUMMY: list[str] = []


def waste_time(password: str) -> None:
    """Do the work of one verification for nothing (an unknown operator name)."""
    if not _DUMMY:
        _DUMMY.append(hash_password("unused"))
    verify_password(password, _DUMMY[0])
