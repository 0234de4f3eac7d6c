"""Hostile and odd inputs: every PDF of ../shared/pdfs/robustness, broken files, odd encodings,
unsafe names, symlinks leading out of the corpus, the contained parser's failure modes, and
bad questions. The fake embedder keeps this fast; parsing is real."""

from __future__ import annotations

import csv
import difflib
import io
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import ROBUSTNESS, make_settings

from culture_rag import Assistant, QueryError
from culture_rag.ingest.build import _RESERVED, scan_corpus

PASSWORDS = {  # ../shared/README.md
    "r4-aes-user-password.pdf": "asdfzxcv",
    "crazyones-encrypted-256.pdf": "password",
    "libreoffice-writer-password.pdf": "openpassword",
    "password-example.pdf": "test",
    "r2-empty-password.pdf": "",
}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
FAILURES = {"encrypted", "corrupt", "no_text", "empty", "timeout", "crashed", "too_large"}


def run_bounded(fn, seconds: float):
    """Run fn in a thread and fail, instead of hanging the suite, if it does not finish."""
    result: dict = {}

    def target():
        try:
            result["value"] = fn()
        except BaseException as exc:  # noqa: BLE001  handed to the test thread below
            result["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not finish within {seconds} s"
    if "error" in result:
        raise result["error"]
    return result["value"]


def manifest_rows() -> list[dict]:
    with open(ROBUSTNESS / "MANIFEST.tsv", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def pypdf_chars(row: dict) -> int | None:
    """Characters pypdf 7.1.0 extracted, or None when it raised (MANIFEST.tsv)."""
    found = re.search(r"\bchars=(\d+)", row["pypdf_7.1.0_result"])
    return int(found.group(1)) if found else None


@pytest.fixture(scope="module")
def robustness_build(tmp_path_factory):
    from fakes import HashEmbedder

    tmp = tmp_path_factory.mktemp("robust")
    corpus = tmp / "corpus"
    corpus.mkdir()
    rows = manifest_rows()
    for row in rows:
        shutil.copy(ROBUSTNESS / row["file"], corpus / Path(row["file"]).name)
    assert len(list(corpus.iterdir())) == len(rows), "file names must be unique across the categories"
    assistant = Assistant(make_settings(tmp), embedder=HashEmbedder())
    report = run_bounded(lambda: assistant.build(corpus), 600)
    return assistant, {o.source: o for o in report.outcomes}, rows


def test_every_robustness_pdf_gets_an_outcome(robustness_build):
    assistant, outcomes, rows = robustness_build
    assert sorted(outcomes) == sorted(Path(r["file"]).name for r in rows)
    for name, outcome in outcomes.items():
        assert outcome.status in {"indexed"} | FAILURES, (name, outcome)
        if outcome.status != "indexed":
            assert len(outcome.detail) > 15, f"{name}: a failure must say what happened and what to do"
    indexed = {p.source for p in assistant.papers()}
    assert indexed == {n for n, o in outcomes.items() if o.status == "indexed"}


def test_readable_pdfs_are_indexed_and_searchable(robustness_build):
    assistant, outcomes, rows = robustness_build
    for row in rows:
        name, chars = Path(row["file"]).name, pypdf_chars(row)
        category = row["file"].split("/")[0]
        if category == "encrypted" or chars is None or chars < 100:
            continue
        # Plenty of text by pypdf's own count: good/, the OCR layer of a scan, the readable
        # members of corrupt/ (30 pages of "Potato N" survive a looping xref).
        assert outcomes[name].status == "indexed", (name, outcomes[name])
    for paper in assistant.papers():
        chunk = next(c for c in assistant.snapshot.chunks if c.paper_id == paper.paper_id)
        # Its opening words, numbers included: a table's header words alone are common words.
        words = re.findall(r"\w+", chunk.text)[:30]
        hits = assistant.search(" ".join(words), k=3)
        # A rotated copy is folded with its original as a near-duplicate (its notes come in another
        # order), so the passage is what must be found.
        assert any(h.paper.paper_id == paper.paper_id or _near(h.chunk.text, chunk.text) for h in hits), (paper.source, words)


def _near(a: str, b: str) -> bool:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio() >= 0.9


def ocr_pages(assistant, source: str) -> tuple[int, ...]:
    return next(p.ocr_pages for p in assistant.papers() if p.source == source)


def test_unreadable_pdfs_get_a_clear_reason(robustness_build):
    assistant, outcomes, rows = robustness_build
    for row in rows:
        name, chars = Path(row["file"]).name, pypdf_chars(row)
        outcome = outcomes[name]
        if row["file"].startswith("encrypted/"):
            continue
        if chars is None:  # pypdf raised: corrupt, or nothing at all
            assert outcome.status in ("corrupt", "empty"), (name, outcome)
            if outcome.status == "corrupt":
                assert "PDF" in outcome.detail and ("re-download" in outcome.detail or "check" in outcome.detail)
        elif chars < 20:  # "Potato", "2021 3 31", blank scans: no text worth an entry, unless OCR reads one
            assert outcome.status in ("no_text", "indexed"), (name, outcome)
            if outcome.status == "no_text":
                # Either too few letters to be worth an entry, or image pages OCR found no words on.
                assert "fewer than 20 letters" in outcome.detail or "OCR found no words" in outcome.detail
            else:
                assert ocr_pages(assistant, name), f"{name}: indexed only by what OCR read"


def test_image_only_pdfs_have_no_extractable_text(robustness_build):
    assistant, outcomes, rows = robustness_build
    scans = [r for r in rows if r["file"].startswith(("image_or_scanned/", "large_page/"))]
    assert scans
    for row in scans:
        name, chars = Path(row["file"]).name, pypdf_chars(row)
        if chars >= 1000:
            assert outcomes[name].status == "indexed"  # a scan with an OCR text layer is text
            assert not ocr_pages(assistant, name), "a page with a text layer is not read again"
        else:  # these draw a few pixels or one line of text: OCR finds nothing more
            assert outcomes[name].status == "no_text", (name, outcomes[name])
    # Its only text is the label "Background" repeated on four pages: a stamp, not content.
    assert outcomes["imagemagick-images.pdf"].status == "no_text"


def test_encrypted_pdfs_ask_for_the_password_then_open(tmp_path, fake_embedder):
    encrypted = sorted((ROBUSTNESS / "encrypted").glob("*.pdf"))
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    report = assistant.add(encrypted)
    by_name = {o.source: o for o in report.outcomes}
    for path in encrypted:
        outcome = by_name[path.name]
        if PASSWORDS[path.name] == "":
            assert outcome.status == "indexed"  # an empty user password opens without asking
            continue
        assert outcome.status == "encrypted", outcome
        assert "give the password" in outcome.detail and "--password" in outcome.detail
        assert not (assistant.corpus_dir / path.name).exists(), "a refused file is not kept"

    locked = [p for p in encrypted if PASSWORDS[p.name]]
    wrong = assistant.add(locked, password="not-the-password")
    assert {o.status for o in wrong.outcomes} == {"encrypted"}
    assert all("does not open" in o.detail for o in wrong.outcomes)

    for path in locked:  # AES-128 (r4) and AES-256 (crazyones) need `cryptography`
        report = assistant.add([path], password=PASSWORDS[path.name])
        (outcome,) = report.outcomes
        assert outcome.status == "indexed" and outcome.n_chunks > 0, outcome
        assert (assistant.corpus_dir / path.name).is_file()
    assert {p.source for p in assistant.papers()} == {p.name for p in encrypted}
    hits = assistant.search("Here's to the crazy ones", k=3)
    assert any("crazy ones" in h.chunk.text for h in hits)


# --- the contained parser ------------------------------------------------------------------


def test_the_parser_process_imports_no_engine():
    """The parser's child imports culture_rag.ingest.build only; the engine (FAISS, numpy, the
    answerer) made every parser start 0.3 s slower, a cost indexing pays once per build."""
    code = "import sys, culture_rag.ingest.build; print(sorted({'faiss', 'numpy', 'culture_rag.assistant'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_parse_timeout_is_a_per_file_error_and_the_batch_goes_on(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # A real 117-page PDF (0.3 s with PDFium, 10 s with pypdf) against a 0.1 s budget; then a
    # one-page one (10 ms).
    shutil.copy(ROBUSTNESS / "good" / "GeoTopo-komprimiert.pdf", corpus / "a-slow.pdf")
    shutil.copy(ROBUSTNESS / "good" / "crazyones-pdfa.pdf", corpus / "b-quick.pdf")
    assistant = Assistant(make_settings(tmp_path, parse_timeout_s=0.1), embedder=fake_embedder)
    report = run_bounded(lambda: assistant.build(corpus), 120)
    by_name = {o.source: o for o in report.outcomes}
    assert by_name["a-slow.pdf"].status == "timeout"
    assert "parse_timeout_s" in by_name["a-slow.pdf"].detail
    assert by_name["b-quick.pdf"].status == "indexed"


def test_crash_hang_and_memory_blowup_cost_one_file_each(tmp_path, fake_embedder, monkeypatch):
    import hostile

    monkeypatch.setattr("culture_rag.ingest.build._worker", hostile.hostile_worker)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = ROBUSTNESS / "good" / "crazyones-pdfa.pdf"
    for name in ("1-crash.pdf", "2-good.pdf", "3-hang.pdf", "4-good.pdf", "5-hog.pdf", "6-good.pdf"):
        shutil.copy(good, corpus / name)
    (corpus / "notes.txt").write_text("Plain notes about the cultural industry of Belarus and China. " * 3)
    settings = make_settings(tmp_path, parse_timeout_s=3.0, parse_memory_mb=1024)
    assistant = Assistant(settings, embedder=fake_embedder)
    report = run_bounded(lambda: assistant.build(corpus), 180)
    by_name = {o.source: o for o in report.outcomes}
    assert by_name["1-crash.pdf"].status == "crashed" and "SIGSEGV" in by_name["1-crash.pdf"].detail
    assert by_name["3-hang.pdf"].status == "timeout"
    assert by_name["5-hog.pdf"].status == "too_large" and "1024 MB" in by_name["5-hog.pdf"].detail
    assert {by_name[n].status for n in ("2-good.pdf", "4-good.pdf", "6-good.pdf", "notes.txt")} == {"indexed"}
    assert len(assistant.papers()) == 4


def test_a_timed_out_parser_leaves_no_child_process(tmp_path, fake_embedder, monkeypatch):
    import multiprocessing

    import hostile

    monkeypatch.setattr("culture_rag.ingest.build._worker", hostile.hostile_worker)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(ROBUSTNESS / "good" / "crazyones-pdfa.pdf", corpus / "hang.pdf")
    assistant = Assistant(make_settings(tmp_path, parse_timeout_s=1.0), embedder=fake_embedder)
    before = set(multiprocessing.active_children())  # an earlier test's pool may still be winding down
    assistant.build(corpus)
    assert set(multiprocessing.active_children()) <= before


# --- other bad files ---------------------------------------------------------------------


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("paper.txt", "A paper about the cultural industry, zipped. " * 20)
    return buffer.getvalue()


TEXT = "Café culture in Minsk: a résumé of cultural policy, the naïve façade of Belt and Road co-operation."
BAD_FILES = {
    # name: (bytes, expected status)
    "empty.pdf": (b"", "empty"),
    "empty.txt": (b"", "empty"),
    "random.pdf": (os.urandom(4096), "corrupt"),
    "random.txt": (bytes(range(1, 256)) * 16, "encoding"),
    "zipped.pdf": (_zip_bytes(), "corrupt"),
    "truncated.pdf": ((ROBUSTNESS / "good" / "pdflatex-4-pages.pdf").read_bytes()[:3000], "corrupt"),
    "pdf-named.txt": ((ROBUSTNESS / "good" / "crazyones-pdfa.pdf").read_bytes(), "mismatch"),
    "nul-heavy.txt": (b"\x00\x01\x02\x03" * 1000, "binary"),
    "utf16-bom.txt": (TEXT.encode("utf-16"), "indexed"),
    "utf16-no-bom.md": (TEXT.encode("utf-16-le"), "indexed"),
    "utf32.txt": (TEXT.encode("utf-32"), "indexed"),
    "latin1.txt": (TEXT.encode("latin-1"), "indexed"),
    "cp1252.md": ((TEXT + " “Quoted” – dashed").encode("cp1252"), "indexed"),
    "nul-sprinkled.txt": (TEXT.replace(" ", " \x00", 3).encode(), "indexed"),
}


def test_bad_files_get_clear_errors_or_correct_decoding(tmp_path, fake_embedder):
    sources = tmp_path / "sources"
    sources.mkdir()
    for name, (data, _) in BAD_FILES.items():
        (sources / name).write_bytes(data)
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    report = run_bounded(lambda: assistant.add(sorted(sources.iterdir())), 120)
    by_name = {o.source: o for o in report.outcomes}
    assert sorted(by_name) == sorted(BAD_FILES)
    for name, (_, expected) in BAD_FILES.items():
        assert by_name[name].status == expected, (name, by_name[name])
    assert "ZIP" in by_name["zipped.pdf"].detail
    assert "rename it to .pdf" in by_name["pdf-named.txt"].detail
    decoded = {p.source: p for p in assistant.papers()}
    for name in ("utf16-bom.txt", "utf16-no-bom.md", "utf32.txt", "latin1.txt", "cp1252.md", "nul-sprinkled.txt"):
        text = " ".join(c.text for c in assistant.snapshot.chunks if c.paper_id == decoded[name].paper_id)
        assert "Café culture in Minsk" in text and "naïve façade" in text, (name, text[:120])
        assert "\x00" not in text
    cp1252 = " ".join(c.text for c in assistant.snapshot.chunks if c.paper_id == decoded["cp1252.md"].paper_id)
    assert "“Quoted” – dashed" in cp1252


# --- names and symlinks ----------------------------------------------------------------------

UNSAFE_NAMES = [
    "..\\..\\evil.txt",  # backslashes are legal in Linux names and mean folders on Windows
    "CON.txt",
    "NUL.txt",
    "com1.tar.md",
    "ｐａｐｅｒ.txt",  # full-width letters
    "p\u0430per.txt",  # Cyrillic a
    "\u202etxt.exe.txt",  # right-to-left override
    "论文.md",
    "line\nbreak.txt",
    " .md",  # only a space before the dot
    "a" * 240 + ".txt",
]


def test_unsafe_names_get_safe_stored_names(tmp_path, fake_embedder):
    sources = tmp_path / "sources" / "deep"
    sources.mkdir(parents=True)
    originals = {}
    for number, name in enumerate(UNSAFE_NAMES):
        path = sources / name
        path.write_text(f"Paper number {number} on cultural trade between Belarus and China, with film and music.\n")
        originals[path] = path.read_bytes()
    # The same file reached through a relative path with "..", and through an absolute one.
    (tmp_path / "up.txt").write_text("Reached through a path with dot-dot, about museums along the Silk Road.\n")
    dotdot = Path(os.path.relpath(tmp_path / "sources" / "deep" / ".." / ".." / "up.txt"))
    assert ".." in dotdot.parts or dotdot.is_absolute()
    originals[dotdot] = (tmp_path / "up.txt").read_bytes()

    # A look-alike suffix is not the real one: refused rather than guessed.
    lookalike = tmp_path / "sources" / "paper.ｔｘｔ"
    lookalike.write_text("Text hiding behind a full-width suffix, about the national library.\n")

    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    report = assistant.add([*originals, lookalike])
    by_status = {o.source: o.status for o in report.outcomes}
    assert by_status.pop(lookalike.name) == "unsupported"
    assert set(by_status.values()) == {"indexed"}, [(o.source, o.status, o.detail) for o in report.outcomes]
    corpus = assistant.corpus_dir.resolve()
    stored = [p for p in corpus.iterdir() if not p.name.startswith(".")]
    assert len(stored) == len(originals)
    for path in stored:
        assert path.parent == corpus and path.is_file() and not path.is_symlink()
        assert SAFE_NAME.fullmatch(path.name), path.name
        assert path.name.split(".")[0].lower() not in _RESERVED, path.name
        assert path.suffix in (".txt", ".md")
        assert len(path.name) <= 120
    assert sorted(p.read_bytes() for p in stored) == sorted(originals.values())
    assert {p.source for p in assistant.papers()} == {p.name for p in stored}
    outside = {p for p in tmp_path.rglob("*") if p.is_file()} - set(stored) - {p.resolve() for p in originals}
    outside -= {tmp_path / "up.txt", lookalike}
    assert all(corpus in p.resolve().parents or "index" in p.parts for p in outside), sorted(outside)


def test_two_files_with_the_same_safe_name_in_one_batch_are_both_kept(tmp_path, fake_embedder):
    sources = tmp_path / "sources"
    (sources / "a").mkdir(parents=True)
    (sources / "b").mkdir()
    (sources / "a" / "paper.txt").write_text("The first paper is about opera houses in Minsk and their audiences.\n")
    (sources / "b" / "ｐａｐｅｒ.txt").write_text("The second paper is about tea ceremonies exported along the Silk Road.\n")
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.add([sources / "a" / "paper.txt", sources / "b" / "ｐａｐｅｒ.txt"])
    assert len(assistant.papers()) == 2
    assert assistant.search("tea ceremonies Silk Road", k=1)[0].chunk.text.startswith("The second paper")


def test_symlinks_leading_out_of_the_corpus_are_not_followed(tmp_path, fake_embedder):
    outside = tmp_path / "outside"
    (outside / "folder").mkdir(parents=True)
    (outside / "secret.txt").write_text("Confidential xylophonequartz salaries of the ministry, never to be indexed.\n")
    (outside / "folder" / "also-secret.md").write_text("More xylophonequartz material that lives outside the corpus.\n")
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "real.txt").write_text("A real paper inside the corpus about puppet theatres in Grodno.\n")
    (corpus / "to-secret.txt").symlink_to(outside / "secret.txt")
    (corpus / "to-folder").symlink_to(outside / "folder", target_is_directory=True)
    (corpus / "sub" / "up-and-out.txt").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    (corpus / "to-real.txt").symlink_to(corpus / "sub" / "real.txt")  # inside: fine to follow
    (corpus / "dangling.txt").symlink_to(tmp_path / "nowhere.txt")
    (corpus / "loop.txt").symlink_to(corpus / "loop.txt")
    os.mkfifo(corpus / "fifo.txt")  # reading a FIFO would block forever

    found = {p.relative_to(corpus).as_posix() for p in scan_corpus(corpus)}
    assert found == {"sub/real.txt", "to-real.txt"}
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    report = run_bounded(lambda: assistant.build(corpus), 60)
    assert {o.source for o in report.outcomes if o.status == "indexed"} == {"real.txt", "to-real.txt"}
    assert all("xylophonequartz" not in c.text for c in assistant.snapshot.chunks)


def test_identical_files_under_two_names_share_a_segment_safely(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "Belarusian and Chinese studios co-produce animated films for the Belt and Road audience.\n" * 4
    (corpus / "copy-a.txt").write_text(text)
    (corpus / "copy-b.txt").write_text(text)
    (corpus / "other.txt").write_text("A different paper about libraries and archives in Minsk and Beijing.\n" * 3)
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus)
    reloaded = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    for paper in reloaded.papers():  # every chunk is its own paper's, though copy-b's were written as copy-a's
        _, start, stop = reloaded.snapshot.rows()[paper.paper_id]
        rows = range(start, stop)
        assert {reloaded.snapshot.chunks[i].paper_id for i in rows} == {paper.paper_id}
    reloaded.remove("copy-a")
    again = Assistant.load(assistant.index_dir, settings=assistant.settings, embedder=fake_embedder)
    assert sorted(p.paper_id for p in again.papers()) == ["copy-b", "other"]
    assert again.search("animated films co-produce", k=1)[0].paper.paper_id == "copy-b"


# --- bad questions -----------------------------------------------------------------------


@pytest.fixture
def small_index(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "p.txt").write_text("The Belt and Road Initiative supports cultural trade between Belarus and China.\n" * 3)
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    assistant.build(corpus)
    return assistant


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "empty"),
        ("   \n\t  ", "empty"),
        ("\x00\x01\x1b\x7f\x9b", "empty"),
        ("\u200b\u200e\u202e\ufeff", "empty"),  # zero-width and direction marks only
        ("a" * 100_000, "100,000 characters"),
        ("why? " * 20_000, "limit is"),
        ("\ud800" * 10, "empty"),  # lone surrogates, as a broken client may send
    ],
)
def test_bad_questions_get_a_clear_query_error_in_bounded_time(small_index, question, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        run_bounded(lambda: small_index.search(question), 30)


def test_questions_that_are_not_text_are_refused(small_index):
    for question in (None, b"bytes question", 42, ["a", "list"]):
        with pytest.raises(QueryError, match="must be text"):
            small_index.search(question)


def test_control_characters_inside_a_real_question_are_dropped(small_index):
    hits = run_bounded(lambda: small_index.search("cultural\x00 trade\x1b between\u200b Belarus\x07"), 30)
    assert hits and "cultural trade" in hits[0].chunk.text


def test_longest_allowed_question_is_answered_in_bounded_time(small_index):
    limit = small_index.settings.max_query_chars
    question = ("Belarus " * limit)[:limit]
    assert run_bounded(lambda: small_index.search(question), 60)


def test_query_without_any_index_is_clear(tmp_path, fake_embedder):
    assistant = Assistant(make_settings(tmp_path), embedder=fake_embedder)
    with pytest.raises(QueryError, match="no index loaded.*culture-rag build"):
        assistant.search("anything")


def test_query_against_an_emptied_index_is_clear(small_index):
    small_index.remove(small_index.papers()[0].paper_id)
    with pytest.raises(QueryError, match="index is empty.*culture-rag add"):
        run_bounded(lambda: small_index.search("Belarus"), 30)
