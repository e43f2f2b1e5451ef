"""Hostile bundle streams raise only BundleError, or UsageError for a file that is no stream."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rise_dtn.carriers.stream.bundle_stream import MAGIC, read_stream
from rise_dtn.core.encoding import canonical
from rise_dtn.core.errors import BundleError, UsageError
from rise_dtn.node.home import Home
from tests.properties import examples, untrusted

HOME = Home.create(Path(tempfile.mkdtemp(prefix="rise-fuzz-")) / "node", name="fuzz")


def attempt(data: bytes) -> None:
    errors = (BundleError,) if data.startswith(MAGIC) else (UsageError,)
    untrusted(lambda: read_stream(HOME, io.BytesIO(data), now=0), *errors)


@settings(max_examples=examples(200))
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    attempt(data)
    attempt(MAGIC + data)


@settings(max_examples=examples(200))
@given(st.binary(max_size=20), st.binary(max_size=20), st.integers(-5, 1 << 60), st.binary())
def test_hostile_records(sender: bytes, recipient: bytes, size: int, body: bytes) -> None:
    record = canonical([sender, recipient, size]) if size >= 0 else canonical([sender])
    attempt(MAGIC + record + body)
    attempt(MAGIC + record + body + canonical([]))
