"""Hypothesis strategies the frame codec properties share: payloads heavy in the
bytes that need escaping, and ways to cut a byte stream into chunks."""

from __future__ import annotations

import itertools

from hypothesis import strategies as st

SPECIAL = [0xC0, 0xDB, 0xDC, 0xDD, 0x00]  # FEND, FESC, TFEND, TFESC and KISS's data command


def payloads(max_size: int = 600) -> st.SearchStrategy[bytes]:
    """Any bytes, and bytes made mostly of FEND/FESC, where escaping goes wrong."""
    special = st.lists(st.sampled_from(SPECIAL), max_size=max_size).map(bytes)
    return st.one_of(st.binary(max_size=max_size), special)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """`data` cut at random places, or one byte at a time (a slow serial read)."""
    if draw(st.booleans()):
        return [data[index : index + 1] for index in range(len(data))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    edges = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(edges)]
