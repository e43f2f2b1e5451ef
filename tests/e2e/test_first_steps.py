"""What a new user sees on a new node: every empty listing says so, and what comes next."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import make_node, run


def test_a_new_node_says_what_to_do_next(tmp_path: Path) -> None:
    home = tmp_path / "carol"
    created = run("rise", "init", "--name", "carol", home=home)
    assert created.stderr.decode().splitlines()[-1] == (
        "next: `rise card` prints your card; `rise peer add CARD` trusts a neighbour's card"
    )
    bob = make_node(tmp_path, "bob")
    run("rise", "peer", "add", "-", home=home, input=bob.card())
    said = {
        args: run("rise", *args, home=home)
        for args in (("queue",), ("queue", "--for", "bob"), ("status",), ("inbox",))
    }
    assert all(result.stdout == b"" for result in said.values())  # stdout stays data
    assert {args: result.stderr.decode() for args, result in said.items()} == {
        ("queue",): "nothing waits here\n",
        ("queue", "--for", "bob"): "nothing waits for or from bob\n",
        ("status",): "nothing sent from this node yet: `rise-send FILE NODE`\n",
        ("inbox",): "no messages\n",
    }
