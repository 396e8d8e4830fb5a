"""Every hook is documented in connectors/README.md (Datasette's
test_plugin_hooks_are_documented), with its arguments and firstresult behaviour."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from connectors import hookspecs

README = Path(__file__).resolve().parents[2] / "connectors" / "README.md"


def hook_specs() -> dict[str, object]:
    return {
        name: fn
        for name, fn in vars(hookspecs).items()
        if name.startswith("keel_") and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def readme_sections() -> dict[str, str]:
    """Hook name → body of its `### keel_…(…)` section."""
    text = README.read_text()
    sections = {}
    for match in re.finditer(r"^### (keel_\w+)\(.*?\)\s*$", text, re.MULTILINE):
        body = text[match.end() :]
        following = re.search(r"^#{1,3} ", body, re.MULTILINE)
        sections[match.group(1)] = body[: following.start()] if following else body
    return sections


def test_there_are_hooks_to_document():
    assert set(hook_specs()) == {"keel_connector_info", "keel_connector_factory"}


@pytest.mark.parametrize("name", sorted(hook_specs()))
def test_every_hook_is_documented(name: str):
    sections = readme_sections()
    assert name in sections, f"connectors/README.md has no '### {name}(...)' section"
    body = sections[name]
    spec = hook_specs()[name]
    for argument in inspect.signature(spec).parameters:
        assert f"`{argument}`" in body, f"{name}: argument {argument!r} is not documented"
    for part in ("Called", "Returns"):
        assert f"**{part}**" in body, f"{name}: no **{part}** paragraph"
    firstresult = getattr(spec, f"{hookspecs.PROJECT}_spec")["firstresult"]
    assert ("**firstresult**" in body) == firstresult
    assert ("**Not firstresult**" in body) == (not firstresult)


def test_every_hook_has_a_docstring_saying_when_it_is_called():
    for name, spec in hook_specs().items():
        doc = inspect.getdoc(spec) or ""
        assert "When called" in doc and "Returns" in doc and "firstresult" in doc, name


def test_readme_documents_no_hook_that_does_not_exist():
    assert set(readme_sections()) <= set(hook_specs())
