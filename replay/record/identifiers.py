"""What a generated identifier looks like, so that only identifiers are ever mapped.

A replay may regenerate an id that the recording saw (an unseeded emulator, a
remote target): the id mapping then learns ``old -> new`` and rewrites later
requests.  Any other value that differs (a status word, an enum, a name, a
number, a boolean, an attribute value, a date) is state, and a difference in it
is a divergence.  So a change may be mapped only when *both* values have the
same identifier shape (:func:`id_shape`):

* ``uuid``: ``8-4-4-4-12`` hex digits, either case;
* ``<prefix>-hex<n>``: a lower-case prefix and ``n`` (8 to 40) hex digits,
  EC2's style (``i-0abc...``, ``vpc-...``, ``subnet-...``, ``sg-...``, ``eni-attach-...``);
* ``hex<n>``: 16 or more hex digits with at least one digit and one letter;
* ``token<n>``: 16 to 31 characters of the base64/base64url alphabet with at
  least one digit and one letter, or at least four changes of letter case
  (moto's random strings, IAM's ``AKIA``/``AROA`` ids, ...);
* ``token``: 32 or more characters of that alphabet, letters included
  (receipt handles, upload ids, long random tokens);
* ``short<n>``: 8 to 15 letters and digits, at least two of each, switching
  between them at least three times (``a1b2c3d4e5``; not ``table001``).

A token that reads like a name is not an identifier: when at least half of its
letters form pronounceable words of four or more letters (at least 15 % vowels,
no more than four consonants in a row: ``processing``, ``Queue``, ``orders``)
and its digits come in at most one group (``ProcessingQueue2024``,
``integration-test-bucket-7``).  Measured on random tokens of moto's
alphabets, this turns away about 2 % of those with digits and up to 13 % of
letters-only ones of 16 to 31 characters; such a token is then reported as a
divergence, never silently mapped.  And whatever its shape, a value under a key
that holds a name or a description (:func:`name_key`: ``TableName``, ``Name``,
``Key``, ``Description``, ``Value`` ...) is never an identifier.

Content digests look like tokens but are not generated: a different ETag or
MD5 means different content.  Values under keys that name a digest
(:func:`digest_key`: ETag, MD5, SHA, checksum, CRC, fingerprint ...) are never
identifiers.

Inside ARNs and URLs only the parts that differ need to be identifiers
(:func:`id_pairs` splits both at ``:``, ``/``, ``?``, ``&``, ``=`` and ``#``).
"""

from __future__ import annotations

import re

__all__ = ["digest_key", "id_pairs", "id_shape", "name_key"]

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_PREFIXED_HEX = re.compile(r"([a-z][a-z0-9]*(?:-[a-z][a-z0-9]*)*)-([0-9a-f]{8,40})")
_TOKEN = re.compile(r"[A-Za-z0-9+/_.~-]+=*")
_HEX = re.compile(r"[0-9a-f]+|[0-9A-F]+")
_SHORT = re.compile(r"[A-Za-z0-9]{8,15}")
_SEPARATORS = re.compile(r"([:/?&=#])")
_DIGEST_KEY = re.compile(r"etag|md5|sha\d*|checksum|digest|crc|fingerprint", re.IGNORECASE)
_NAME_KEY = re.compile(r"(name|key|description|value|alias|handler|prefix|path)$", re.IGNORECASE)
_WORD = re.compile(r"[A-Z]?[a-z]+")
_CONSONANTS = re.compile(r"[^aeiouy]+")
_VOWELS = frozenset("aeiouy")
_LONG = 32


def digest_key(key: str) -> bool:
    """Does ``key`` (a JSON key, XML element or header name) hold a content digest?"""
    return bool(_DIGEST_KEY.search(key))


def name_key(key: str) -> bool:
    """Does ``key`` (a JSON key, XML element or header name) hold a name a client chose, never an id?"""
    return bool(_NAME_KEY.search(key))


def _case_switches(value: str) -> int:
    switches = 0
    previous: bool | None = None
    for char in value:
        if char.isalpha():
            upper = char.isupper()
            if previous is not None and upper != previous:
                switches += 1
            previous = upper
    return switches


def _kind_switches(value: str) -> int:
    """How often ``value`` switches between letters and digits."""
    switches = 0
    previous: bool | None = None
    for char in value:
        digit = char.isdigit()
        if previous is not None and digit != previous:
            switches += 1
        previous = digit
    return switches


def _pronounceable(word: str) -> bool:
    """Could ``word`` (lower-case letters, four or more) be a word of a name rather than random letters?"""
    vowels = sum(char in _VOWELS for char in word)
    if vowels == len(word) or vowels * 100 < len(word) * 15:
        return False
    return max(len(run) for run in _CONSONANTS.findall(word)) <= 4


def _reads_like_a_name(value: str) -> bool:
    """Words make up half its letters and its digits come in at most one group."""
    if _kind_switches(value) > 2:
        return False
    letters = sum(char.isalpha() for char in value)
    words = sum(len(word) for word in _WORD.findall(value) if len(word) >= 4 and _pronounceable(word.lower()))
    return letters > 0 and words * 2 >= letters


def _token_shape(value: str) -> str | None:
    """The shape of a random token (no prefix, no separators), or ``None``."""
    if _HEX.fullmatch(value) and len(value) >= 16:
        has_digit = any(char.isdigit() for char in value)
        return f"hex{len(value)}" if has_digit and not value.isdigit() else None
    if len(value) >= 16 and _TOKEN.fullmatch(value):
        core = value.rstrip("=")
        letters = sum(char.isalpha() for char in core)
        if letters < 2 or _reads_like_a_name(core):
            return None
        if len(core) >= _LONG:
            return "token"
        digits = sum(char.isdigit() for char in core)
        if digits >= 1 or _case_switches(core) >= 4:
            return f"token{len(core)}"
        return None
    if _SHORT.fullmatch(value):
        digits = sum(char.isdigit() for char in value)
        if digits >= 2 and len(value) - digits >= 2 and _kind_switches(value) >= 3:
            return f"short{len(value)}"
    return None


def id_shape(value: str) -> str | None:
    """The identifier shape of ``value`` (see the module docstring), or ``None``: not an identifier."""
    if len(value) < 8 or len(value) > 4096:
        return None
    if _UUID.fullmatch(value):
        return "uuid"
    prefixed = _PREFIXED_HEX.fullmatch(value)
    if prefixed is not None:
        return f"{prefixed.group(1)}-hex{len(prefixed.group(2))}"
    return _token_shape(value)


def id_pairs(old: str, new: str) -> list[tuple[str, str]] | None:
    """The identifiers to map when ``old`` became ``new``, or ``None`` when the change is not one of ids.

    Both whole values of the same shape: ``[(old, new)]``.  Otherwise, for ARNs,
    URLs and other compound values: both must split into the same number of
    parts at the same separators, and every part that differs must be a pair of
    the same shape; the whole values and those parts are returned.
    """
    if old == new:
        return []
    shape = id_shape(old)
    if shape is not None and shape == id_shape(new):
        return [(old, new)]
    old_parts, new_parts = _SEPARATORS.split(old), _SEPARATORS.split(new)
    if len(old_parts) == 1 or len(old_parts) != len(new_parts):
        return None
    pairs: list[tuple[str, str]] = []
    for old_part, new_part in zip(old_parts, new_parts, strict=True):
        if old_part == new_part:
            continue
        part_shape = id_shape(old_part)
        if part_shape is None or part_shape != id_shape(new_part):
            return None
        pairs.append((old_part, new_part))
    return [(old, new), *pairs]
