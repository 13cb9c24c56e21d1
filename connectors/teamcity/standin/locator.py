"""TeamCity's two small languages: locators (`buildType:(id:X),count:5`) and `fields=` specs.

Locators follow ``jetbrains.buildServer.server.rest.data.Locator``: ``name:value`` pairs
separated by commas, a value in parentheses may hold commas and nested locators, a locator
without a colon is a single value, and a dimension may be given more than once. Unknown
dimensions are refused with TeamCity's own wording (``Locator.checkLocatorFullyProcessed``),
known ones the stand-in does not implement are refused too, so nobody mistakes silence for
support.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class LocatorError(Exception):
    """A locator TeamCity would answer 400 for; the message is TeamCity's."""


class NotImplementedDimension(LocatorError):
    """A dimension TeamCity knows but the stand-in does not filter by."""


@dataclass
class Locator:
    text: str
    single: str | None = None
    dims: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        values = self.dims.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise LocatorError(
                f"Error processing locator '{self.text}': Only single '{name}' dimension is"
                f" supported in locator. Found: {values}"
            )
        return values[0]

    def all(self, name: str) -> list[str]:
        return self.dims.get(name, [])

    def check(
        self, supported: tuple[str, ...], implemented: frozenset[str], hidden: tuple[str, ...] = ()
    ) -> None:
        """Refuse unknown dimensions as TeamCity does (its message leaves hidden ones out),
        and those the stand-in lacks."""
        unknown = [d for d in self.dims if d not in supported and d not in hidden]
        if unknown:
            shown = "[" + ", ".join(unknown) + "]"
            verb = "is" if len(unknown) == 1 else "are"
            noun = "dimension" if len(unknown) == 1 else "dimensions"
            raise LocatorError(
                f"Error processing locator '{self.text}': Locator {noun} {shown} {verb} unknown."
                f" Supported dimensions are: [{', '.join(supported)}]"
            )
        lacking = [d for d in self.dims if d not in implemented]
        if lacking:
            raise NotImplementedDimension(
                f"Error processing locator '{self.text}': the TeamCity stand-in does not"
                f" implement locator dimension(s) {lacking}"
            )


def _split(text: str) -> list[str]:
    """Top-level comma-separated parts, parentheses nesting respected."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise LocatorError(
                    f"Bad locator syntax: Could not find matching '(' for ')'. Details:"
                    f" locator: '{text}', at position {i}"
                )
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth:
        raise LocatorError(
            f"Bad locator syntax: No closing ')' found. Details: locator: '{text}',"
            f" at position {len(text)}"
        )
    parts.append(text[start:])
    return parts


def _unwrap(value: str) -> str:
    return value[1:-1] if value.startswith("(") and value.endswith(")") else value


def parse_locator(text: str) -> Locator:
    if not text:
        raise LocatorError("Invalid locator. Cannot be empty.")
    if ":" not in text and "(" not in text:
        return Locator(text, single=text)
    loc = Locator(text)
    for part in _split(text):
        name, colon, value = part.partition(":")
        if not colon or not name:
            raise LocatorError(
                f"Bad locator syntax: Could not find ':' after dimension name. Details:"
                f" locator: '{text}', at position 0"
            )
        loc.dims.setdefault(name, []).append(_unwrap(value))
    return loc


# -- fields -------------------------------------------------------------------------------

Spec = dict[str, "Spec | None"]
"""A parsed `fields=` value: name → nested spec (None: the value as it is)."""


def parse_fields(text: str) -> Spec:
    """`count,build(id,triggered(type,user(username)))` → nested dict; `$locator(...)` and
    `$short`/`$long` markers are accepted and ignored."""
    spec: Spec = {}
    for part in _split(text):
        part = part.strip()
        if not part:
            continue
        name, paren, rest = part.partition("(")
        if name.startswith("$"):
            continue
        spec[name] = parse_fields(rest[:-1]) if paren else None
    return spec


def prune(value: object, spec: Spec | None) -> object:
    """Keep what `spec` names. Entities are dicts whose values may be zero-argument callables
    (computed only when asked for); lists are pruned element by element."""
    if callable(value):
        value = value()
    if spec is None:
        return _resolve(value)
    if isinstance(value, list):
        return [prune(v, spec) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    names = list(value) if "*" in spec else list(spec)
    for name in names:
        if name == "*" or name not in value:
            continue
        v = prune(value[name], spec.get(name))
        if v is not None:
            out[name] = v
    return out


def _resolve(value: object) -> object:
    if callable(value):
        value = value()
    if isinstance(value, dict):
        return {k: r for k, v in value.items() if (r := _resolve(v)) is not None}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value
