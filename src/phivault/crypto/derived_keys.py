"""Keys derived from the index root: the blind index's, the audit pseudonyms', and the
audit checkpoint signing seed.

The index root (key id ``index``) is a key of its own, apart from every data key, so that
shredding a patient changes neither how other patients are indexed nor how the audit log
names them. Each derived key is HKDF-SHA256 of the root under its own `info`: two uses
never share one, or their keys would be equal. Derived keys are cached in the ring and
dropped with its other open keys (`KeyRing.forget_cached`).

`DerivedKeys` holds these for `KeyRing` (crypto/keyring.py), which it is mixed into.
"""

from __future__ import annotations

import threading

from phivault.crypto import primitives
from phivault.crypto.keystate import INDEX_KEY_ID

__all__ = ["DerivedKeys"]

_BLIND_INDEX_INFO = b"phivault/blind-index/v1"
_AUDIT_PSEUDONYM_INFO = b"phivault/audit-pseudonym/v1"
_AUDIT_SIGNING_INFO = b"phivault/audit-signing/v1"


class DerivedKeys:
    """The key ring's derived keys (mixed into `KeyRing`, whose state they use)."""

    _lock: threading.RLock
    _derived: dict[bytes, bytes]

    def _key(
        self, key_id: str, generation: int, create: bool, within: object | None = None
    ) -> bytes:
        raise NotImplementedError  # KeyRing's

    def blind_index_key(self) -> bytes:
        """Key of the blind indexes of identifying search values (see crypto.blind)."""
        return self._derive(_BLIND_INDEX_INFO)

    def audit_pseudonym_key(self) -> bytes:
        """Key of the keyed pseudonyms that name patients in the audit log."""
        return self._derive(_AUDIT_PSEUDONYM_INFO)

    def audit_signing_seed(self) -> bytes:
        """Ed25519 seed of the audit checkpoint signing key: made with the index root at
        init, so it is protected by the KEK like every other key."""
        return self._derive(_AUDIT_SIGNING_INFO)

    def _derive(self, info: bytes) -> bytes:
        with self._lock:
            derived = self._derived.get(info)
        if derived is None:
            root = self._key(INDEX_KEY_ID, 1, create=True)  # I/O outside the lock
            derived = primitives.hkdf_sha256(root, info)
            with self._lock:
                derived = self._derived.setdefault(info, derived)
        return derived
