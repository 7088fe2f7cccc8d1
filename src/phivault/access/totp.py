"""One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), and the otpauth:// URI that
authenticator apps read (usually shown as a QR code).

Pure functions over the standard library's HMAC: no clock and no storage here. Replay
protection is the caller's: `verify` returns the time step that matched, and the caller
refuses a step at or below the last one it accepted.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

DEFAULT_DIGITS = 6
DEFAULT_PERIOD = 30
DEFAULT_ALGORITHM = "SHA1"  # what every authenticator app supports
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation for HMAC-SHA1
_HASHES = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def b32(secret: bytes) -> str:
    """The secret as authenticator apps want it: base32 without padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def hotp(secret: bytes, counter: int, digits: int = DEFAULT_DIGITS, algorithm: str = "SHA1") -> str:
    digest = hmac.digest(secret, struct.pack(">Q", counter), _HASHES[algorithm])
    offset = digest[-1] & 0x0F  # dynamic truncation (RFC 4226 section 5.3)
    code = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10**digits).zfill(digits)


def time_step(unix_time: float, period: int = DEFAULT_PERIOD) -> int:
    return int(unix_time // period)


def totp(
    secret: bytes,
    unix_time: float,
    *,
    digits: int = DEFAULT_DIGITS,
    period: int = DEFAULT_PERIOD,
    algorithm: str = DEFAULT_ALGORITHM,
) -> str:
    return hotp(secret, time_step(unix_time, period), digits, algorithm)


def verify(
    secret: bytes,
    code: str,
    unix_time: float,
    *,
    window: int = 1,
    digits: int = DEFAULT_DIGITS,
    period: int = DEFAULT_PERIOD,
    algorithm: str = DEFAULT_ALGORITHM,
) -> int | None:
    """The time step `code` is valid for (within +-`window` steps of clock drift), or None."""
    code = code.strip().replace(" ", "")
    if len(code) != digits or not code.isdigit():
        return None
    now = time_step(unix_time, period)
    found: int | None = None
    for step in range(now - window, now + window + 1):
        # Every candidate is compared (no early exit) and in constant time.
        if hmac.compare_digest(hotp(secret, step, digits, algorithm), code) and found is None:
            found = step
    return found


def provisioning_uri(
    secret: bytes,
    account: str,
    issuer: str,
    *,
    digits: int = DEFAULT_DIGITS,
    period: int = DEFAULT_PERIOD,
    algorithm: str = DEFAULT_ALGORITHM,
) -> str:
    """`otpauth://totp/Issuer:account?secret=...&issuer=...` (Google Authenticator's
    Key Uri Format, which the other apps follow)."""
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode(
        {
            "secret": b32(secret),
            "issuer": issuer,
            "algorithm": algorithm,
            "digits": digits,
            "period": period,
        }
    )
    return f"otpauth://totp/{label}?{query}"
