"""Hypothesis profiles for every property test, the tally `./dev fuzz` prints, and
the helpers every decoder property shares.

Two profiles, registered here and loaded by tests/conftest.py:

- `ci` (the default): a fixed seed (derandomize, no example database), so a
  run on any machine tries the same inputs and CI is never flaky.
- `fuzz` (`./dev fuzz`, or `pytest --hypothesis-profile=fuzz`): random
  seeds, FUZZ_SCALE (100, or $RISE_FUZZ_SCALE) times the examples, and the
  example database in .hypothesis/ so a failure found once is tried first
  by the next run.

A property that needs more or fewer examples than the profile's default
asks for `examples(count)`, its count in CI, which the fuzz profile scales:
a plain `max_examples=count` would pin it in both. Nothing here may decide
whether a test passes; it only counts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TypeVar

from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

CI_PROFILE = "ci"
FUZZ_PROFILE = "fuzz"
# Hypothesis's own default; every `examples(count)` is relative to it.
CI_EXAMPLES = 100
FUZZ_SCALE = int(os.environ.get("RISE_FUZZ_SCALE", "100"))

settings.register_profile(
    CI_PROFILE,
    max_examples=CI_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,  # a slow shared machine must not fail a test
)
settings.register_profile(
    FUZZ_PROFILE,
    max_examples=CI_EXAMPLES * max(FUZZ_SCALE, 1),
    derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/examples"),
    deadline=None,
    print_blob=True,  # a failure prints the @reproduce_failure line to replay it
)


def examples(count: int) -> int:
    """`count` examples in CI, scaled like every other count under the active profile."""
    profile = settings.default
    assert profile is not None  # conftest.py loads one before any test module is imported
    return max(1, count * profile.max_examples // CI_EXAMPLES)


@dataclasses.dataclass(slots=True)
class Tally:
    """What one pytest process tried: examples of every property, inputs to decoders."""

    properties: int = 0
    examples: int = 0
    decoder_inputs: int = 0

    def add(self, counts: dict[str, int]) -> None:
        """Add another process's tally, as `dataclasses.asdict` gives it."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + counts.get(field.name, 0))


TALLY = Tally()

Result = TypeVar("Result")


def untrusted(decode: Callable[[], Result], *errors: type[Exception]) -> Result | None:
    """Decode one untrusted input: the documented `errors` give None, anything else fails."""
    TALLY.decoder_inputs += 1
    try:
        return decode()
    except errors:
        return None


@st.composite
def mutations(draw: st.DrawFn, valid: bytes) -> bytes:
    """`valid` with one to four bytes flipped, set, inserted or deleted, or cut or extended."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        operation = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if operation == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif operation == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif operation == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=9))
        elif operation == "delete" and data:
            del data[position : position + draw(st.integers(1, 9))]
        elif operation == "truncate":
            del data[position:]
        else:
            data += draw(st.binary(min_size=1, max_size=9))
    assume(bytes(data) != valid)  # a flip undone or a byte set to itself
    return bytes(data)
