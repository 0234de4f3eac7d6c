"""The README and docs/ hold together: the README stays short enough to read in five minutes,
every relative link and image in README.md and docs/*.md points to a file that exists (and a
`#anchor` into a Markdown file to one of its headings, slugged as GitHub slugs them), every
document in docs/ is reachable from the README or another document, and each starts with its
title, a line on what it is for and a link back to the README.

The checker is plain functions, run on the real files and on small broken samples, so that a
checker that stopped finding anything would fail here too."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 300

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
INLINE_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HTML_TARGET = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)\s*=\s*[\"']([^\"']+)[\"']", re.I)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.I)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks: links and headings in code
    are examples, not part of the document."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence) \
                    and not line.strip()[len(opening.group(1)):].strip():
                fence = None
        else:
            lines.append((number, line))
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (code marks, emphasis and link targets
    gone), lower-cased, punctuation and symbols dropped (hyphens and underscores stay), each
    space a hyphen."""
    text = CODE_SPAN.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"<[^>]+>", "", text)
    text = text.replace("*", "")
    text = re.sub(r"(?<!\w)_+|_+(?!\w)", "", text)  # _emphasis_, not snake_case
    kept = (c for c in text.strip().lower() if c in " -_" or unicodedata.category(c)[0] in "LNM")
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file offers: its headings' slugs (a repeated one numbered -1, -2,
    as GitHub numbers them) and explicit <a id=...> / <a name=...>."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    previous = ""
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        heading = None
        if m := ATX.match(line):
            heading = m.group(2)
        elif SETEXT.match(line) and previous.strip() and not previous.lstrip().startswith(("|", "-", "*", ">")):
            heading = previous.strip()
        if heading is not None:
            base = slug(heading)
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(a.lower() for a in HTML_ANCHOR.findall(line))
        previous = line
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link and image of a Markdown file outside code: inline
    links and images, reference definitions, and <a href> / <img src>."""
    found = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        if m := REFERENCE_DEF.match(line):
            found.append((number, m.group(1)))
            continue
        plain = CODE_SPAN.sub("code", line)  # `[x](y)` in code is no link; [`x`](y) stays one
        found.extend((number, m.group(2)) for m in INLINE_LINK.finditer(plain))
        found.extend((number, target) for target in HTML_TARGET.findall(plain))
    return found


def broken_links(root: Path, files: list[Path]) -> list[str]:
    """One message per relative link or image that leads nowhere: a missing file or folder, or a
    `#anchor` that is no heading of the Markdown file it points into."""
    problems = []
    for path in files:
        for number, target in links(path):
            where = f"{path.relative_to(root)}:{number}: {target}"
            if not target:
                problems.append(f"{where}: empty link")
                continue
            if EXTERNAL.match(target):
                continue
            file_part, _, anchor = target.partition("#")
            file_part = unquote(file_part.split("?", 1)[0])
            if not file_part:
                destination = path
            elif file_part.startswith("/"):
                destination = root / file_part.lstrip("/")
            else:
                destination = (path.parent / file_part).resolve()
            if not destination.exists():
                problems.append(f"{where}: no such file")
                continue
            if root.resolve() not in (destination.resolve(), *destination.resolve().parents):
                problems.append(f"{where}: outside the repository")
                continue
            if anchor and destination.suffix.lower() == ".md" and unquote(anchor).lower() not in anchors(destination):
                problems.append(f"{where}: no heading with this anchor")
    return problems


def unlinked_docs(readme: Path, docs: list[Path]) -> list[str]:
    """The documents of docs/ that neither the README nor another document links to."""
    linked = set()
    for path in [readme, *docs]:
        for _, target in links(path):
            file_part = unquote(target.partition("#")[0])
            if file_part and not EXTERNAL.match(target):
                destination = (path.parent / file_part).resolve()
                if destination != path.resolve():
                    linked.add(destination)
    return [doc.name for doc in docs if doc.resolve() not in linked]


def opening_problems(root: Path, doc: Path) -> list[str]:
    """A document starts with its `# Title`, then a paragraph saying what it is for that links
    back to the README."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    name = str(doc.relative_to(root))
    if not lines or not lines[0].startswith("# "):
        return [f"{name}: does not start with a '# ' title"]
    rest = "\n".join(lines[1:]).lstrip("\n")
    purpose = rest.split("\n\n", 1)[0]
    problems = []
    if not purpose.strip() or purpose.lstrip().startswith(("#", "```", "|", "-", "!")):
        problems.append(f"{name}: no line under the title saying what the document is for")
    back = [t for _, t in links(doc) if (doc.parent / t.partition("#")[0]).resolve() == (root / "README.md").resolve()]
    if not back:
        problems.append(f"{name}: no link back to the README")
    return problems


def length_problems(readme: Path, limit: int = MAX_README_LINES) -> list[str]:
    """The README must read in five minutes: at most `limit` lines."""
    n = len(readme.read_text(encoding="utf-8").splitlines())
    return [f"{readme.name} has {n} lines; move detail into docs/ (at most {limit})"] if n > limit else []


def doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def test_the_readme_reads_in_five_minutes():
    assert length_problems(README) == []


def test_docs_exist():
    names = {p.name for p in doc_files()}
    assert {"architecture.md", "quality.md", "speed.md", "scaling.md", "robustness.md", "settings.md"} <= names


def test_every_relative_link_and_image_resolves():
    assert broken_links(ROOT, [README, *doc_files()]) == []


def test_every_doc_is_linked_from_the_readme_or_another_doc():
    assert unlinked_docs(README, doc_files()) == []


@pytest.mark.parametrize("doc", doc_files(), ids=lambda p: p.name)
def test_each_doc_opens_with_title_purpose_and_a_way_back(doc):
    assert opening_problems(ROOT, doc) == []


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("How it works", "how-it-works"),
        ("The web chat's building blocks and the deployable app", "the-web-chats-building-blocks-and-the-deployable-app"),
        ("Scaling out: a million chunks on one machine, Milvus and Ray beyond it",
         "scaling-out-a-million-chunks-on-one-machine-milvus-and-ray-beyond-it"),
        ("The hand-written rules reader on the dev sets (before issue 20)",
         "the-hand-written-rules-reader-on-the-dev-sets-before-issue-20"),
        ("The `Settings` object and **its** fields", "the-settings-object-and-its-fields"),
        ("Use from other tools (MCP)", "use-from-other-tools-mcp"),
        ("answer_min_score — a threshold", "answer_min_score--a-threshold"),
        ("Languages, OCR, the reading room and serving", "languages-ocr-the-reading-room-and-serving"),
        ("问题 и вопросы", "问题-и-вопросы"),
    ],
)
def test_headings_slug_as_github_does(heading, expected):
    assert slug(heading) == expected


def test_the_checker_finds_what_is_broken(tmp_path):
    """A small repository with one of each mistake: the checker must name every one, and only those."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "shot.png").write_bytes(b"\x89PNG")
    (tmp_path / "README.md").write_text(
        "# Sample\n\n"
        "Good: [guide](docs/guide.md), [its part](docs/guide.md#second-part), [here](#sample),\n"
        "![shot](docs/shot.png), [web](https://example.org/x.md), [`code` in text](docs/guide.md).\n"
        "Bad: [gone](docs/gone.md) and ![missing](docs/missing.png)\n"
        "and [no such heading](docs/guide.md#third-part) and [nor here](#nowhere).\n"
        "Not links: `[in code](docs/nothing.md)`.\n\n"
        "```markdown\n[in a fence](docs/nothing-either.md)\n## Not a heading\n```\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "guide.md").write_text(
        "# Guide\n\nWhat it is for. Back to the [README](../README.md).\n\n## Second part\n\n"
        "[up](../README.md#not-a-heading) [repeat](#second-part)\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "orphan.md").write_text("No title here.\n", encoding="utf-8")
    readme, docs = tmp_path / "README.md", sorted((tmp_path / "docs").glob("*.md"))

    problems = broken_links(tmp_path, [readme, *docs])
    assert problems == [
        "README.md:5: docs/gone.md: no such file",
        "README.md:5: docs/missing.png: no such file",
        "README.md:6: docs/guide.md#third-part: no heading with this anchor",
        "README.md:6: #nowhere: no heading with this anchor",
        "docs/guide.md:7: ../README.md#not-a-heading: no heading with this anchor",
    ]
    assert unlinked_docs(readme, docs) == ["orphan.md"]
    assert opening_problems(tmp_path, docs[0]) == []
    assert opening_problems(tmp_path, docs[1]) == ["docs/orphan.md: does not start with a '# ' title"]
    (tmp_path / "docs" / "bare.md").write_text("# Bare\n\n## Straight to work\n", encoding="utf-8")
    assert opening_problems(tmp_path, tmp_path / "docs" / "bare.md") == [
        "docs/bare.md: no line under the title saying what the document is for",
        "docs/bare.md: no link back to the README",
    ]

    assert length_problems(readme) == []
    readme.write_text("line\n" * (MAX_README_LINES + 1), encoding="utf-8")
    assert length_problems(readme) == [f"README.md has {MAX_README_LINES + 1} lines; move detail into docs/ (at most 300)"]


PACKAGE = ROOT / "src" / "culture_rag"


def map_block(architecture: Path) -> str:
    """The code block under docs/architecture.md's heading "The folder map"."""
    section = architecture.read_text(encoding="utf-8").split("\n## The folder map\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```\n(.*?)```", section, flags=re.S).group(1)


def map_problems(block: str, package: Path) -> list[str]:
    """Modules the folder map leaves out, and entries it names that are not there. An entry is
    a name at the start of a line indented 2 (the package's own files and folders) or 4 (a
    folder's); a folder's deeper modules need only be named in its entry's text."""
    sections: dict[str, str] = {}
    top, current = set(), None
    for line in block.splitlines():
        entry = re.match(r"^( {2}| {4})([\w/]+)(?:\s|$)", line)
        if entry and len(entry.group(1)) == 2:
            current = entry.group(2)
            top.add(current)
            sections.setdefault(current, "")
        elif entry and current is not None:
            name = f"{current}{entry.group(2)}"
            sections.setdefault(name, "")
        if current is not None:
            sections[current] += line + "\n"
    problems = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            continue
        if len(parts) == 1:
            if parts[0] not in top:
                problems.append(f"{parts[0]}: not in the folder map")
        elif f"{parts[0]}/" not in top:
            problems.append(f"{parts[0]}/: not in the folder map")
        elif not re.search(rf"\b{re.escape(parts[-1])}\b", sections[f"{parts[0]}/"]):
            problems.append(f"{'/'.join(parts)}: not named under {parts[0]}/ in the folder map")
    for name in sorted(sections):
        target = package / name
        if not (target.with_suffix(".py").exists() or target.is_dir() or name == "data/"):
            problems.append(f"{name}: in the folder map but not in the package")
    return problems


def test_the_folder_map_matches_the_package():
    assert map_problems(map_block(DOCS / "architecture.md"), PACKAGE) == []


def test_the_folder_map_check_finds_what_is_missing(tmp_path):
    package = tmp_path / "pkg"
    (package / "stage").mkdir(parents=True)
    for name in ("__init__.py", "front.py", "stage/__init__.py", "stage/kept.py", "stage/forgotten.py", "lost.py"):
        (package / name).write_text("")
    block = "  __init__    the public names\n  front       the front\n  stage/      a stage\n    kept      kept\n    gone      moved away\n"
    assert map_problems(block, package) == [
        "lost: not in the folder map",
        "stage/forgotten: not named under stage/ in the folder map",
        "stage/gone: in the folder map but not in the package",
    ]
