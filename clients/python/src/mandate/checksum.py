"""Agent integrity checksums in exactly Mandate's canonical form.

The form (`mandate::integrity::agent_checksum`, `mandate agent checksum`):
the JSON object `{"config": <model config>, "prompt": "<prompt>", "tools":
<tool manifest>}` serialised with the JSON Canonicalization Scheme (RFC 8785:
object keys sorted by UTF-16 code units, no whitespace, every number written
as an IEEE 754 double in ECMAScript's shortest form, minimal string escapes),
hashed with SHA-256 and written `sha256:` and 64 lowercase hex digits.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from .errors import ChecksumError

#: A value that can be canonicalised: what `json.loads` returns.
JsonValue = Union[None, bool, int, float, str, Sequence["JsonValue"], Mapping[str, "JsonValue"]]

CHECKSUM_PREFIX = "sha256:"

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def agent_checksum(prompt: str, tools: JsonValue, config: JsonValue) -> str:
    """The checksum an agent registers and proves (`agent_proof`).

    `prompt` is the system prompt text exactly as the agent uses it; `tools`
    and `config` are JSON values (dicts, lists, strings, numbers, booleans,
    None), as `json.load` returns them.
    """
    if not isinstance(prompt, str):
        raise ChecksumError(f"the prompt must be text (str), not {type(prompt).__name__}")
    document = {"config": config, "prompt": prompt, "tools": tools}
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    return f"{CHECKSUM_PREFIX}{digest}"


def agent_checksum_files(prompt: str | Path, tools: str | Path, config: str | Path) -> str:
    """The checksum of a prompt file (UTF-8, byte for byte) and two JSON files.

    The same inputs give the same answer as `mandate agent checksum
    --prompt P --tools T --config C`.
    """
    prompt_path = Path(prompt)
    try:
        text = prompt_path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ChecksumError(f"cannot read the prompt `{prompt_path}` as UTF-8: {e}") from e
    return agent_checksum(text, _load_json(Path(tools)), _load_json(Path(config)))


def canonical_json(value: JsonValue) -> bytes:
    """`value` serialised with RFC 8785 (JCS), as UTF-8 bytes."""
    parts: list[str] = []
    _write(value, parts)
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as e:
        raise ChecksumError(f"a string holds a lone surrogate, which JSON text cannot carry: {e}") from e


def _load_json(path: Path) -> JsonValue:
    def no_constant(name: str) -> float:
        raise ChecksumError(f"`{path}` is not JSON: `{name}` is not a JSON number")

    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ChecksumError(f"cannot read `{path}` as UTF-8: {e}") from e
    try:
        value: JsonValue = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as e:
        raise ChecksumError(f"`{path}` is not JSON: {e}") from e
    return value


def _write(value: JsonValue, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, (int, float)):
        out.append(_number(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, Mapping):
        keys = list(value.keys())
        for key in keys:
            if not isinstance(key, str):
                raise ChecksumError(f"object keys must be strings, not {type(key).__name__} `{key!r}`")
        out.append("{")
        for i, key in enumerate(sorted(keys, key=_utf16_order)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise ChecksumError(f"{type(value).__name__} is not a JSON value: `{value!r}`")


def _utf16_order(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly as the code units do.
    return key.encode("utf-16-be", "surrogatepass")


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        escaped = _ESCAPES.get(ch)
        if escaped is not None:
            out.append(escaped)
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number(value: int | float) -> str:
    """ECMAScript's Number.prototype.toString of `value` as a double."""
    try:
        number = float(value)
    except OverflowError as e:
        raise ChecksumError(f"the number {value} is outside the range of a double") from e
    if not math.isfinite(number):
        raise ChecksumError(f"{number} is not a JSON number (NaN and infinities are refused)")
    if number == 0:
        return "0"  # also for -0
    sign = "-" if number < 0 else ""
    # repr gives the shortest digits that read back as the same double.
    mantissa, _, exp_text = repr(abs(number)).partition("e")
    integer, _, fraction = mantissa.partition(".")
    digits = (integer + fraction).lstrip("0")
    # Position of the decimal point relative to the start of `digits`.
    point = len(integer.lstrip("0")) if integer.strip("0") else -(len(fraction) - len(fraction.lstrip("0")))
    point += int(exp_text) if exp_text else 0
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        body = digits + "0" * (point - k)
    elif 0 < point <= 21:
        body = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        body = "0." + "0" * (-point) + digits
    else:
        power = point - 1
        exponent = f"e{'+' if power >= 0 else '-'}{abs(power)}"
        body = (digits[0] + ("." + digits[1:] if k > 1 else "")) + exponent
    return sign + body
