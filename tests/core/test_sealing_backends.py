"""Chunks of a MiB go through OpenSSL's ChaCha20-Poly1305, small ones through libsodium's
(sealing.BULK_BYTES): the two must give the same bytes and refuse the same damage, or a
bundle sealed by one would not open with the other."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.bindings import (
    crypto_aead_chacha20poly1305_ietf_decrypt,
    crypto_aead_chacha20poly1305_ietf_encrypt,
)

from rise_dtn.core import sealing
from rise_dtn.core.errors import BundleError

KEY = bytes(range(32))
SIZES = [0, 1, sealing.BULK_BYTES - 1, sealing.BULK_BYTES, sealing.BULK_BYTES + 1, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("final", [False, True])
def test_both_backends_seal_the_same_bytes_and_open_each_other(size: int, final: bool) -> None:
    plaintext = bytes(index % 251 for index in range(size))
    aad = b"header" if size % 2 else b""
    sealed = sealing.seal_chunk(KEY, 7, plaintext, final=final, aad=aad)
    nonce = (7).to_bytes(11, "big") + (b"\x01" if final else b"\x00")
    assert sealed == crypto_aead_chacha20poly1305_ietf_encrypt(plaintext, aad or None, nonce, KEY)
    assert sealing.open_chunk(KEY, 7, sealed, final=final, aad=aad) == plaintext
    assert crypto_aead_chacha20poly1305_ietf_decrypt(sealed, aad or None, nonce, KEY) == plaintext


@given(
    size=st.sampled_from(SIZES[1:]),
    flip=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_both_backends_refuse_any_flipped_bit_with_the_one_error(
    size: int, flip: int, bit: int
) -> None:
    sealed = bytearray(sealing.seal_chunk(KEY, 0, b"\x5a" * size, final=True, aad=b"a"))
    sealed[flip % len(sealed)] ^= 1 << bit
    with pytest.raises(BundleError, match="chunk 0 fails authentication"):
        sealing.open_chunk(KEY, 0, bytes(sealed), final=True, aad=b"a")
