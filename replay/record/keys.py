"""Key pairs drawn from a call's seeded stream, so that a replayed call makes the key its recording made.

``cryptography`` makes RSA, elliptic-curve and Ed25519 keys with OpenSSL's own
generator, which seeding cannot reach: a KMS asymmetric key, an EC2 key pair or
the key moto signs SNS notifications with came out different on every replay,
and so did everything made with it.  :func:`hook_key_generation` replaces
``rsa.generate_private_key``, ``ec.generate_private_key`` and
``Ed25519PrivateKey.generate`` with versions that, inside a seeded call, build
the key from numbers drawn from that call's stream (``draw`` returns it, or
``None`` outside a seeded call, where OpenSSL makes the key as before):

* RSA: two primes of half the size each (top two bits set, so the modulus has
  the full size; ``p - 1`` and ``q - 1`` coprime with the public exponent),
  searched upwards from a random odd start through a sieve of the primes below
  2**16 and tested with Miller-Rabin (bases from the stream; rounds as FIPS
  186-4 table C.3 asks for random candidates of that size), and the CRT
  numbers from them (``RSAPrivateNumbers``).  About 0.3 s for a 2048-bit key
  here, some seconds for 4096 (OpenSSL: about 0.1 s and 1 s);
* elliptic curves (NIST P-256/384/521, secp256k1): a private value below the
  curve's order (``ec.derive_private_key``); another curve falls back to OpenSSL;
* Ed25519: 32 bytes from the stream (``Ed25519PrivateKey.from_private_bytes``).

The keys are as strong as the seeded stream (Python's Mersenne Twister, seeded
with the call's 63-bit seed): fine for an emulator, never for real secrets.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

__all__ = ["hook_key_generation", "rsa_key"]

_HOOKED = "_replay_seeded"
_SIEVE_LIMIT = 1 << 16
_WINDOW = 4096  # odd candidates sieved at a time


def _small_primes(limit: int) -> list[int]:
    composite = bytearray(limit)
    found = []
    for number in range(3, limit, 2):
        if not composite[number]:
            found.append(number)
            composite[number * number :: 2 * number] = b"\x01" * len(range(number * number, limit, 2 * number))
    return found


_SMALL_PRIMES = _small_primes(_SIEVE_LIMIT)
_CURVE_ORDERS = {
    "secp256r1": 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    "secp384r1": int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16
    ),
    "secp521r1": int(
        "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "A51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
    "secp256k1": 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
}


def _rounds(bits: int) -> int:
    """Miller-Rabin rounds for a random candidate of ``bits`` bits (FIPS 186-4, table C.3; error < 2**-100)."""
    return 4 if bits >= 1024 else 7 if bits >= 512 else 40


def _probably_prime(candidate: int, rng: random.Random) -> bool:
    odd, twos = candidate - 1, 0
    while odd % 2 == 0:
        odd //= 2
        twos += 1
    for _ in range(_rounds(candidate.bit_length())):
        witness = pow(rng.randrange(2, candidate - 1), odd, candidate)
        if witness in (1, candidate - 1):
            continue
        for _ in range(twos - 1):
            witness = pow(witness, 2, candidate)
            if witness == candidate - 1:
                break
        else:
            return False
    return True


def _prime(bits: int, exponent: int, rng: random.Random) -> int:
    """A prime of ``bits`` bits (top two set) with ``p - 1`` coprime with ``exponent``."""
    while True:
        start = rng.getrandbits(bits) | (0b11 << (bits - 2)) | 1
        sieve = bytearray(_WINDOW)  # sieve[k]: start + 2k has a small factor
        for small in _SMALL_PRIMES:
            first = (-start * pow(2, -1, small)) % small  # the k with start + 2k divisible by small
            sieve[first::small] = b"\x01" * len(range(first, _WINDOW, small))
        for offset in range(_WINDOW):
            candidate = start + 2 * offset
            if sieve[offset] or candidate.bit_length() != bits or candidate % exponent == 1:
                continue
            if _probably_prime(candidate, rng):
                return candidate


def rsa_key(public_exponent: int, key_size: int, rng: random.Random) -> Any:
    """An RSA private key of ``key_size`` bits whose primes come from ``rng``."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    while True:
        p = _prime(key_size - key_size // 2, public_exponent, rng)
        q = _prime(key_size // 2, public_exponent, rng)
        if p != q and (p * q).bit_length() == key_size:
            break
    if p < q:
        p, q = q, p
    lam = (p - 1) * (q - 1) // math.gcd(p - 1, q - 1)
    d = pow(public_exponent, -1, lam)
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, d % (p - 1), d % (q - 1), pow(q, -1, p), rsa.RSAPublicNumbers(public_exponent, p * q)
    )
    return numbers.private_key()


def hook_key_generation(draw: Callable[[], random.Random | None]) -> None:
    """Make ``cryptography``'s key generation draw from ``draw()`` when it returns a stream (idempotent)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if not getattr(rsa.generate_private_key, _HOOKED, False):
        make_rsa = rsa.generate_private_key

        def generate_rsa(public_exponent: int, key_size: int, backend: Any = None) -> Any:
            rng = draw()
            if rng is None:
                return make_rsa(public_exponent, key_size)
            return rsa_key(public_exponent, key_size, rng)

        setattr(generate_rsa, _HOOKED, True)
        rsa.generate_private_key = generate_rsa

    if not getattr(ec.generate_private_key, _HOOKED, False):
        make_ec = ec.generate_private_key

        def generate_ec(curve: Any, backend: Any = None) -> Any:
            rng = draw()
            order = _CURVE_ORDERS.get(getattr(curve, "name", ""))
            if rng is None or order is None:
                return make_ec(curve)
            return ec.derive_private_key(rng.randrange(1, order), curve)

        setattr(generate_ec, _HOOKED, True)
        ec.generate_private_key = generate_ec

    edwards = ed25519.Ed25519PrivateKey
    if not getattr(edwards.generate, _HOOKED, False):
        make_ed = edwards.generate

        def generate_ed25519(cls: Any) -> Any:
            rng = draw()
            if rng is None:
                return make_ed()
            return edwards.from_private_bytes(rng.randbytes(32))

        setattr(generate_ed25519, _HOOKED, True)
        edwards.generate = classmethod(generate_ed25519)  # type: ignore[method-assign, assignment]
