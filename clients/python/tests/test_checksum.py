"""`agent_checksum` gives exactly what `mandate agent checksum` prints."""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import mandate_bin
from mandate import ChecksumError, agent_checksum, agent_checksum_files, canonical_json

# Raw JSON texts, so the CLI reads exactly what Python parses.
CASES: list[tuple[str, str, str]] = [
    ("You fix bugs.", '[{"name":"git","args":{"b":1,"a":2}}]', '{"model":"m-1","temperature":0.0}'),
    # RFC 8785's sorting example: keys in UTF-16 code-unit order, not code points.
    (
        "sort",
        '{"\\u20ac":"Euro Sign","\\r":"Carriage Return","\\ufb33":"Hebrew Letter Dalet With Dagesh",'
        '"1":"One","\\ud83d\\ude00":"Emoji: Grinning Face","\\u0080":"Control","\\u00f6":"Latin Small Letter O With Diaeresis"}',
        "{}",
    ),
    # Numbers in ECMAScript's forms; integers are doubles too.
    (
        "numbers",
        "[0, -0, -0.0, 1, 1.0, 1e21, 1e20, 123456789012345680000, 1e-6, 1e-7, 0.000001234, 5e-324,"
        " 1.7976931348623157e308, -1.5, 0.1, 100, 9007199254740993, 18446744073709551615,"
        " 18446744073709551616, -9223372036854775808, -9223372036854775809, 12345678901234567890,"
        " 333333333.33333329, 1E3, 2.5e+3, 4.35, 0.3, 1e+16, 123e-20]",
        '{"temperature": 0.7, "top_p": 1, "max_tokens": 4096}',
    ),
    # Escapes: only the short forms and \u00XX for other control characters.
    (
        'quotes " and \\ backslash\r\n\ttab \u0007 bell \u007f del \u2028 ls',
        '[{"description": "line\\nbreak \\"quoted\\" \\/ solidus \\u001f unit \\u00e9 \\ud83d\\ude00"}]',
        '{"nested": {"z": [], "a": {}, "m": [null, true, false, {"b": [1, {"d": 4, "c": 3}]}]}}',
    ),
    # Byte for byte: CRLF, a BOM-less trailing newline and non-ASCII text stay.
    ("Du reparierst Fehler.\r\nÜberall.\n", "[]", "null"),
    # A duplicate key: the last one counts, as in serde_json.
    ("dup", '{"a": 1, "a": 2}', '"just a string"'),
]


def cli_checksum(tmp: Path, prompt: str, tools: str, config: str) -> str:
    paths = tmp / "prompt.txt", tmp / "tools.json", tmp / "config.json"
    paths[0].write_bytes(prompt.encode("utf-8"))
    paths[1].write_text(tools, encoding="utf-8")
    paths[2].write_text(config, encoding="utf-8")
    out = subprocess.run(
        [str(mandate_bin()), "agent", "checksum", "--prompt", str(paths[0]), "--tools", str(paths[1]), "--config", str(paths[2])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("prompt,tools,config", CASES)
def test_equals_the_cli(tmp_path: Path, prompt: str, tools: str, config: str) -> None:
    expected = cli_checksum(tmp_path, prompt, tools, config)
    assert expected.startswith("sha256:") and len(expected) == 71
    assert agent_checksum(prompt, json.loads(tools), json.loads(config)) == expected
    assert agent_checksum_files(tmp_path / "prompt.txt", tmp_path / "tools.json", tmp_path / "config.json") == expected


def test_the_documented_canonical_form() -> None:
    tools = [{"name": "git", "args": {"b": 1, "a": 2}}]
    config = {"model": "m-1", "temperature": 0.0}
    assert canonical_json({"config": config, "prompt": "You fix bugs.", "tools": tools}) == (
        b'{"config":{"model":"m-1","temperature":0},"prompt":"You fix bugs.","tools":[{"args":{"a":2,"b":1},"name":"git"}]}'
    )


def test_content_changes_the_checksum_and_key_order_does_not() -> None:
    a = agent_checksum("p", [{"a": 1, "b": 2}], {})
    assert a == agent_checksum("p", [{"b": 2, "a": 1}], {})
    assert a != agent_checksum("p ", [{"a": 1, "b": 2}], {})
    assert a != agent_checksum("p", [{"a": 1, "b": 3}], {})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, {1: "int key"}, b"bytes", object(), 10**400])
def test_values_without_a_canonical_form_are_refused(bad: Any) -> None:
    with pytest.raises(ChecksumError):
        agent_checksum("p", [bad], {})


def test_files_the_cli_refuses_are_refused_too(tmp_path: Path) -> None:
    for text in ("NaN", "[1e400]", "{bad json"):
        (tmp_path / "prompt.txt").write_text("p")
        (tmp_path / "tools.json").write_text(text)
        (tmp_path / "config.json").write_text("{}")
        out = subprocess.run(
            [str(mandate_bin()), "agent", "checksum", "--prompt", str(tmp_path / "prompt.txt"),
             "--tools", str(tmp_path / "tools.json"), "--config", str(tmp_path / "config.json")],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode != 0, f"the CLI accepted {text!r}"
        with pytest.raises(ChecksumError):
            agent_checksum_files(tmp_path / "prompt.txt", tmp_path / "tools.json", tmp_path / "config.json")


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:  # any finite double, by its bits
        while True:
            value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if math.isfinite(value):
                return value
    if kind == 2:
        return rng.choice([rng.randint(-(2**70), 2**70), rng.randint(-1000, 1000), rng.random() * 10 ** rng.randint(-30, 30)])
    if kind in (3, 4):
        alphabet = "aZ09 \"\\/\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\u20ac\ufb33\U0001f600\U00010000"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = ["", "a", "A", "b", "aa", "\u00e9", "\u20ac", "\U0001f600", "\ufb33", "1", "\r", "\x7f"]
    return {rng.choice(keys) + rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randrange(6))}


@pytest.mark.parametrize("seed", range(12))
def test_random_documents_equal_the_cli(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    tools, config = _random_value(rng), _random_value(rng)
    prompt = "".join(rng.choice("ab \n\r\t\u00e9\U0001f600") for _ in range(20))
    # json.dumps writes each double so that it reads back as the same one.
    expected = cli_checksum(tmp_path, prompt, json.dumps(tools), json.dumps(config, ensure_ascii=False))
    assert agent_checksum(prompt, tools, config) == expected
