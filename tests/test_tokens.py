"""The key format: shape, checksum, hashing."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.tokens import (
    BASE62,
    SecretFormat,
    generate_access_key,
    hash_secret,
    is_access_key,
)


def test_shapes() -> None:
    secret = SecretFormat().generate("live")
    assert re.fullmatch(r"gws_live_[0-9A-Za-z]{38}", secret) and len(secret) == 47
    assert SecretFormat("acme").generate("test").startswith("acme_test_")
    access = generate_access_key()
    assert re.fullmatch(r"GWK[A-Z0-9]{17}", access) and is_access_key(access)
    assert len(hash_secret(secret)) == 32


@pytest.mark.parametrize("mode", ["live", "test"])
def test_round_trip(mode: str) -> None:
    fmt = SecretFormat()
    assert fmt.mode_of(fmt.generate(mode)) == mode


@given(st.data())
def test_any_one_character_change_is_rejected(data: st.DataObject) -> None:
    fmt = SecretFormat()
    secret = fmt.generate(data.draw(st.sampled_from(["live", "test"])))
    index = data.draw(st.integers(0, len(secret) - 1))
    replacement = data.draw(st.sampled_from(BASE62 + "_-.~ "))
    changed = secret[:index] + replacement + secret[index + 1 :]
    if changed != secret:
        assert fmt.mode_of(changed) is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        " ",
        "gws_live_",
        "gws_prod_" + "A" * 38,
        "GWS_LIVE_" + "A" * 38,
        "x" * 10_000,
        "gws_live_" + "é" * 38,
    ],
)
def test_malformed(token: str) -> None:
    assert SecretFormat().mode_of(token) is None


def test_other_prefix_is_not_ours() -> None:
    assert SecretFormat("gws").mode_of(SecretFormat("acme").generate()) is None
    with pytest.raises(ValueError, match="lowercase"):
        SecretFormat("Bad_Prefix")
