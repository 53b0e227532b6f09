"""Sealed envelopes for state files (stream checkpoints, service state).

A state file that is restored after a crash must either give back exactly
the state that was written or fail loudly: a flipped bit in a stored
notional that restores "successfully" raises a phantom alert, or hides one.
msgpack alone does not protect against that (most flips decode into another
valid value), so every state file is wrapped in an envelope::

    ["surv-sealed", kind, format, sha256(payload), payload]

encoded as one msgpack array (a msgspec tagged, array-like Struct):

- the tag ``"surv-sealed"`` says "this is an envelope" (anything else,
  including an older unsealed file, fails to decode as one);
- ``kind`` names what the payload is (``"surv_kernel.stream"``), so one kind
  of state is never restored as another;
- ``format`` is the payload's format version, checked for equality (a
  reader never guesses at a format it does not know);
- ``sha256`` is the SHA-256 of the payload bytes, checked before the payload
  is decoded at all.

So a change anywhere is an error: in the payload it breaks the digest; in the
digest it breaks the comparison; in the tag, kind or format it breaks their
checks; in the msgpack framing (array or byte-string lengths) decoding fails,
and msgspec refuses trailing bytes. Every such failure is a
:class:`SealError` (a :class:`~surv_kernel.errors.DataError`: exit 5 in the
CLI), never a different state.
"""

from __future__ import annotations

import hashlib

import msgspec

from .errors import DataError

__all__ = ["SealError", "is_sealed", "seal", "unseal"]

TAG = "surv-sealed"


class SealError(DataError):
    """A sealed state file is corrupt, of another kind, or of another format."""


class _Envelope(msgspec.Struct, frozen=True, array_like=True, tag=TAG):
    kind: str
    format: int
    sha256: bytes
    payload: bytes


_decoder = msgspec.msgpack.Decoder(_Envelope)


def seal(kind: str, format: int, payload: bytes) -> bytes:
    """``payload`` in an envelope naming its ``kind`` and ``format``, with its SHA-256."""
    return msgspec.msgpack.encode(
        _Envelope(kind, int(format), hashlib.sha256(payload).digest(), bytes(payload))
    )


def is_sealed(data: bytes) -> bool:
    """Whether ``data`` decodes as an envelope (of any kind, digest unchecked)."""
    try:
        _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True


def unseal(data: bytes | bytearray | memoryview, kind: str, format: int, what: str) -> bytes:
    """The payload of an envelope of ``kind`` and ``format``, its digest verified.

    ``what`` names the file in the messages (``"stream checkpoint"``).
    """
    try:
        env = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SealError(
            f"{what} is not a sealed surv_kernel state file or is damaged: {exc}"
        ) from None
    if env.kind != kind:
        raise SealError(f"{what}: the file holds a {env.kind!r} state, not a {kind!r} one")
    if env.format != format:
        raise SealError(
            f"{what}: format {env.format}; this version of surv_kernel reads format {format} "
            "(restore it with the release that wrote it, or rebuild the state by replaying "
            "the day's trades)"
        )
    digest = hashlib.sha256(env.payload).digest()
    if digest != env.sha256:
        raise SealError(
            f"{what} is damaged: the SHA-256 of its payload is {digest.hex()[:16]}..., "
            f"the envelope says {env.sha256.hex()[:16]}... (a flipped bit or a torn write); "
            "use an earlier checkpoint or rebuild the state by replaying the day's trades"
        )
    return env.payload
