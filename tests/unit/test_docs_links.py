"""Every relative link of the README and of docs/ names a file of the repository, so a moved or
renamed file breaks the build rather than the documentation (read at the root, on a code host
or in an editor, a link resolves from the file that holds it)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# [text](target) and ![alt](target); a target ends at the first space or closing parenthesis
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE = re.compile(r"```.*?```", re.DOTALL)


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def relative_links(document: Path) -> list[str]:
    text = _CODE.sub("", document.read_text(encoding="utf-8"))
    found = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL (http:, mailto:, ...) or an anchor of the same page
        found.append(target.split("#", 1)[0])
    return found


def test_every_relative_link_names_a_file_of_the_repository() -> None:
    broken = []
    checked = 0
    for document in documents():
        for target in relative_links(document):
            checked += 1
            resolved = (document.parent / target).resolve()
            if not resolved.exists() or ROOT not in (resolved, *resolved.parents):
                broken.append(f"{document.relative_to(ROOT)}: {target}")
    assert broken == []
    assert checked > 20  # (the README and docs link to each other: the test reads them)


def test_a_link_outside_the_repository_is_found(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(
        "See [the example](../examples/protect_app.py) and [a site](https://x.example)."
    )
    assert relative_links(page) == ["../examples/protect_app.py"]
