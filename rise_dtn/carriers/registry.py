"""The installed carriers, found by entry point (group `rise_dtn.carriers`).

rise-dtn's own carriers are registered the same way as any other package's
(pyproject.toml), so a plugin is a package with one entry point naming an
object that implements carriers/base.Carrier. A plugin that fails to
import, or whose object is not a carrier, is skipped with a one-line reason
(`Registry.problems`), never a traceback: one broken plugin must not stop
a node from using the others.

Loading is lazy and only on demand: nothing here runs for `rise-send`, and
`rise carriers` imports each carrier's package but none of its heavy
modules (the objects import those inside `exchange`). Plugins are imported
the ordinary way, never exec()'d from files (STYLE.md, carriers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from rise_dtn.carriers.address import Address, parse, unknown_scheme
from rise_dtn.carriers.base import Carrier, missing_parts
from rise_dtn.core.errors import UsageError

GROUP = "rise_dtn.carriers"


@dataclasses.dataclass(frozen=True, slots=True)
class Installed:
    """One carrier found, and the distribution (package) that registered it."""

    carrier: Carrier
    source: str  # e.g. "rise-dtn 0.1.0"; "?" if the entry point names no distribution


@dataclasses.dataclass(frozen=True, slots=True)
class Problem:
    """An entry point that could not be used, and why (one line)."""

    name: str
    source: str
    reason: str

    def __str__(self) -> str:
        return f"carrier {self.name!r} from {self.source} skipped: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class Registry:
    carriers: tuple[Installed, ...]
    problems: tuple[Problem, ...] = ()

    @property
    def schemes(self) -> list[str]:
        return sorted({scheme for item in self.carriers for scheme in item.carrier.schemes})

    def named(self, name: str) -> Carrier:
        for item in self.carriers:
            if item.carrier.name == name:
                return item.carrier
        installed = ", ".join(item.carrier.name for item in self.carriers) or "none"
        raise UsageError(f"no carrier named {name!r} (installed: {installed})")

    def for_scheme(self, scheme: str) -> Carrier:
        for item in self.carriers:
            if scheme in item.carrier.schemes:
                return item.carrier
        raise UsageError(unknown_scheme(f"{scheme}:", scheme, self.schemes))

    def resolve(self, text: str) -> tuple[Carrier, Address]:
        """The carrier for an address and the address parsed and checked by it."""
        address = parse(text, schemes=self.schemes)
        carrier = self.for_scheme(address.scheme)
        carrier.check(address)
        return carrier, address

    def choose(
        self,
        *,
        given: str | None,
        configured: str | None,
        card: Iterable[tuple[str, str]] = (),
    ) -> tuple[Carrier, Address] | None:
        """Where to reach a neighbour: the address given, else the config's, else its card's.

        From a card only a TCP address is taken: a card is the neighbour's own
        word, and must never make this node run a command (exec:, ssh:) or
        write into a path (dir:). None: nothing says where it is.
        """
        for text in (given, configured):
            if text:
                return self.resolve(text)
        for kind, text in card:
            if kind == "tcp":
                address = parse(text)
                if address.scheme == "tcp":
                    return self.resolve(str(address))
        return None


def load(entry_points: Iterable[object] | None = None) -> Registry:
    """Every carrier registered in the group (or in `entry_points`, for tests).

    The first carrier to claim a scheme keeps it (built-ins sort first by
    name order of their distribution); a later claim is a problem, not a
    silent override, so a plugin cannot hijack `tcp:` unnoticed.
    """
    if entry_points is None:
        from importlib.metadata import entry_points as installed

        entry_points = sorted(installed(group=GROUP), key=_builtin_first)
    carriers: list[Installed] = []
    problems: list[Problem] = []
    claimed: dict[str, str] = {}
    seen_names: set[str] = set()
    for entry in entry_points:
        name = str(getattr(entry, "name", "?"))
        source = _source(entry)
        try:
            candidate = entry.load()  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - any plugin error is the plugin's, not ours
            problems.append(Problem(name, source, f"cannot be loaded: {_one_line(exc)}"))
            continue
        missing = missing_parts(candidate)
        if missing:
            problems.append(Problem(name, source, f"not a carrier (lacks {', '.join(missing)})"))
            continue
        carrier: Carrier = candidate
        if carrier.name in seen_names:
            problems.append(Problem(name, source, f"a carrier named {carrier.name!r} is loaded"))
            continue
        taken = [scheme for scheme in carrier.schemes if scheme in claimed]
        if taken:
            owner = claimed[taken[0]]
            problems.append(Problem(name, source, f"scheme {taken[0]}: is {owner}'s"))
            continue
        seen_names.add(carrier.name)
        claimed.update(dict.fromkeys(carrier.schemes, carrier.name))
        carriers.append(Installed(carrier, source))
    return Registry(tuple(carriers), tuple(problems))


def _builtin_first(entry: object) -> tuple[bool, str]:
    return (_source(entry).split(" ")[0] != "rise-dtn", str(getattr(entry, "name", "")))


def _source(entry: object) -> str:
    dist = getattr(entry, "dist", None)
    if dist is None:
        return "?"
    return f"{dist.name} {dist.version}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
