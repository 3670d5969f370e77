"""The documentation holds to the code: every config key is in the configuration reference with
its true default, every relative link lands on a file and heading that exist, and the README
stays a front door that leads to every page of docs/."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Config, RouteConfig

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "configuration.md"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

#: a commented-out key or table header of config.example.toml: "# max_queued = 8", "# [[routes]]"
COMMENTED_OUT = re.compile(r"^# ?(\[\[?[\w.]+\]\]?|[A-Za-z_]\w*\s*=.*)$", re.M)
FENCED = re.compile(r"^```.*?^```", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
#: words that tell the project's history rather than what the gateway does
HISTORY = re.compile(r"\bissues? #?\d|\bthis release\b|\bthe last session\b|\bcommit [0-9a-f]{7}")
#: a reference row: | `key` | `default` | meaning |
ROW = re.compile(r"^\| `([\w.\[\]]+)` \| (.*?) \| ", re.M)


def example_keys() -> list[str]:
    """Every dotted key of config.example.toml, the commented-out ones included."""
    text = (ROOT / "config.example.toml").read_text()
    return list(_dotted(tomllib.loads(COMMENTED_OUT.sub(r"\1", text)), ""))


#: tables whose keys are the user's own (scope names, tool-name patterns): one key each
FREE_FORM = {"scopes.descriptions", "routes[].mcp_tool_scopes"}


def _dotted(table: dict[str, Any], prefix: str) -> Iterator[str]:
    for key, value in table.items():
        if isinstance(value, dict) and value and prefix + key not in FREE_FORM:
            yield from _dotted(value, f"{prefix}{key}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                yield from _dotted(item, f"{prefix}{key}[].")
        else:
            yield prefix + key


def loader_defaults(cls: type = Config, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every key the config loader accepts, with its default (``None`` when required)."""
    for f in dataclasses.fields(cls):
        if f.name == "base_dir":
            continue
        if f.name == "routes":
            yield from loader_defaults(RouteConfig, "routes[].")
        elif dataclasses.is_dataclass(f.default_factory):
            yield from loader_defaults(f.default_factory, f"{prefix}{f.name}.")
        elif f.default is not dataclasses.MISSING:
            yield prefix + f.name, f.default
        elif f.default_factory is not dataclasses.MISSING:
            yield prefix + f.name, f.default_factory()
        else:
            yield prefix + f.name, None


def documented_defaults() -> dict[str, str]:
    """The reference's rows: key -> its default cell."""
    return dict(ROW.findall(REFERENCE.read_text()))


def test_every_key_of_the_example_config_is_in_the_reference() -> None:
    keys = example_keys()
    # the commented-out keys were read too: the walk cannot pass by finding nothing
    assert {"throttle.max_address_failures", "routes[].allow_method_override"} <= set(keys)
    documented = documented_defaults()
    assert [key for key in keys if key not in documented] == []


def test_every_key_the_loader_accepts_is_in_the_reference() -> None:
    documented = documented_defaults()
    keys = [key for key, _ in loader_defaults()]
    assert "proxy.identity_headers.user" in keys and "routes[].timeout" in keys
    assert [key for key in keys if key not in documented] == []


@pytest.mark.parametrize(("key", "default"), list(loader_defaults()), ids=lambda v: str(v))
def test_the_reference_gives_the_true_default(key: str, default: Any) -> None:
    """A default written as one literal (`600`, `true`, `RS256`, `[]`) is the loader's. Those
    the loader derives (``None``: four times `max_failures`, the route's `tokens.audience`)
    and those said in words ("CPU count", "the issuer") are not compared."""
    cell = documented_defaults().get(key)
    if default is None or cell is None or not re.fullmatch(r"`[^`]*`", cell):
        return
    literal = cell[1:-1]
    try:
        value = tomllib.loads(f"v = {literal}")["v"]
    except tomllib.TOMLDecodeError:
        value = literal  # a bare string: `RS256`, `127.0.0.1`
    if isinstance(default, tuple):
        default = list(default)
    assert value == default, f"{key}: the reference says {literal}, the loader {default!r}"


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a page's headings (lower-case, punctuation dropped, spaces
    as '-', a repeated heading numbered)."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6} (.+)$", FENCED.sub("", page.read_text()), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(page: Path) -> list[str]:
    prose = INLINE_CODE.sub("", FENCED.sub("", page.read_text()))
    return [target for target in LINK.findall(prose) if "://" not in target]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands_on_a_file_and_heading(page: Path) -> None:
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and (file.suffix != ".md" or anchor not in _anchors(file)):
            broken.append(target)
    assert broken == []


def test_the_readme_is_a_front_door_to_every_page() -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    assert len(text.splitlines()) <= 200
    assert "make run" in text and "make test" in text
    linked = {(readme.parent / target.partition("#")[0]).resolve() for target in _links(readme)}
    assert [page.name for page in PAGES[1:] if page.resolve() not in linked] == []
    assert (ROOT / "LICENSE").resolve() in linked


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_project_history(page: Path) -> None:
    """The pages say what is, not how it came to be."""
    assert HISTORY.findall(page.read_text()) == []
