"""The README's Python examples run as written (as tantivy-py tests its docs): every name they
use exists, every call takes the arguments shown, on the real model, index and files."""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import ARAGOG, CORPUS, ROOT

README = ROOT / "README.md"


def python_blocks(after: str) -> list[str]:
    """The ```python blocks of the README's section headed `after`, up to the next heading."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {after}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


@pytest.fixture
def readme_folder(tmp_path, monkeypatch):
    """The files the examples name, in a folder of their own: an index of the shipped papers,
    the two papers they add and a folder of papers to build from."""
    from culture_rag import Assistant, Settings

    shutil.copytree(CORPUS, tmp_path / "corpus")
    shutil.copytree(CORPUS, tmp_path / "my-papers")
    shutil.copy(ARAGOG / "distilbert.pdf", tmp_path / "new-paper.pdf")
    shutil.copy(ARAGOG / "bert.pdf", tmp_path / "another.pdf")  # the reading room's example asks about BERT
    Assistant(Settings(index_dir=tmp_path / "index", corpus_dir=tmp_path / "corpus")).build(tmp_path / "corpus")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_python_examples_run(readme_folder, capsys):
    blocks = python_blocks("Python API")
    assert len(blocks) == 3, "the Python API section's examples changed: update this test's files"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__main__"})
    assert (readme_folder / "page.png").stat().st_size > 0
    assert "@" in (readme_folder / "cited.bib").read_text()
    assert "[1]" in capsys.readouterr().out
