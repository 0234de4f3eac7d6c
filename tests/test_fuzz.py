"""Property-based fuzzing of the ingestion and chunking entry points: arbitrary bytes, text and
names go in; only the project's own errors come out, and what comes out holds its invariants."""

from __future__ import annotations

import hashlib
import os
import re
import string
from pathlib import Path

import pytest
from conftest import ROBUSTNESS
from fakes import HashEmbedder
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from culture_rag.errors import CultureRagError, IngestError
from culture_rag.ingest.build import _RESERVED, PdfParser, safe_name
from culture_rag.ingest.checks import check_content_type
from culture_rag.ingest.chunking import chunk_paper, sentence_spans_in_embed_text
from culture_rag.ingest.cleaning import CONTROL as _CONTROL, clean_text, has_real_text
from culture_rag.ingest.papers import parse_paper
from culture_rag.ingest.parsed import Paper

# FUZZ_SCALE=20 for a long hunt; the default keeps the suite fast.
SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
FAST = settings(max_examples=int(300 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=int(60 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
SUFFIXES = [".pdf", ".txt", ".md", ".markdown", ".PDF", ".Md", ""]
REASONS = {"unsupported", "empty", "corrupt", "mismatch", "encoding", "binary", "no_text", "encrypted", "dependency", "too_large"}

names = st.builds(lambda stem, suffix: stem + suffix, st.text(max_size=30), st.sampled_from(SUFFIXES))
# Text that looks like papers: words, numbers, punctuation, headings, table rows, blank lines.
words = st.text(alphabet=string.ascii_letters + "éüßΩ中文", min_size=1, max_size=12)
sentences = st.lists(words, min_size=1, max_size=25).map(" ".join).map(lambda s: s + st_end(s))
lines = st.one_of(
    sentences,
    st.lists(sentences, min_size=2, max_size=4).map(" ".join),
    st.builds(lambda n, s: f"{n}. {s.capitalize()}", st.integers(1, 12), sentences),  # numbered heading
    st.builds(lambda s: "## " + s, sentences),
    st.lists(words, min_size=2, max_size=5).map("\t".join),  # a table row
    st.just(""),
    st.text(max_size=40),  # anything at all
)
documents = st.lists(lines, min_size=0, max_size=40).map("\n".join)


def st_end(sentence: str) -> str:
    return "." if len(sentence) % 3 else "?"


def check_paper(paper: Paper, data: bytes) -> None:
    assert paper.content_hash == hashlib.sha256(data).hexdigest()
    assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", paper.paper_id), paper.paper_id
    assert not _CONTROL.search(paper.text), "control characters survived cleaning"
    assert has_real_text(paper.text)
    previous_end = 0
    for region in paper.regions:
        assert previous_end <= region.start < region.end <= len(paper.text), paper.regions
        previous_end = region.end


@FAST
@given(name=names, data=st.binary(max_size=3000))
def test_parse_paper_raises_only_project_errors_on_any_bytes(name, data):
    try:
        paper = parse_paper(name, data)
    except CultureRagError as exc:
        assert isinstance(exc, IngestError) and exc.reason in REASONS, exc
        assert name in str(exc) or not name  # the message names the file
        return
    check_paper(paper, data)


@FAST
@given(
    text=documents,
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]),
    suffix=st.sampled_from([".txt", ".md"]),
)
def test_text_files_decode_to_what_was_written(text, encoding, suffix):
    data = text.encode(encoding, errors="ignore")
    written = data.decode(encoding)
    # UTF-8 and BOM-marked UTF-16/32 can be read back exactly; legacy code pages are a guess.
    self_identifying = encoding in ("utf-8", "utf-8-sig", "utf-16", "utf-32")
    try:
        paper = parse_paper("paper" + suffix, data)
    except IngestError as exc:
        assert exc.reason in REASONS, exc
        # A text file is refused only when it has too little text, or bytes that look binary.
        assert exc.reason in ("empty", "no_text", "binary", "mismatch", "encoding"), exc
        if exc.reason == "no_text" and self_identifying and suffix == ".txt":
            assert not has_real_text(clean_text(written, join_lines=False))
        return
    check_paper(paper, data)
    if self_identifying and suffix == ".txt" and "\x00" not in written:
        assert paper.text == clean_text(written.replace("\\$", "$"), join_lines=False)


@FAST
@given(name=st.text(max_size=60), data=st.binary(max_size=2000))
def test_check_content_type_raises_only_ingest_errors(name, data):
    try:
        check_content_type(Path(name or "x"), data)
    except IngestError as exc:
        assert exc.reason in ("unsupported", "empty", "corrupt", "mismatch")


@FAST
@given(name=st.text(max_size=300))
def test_safe_names_are_safe_and_stable(name):
    safe = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", safe), safe
    assert safe.isascii() and len(safe) <= 120
    assert safe.split(".")[0].lower() not in _RESERVED
    assert safe_name(safe) == safe  # a stored name is kept as it is
    last = re.split(r"[\\/]", name)[-1]
    if re.fullmatch(r".*\.(pdf|txt|md)", last, re.IGNORECASE | re.DOTALL):
        assert safe.endswith(last.rsplit(".", 1)[1].lower()), (name, safe)  # the type survives


@FAST
@given(
    text=documents,
    suffix=st.sampled_from([".txt", ".md"]),
    max_tokens=st.integers(4, 254),
    overlap_share=st.floats(0, 0.5),
)
def test_chunks_hold_their_invariants(text, suffix, max_tokens, overlap_share):
    try:
        paper = parse_paper("fuzz" + suffix, text.encode())
    except IngestError:
        assume(False)
    tokenizer = HashEmbedder()
    limit = tokenizer.max_tokens
    max_tokens = min(max_tokens, limit)
    overlap = int(max_tokens * overlap_share)
    chunks = chunk_paper(paper, tokenizer, max_tokens, overlap, limit)
    assert chunks, "a paper with text yields chunks"
    assert len({c.chunk_id for c in chunks}) == len(chunks)
    covered = set()
    previous_start = -1
    for chunk in chunks:
        assert chunk.text == paper.text[chunk.start : chunk.end]
        assert chunk.start >= previous_start  # in reading order
        previous_start = chunk.start
        assert tokenizer.count([chunk.text])[0] <= chunk.n_tokens <= max_tokens
        assert tokenizer.count([chunk.embed_text])[0] <= limit  # the model never truncates
        assert chunk.sentences and chunk.sentences[0].start == chunk.start and chunk.sentences[-1].end == chunk.end
        last_end = chunk.start
        for span, (a, b) in zip(chunk.sentences, sentence_spans_in_embed_text(chunk)):
            assert last_end <= span.start < span.end <= chunk.end
            sentence = paper.text[span.start : span.end]
            assert sentence == sentence.strip() and chunk.sentence_text(span) == sentence
            assert chunk.embed_text[a:b] == sentence
            last_end = span.end
            covered.update(range(span.start, span.end))
        if chunk.page_start is not None and chunk.page_end is not None:
            assert chunk.page_start <= chunk.page_end
    missing = [i for i, ch in enumerate(paper.text) if not ch.isspace() and i not in covered]
    assert not missing, f"text left out of every chunk: {paper.text[missing[0]:missing[0] + 40]!r}"


# --- PDFs, through the contained parser ------------------------------------------------------

SEED_PDFS = [ROBUSTNESS / "good" / "crazyones-pdfa.pdf", ROBUSTNESS / "corrupt" / "bad-xref-entry.pdf"]


@pytest.fixture(scope="module")
def parser():
    with PdfParser(timeout_s=20, memory_mb=1024) as p:
        yield p


@pytest.fixture(scope="module")
def pdf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzzpdf")


@SLOW
@given(
    seed=st.sampled_from(SEED_PDFS),
    edits=st.lists(st.tuples(st.floats(0, 1), st.binary(min_size=0, max_size=8), st.integers(0, 8)), max_size=6),
    cut=st.one_of(st.none(), st.floats(0, 1)),
)
def test_mutated_pdfs_raise_only_project_errors(parser, pdf_dir, seed, edits, cut):
    """Real PDFs with bytes replaced, inserted and cut: the classic way to find parser bugs. They
    go through the contained parser, where a hang would be a timeout, not a stuck suite."""
    data = bytearray(seed.read_bytes())
    for where, insert, remove in edits:
        at = int(where * len(data))
        data[at : at + remove] = insert
    if cut is not None:
        del data[max(8, int(cut * len(data))) :]
    path = pdf_dir / "mutant.pdf"
    path.write_bytes(bytes(data))
    try:
        paper = parser.parse(path, None, None)
    except IngestError as exc:
        assert exc.reason in REASONS | {"timeout", "crashed"}, exc
        assert exc.reason != "crashed", f"the parser died on a mutant: {exc}"
        return
    check_paper(paper, bytes(data))


@SLOW
@given(data=st.binary(max_size=4000), header=st.sampled_from([b"", b"%PDF-1.4\n", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"]))
def test_arbitrary_bytes_named_pdf_raise_only_project_errors(parser, pdf_dir, data, header):
    path = pdf_dir / "arbitrary.pdf"
    path.write_bytes(header + data)
    try:
        paper = parser.parse(path, None, None)
    except IngestError as exc:
        assert exc.reason in REASONS | {"timeout"}, exc
        return
    check_paper(paper, header + data)


# --- questions ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_assistant(tmp_path_factory):
    from conftest import make_settings

    from culture_rag import Assistant

    tmp = tmp_path_factory.mktemp("fuzzq")
    (tmp / "corpus").mkdir()
    (tmp / "corpus" / "p.txt").write_text("Cultural trade between Belarus and China grew under the Belt and Road.\n" * 3)
    assistant = Assistant(make_settings(tmp), embedder=HashEmbedder())
    assistant.build(tmp / "corpus")
    return assistant


@FAST
@given(question=st.one_of(st.text(max_size=3000), st.text(alphabet=st.characters(max_codepoint=0x3000), min_size=1990, max_size=2010)))
def test_any_question_gets_hits_or_a_clear_query_error(small_assistant, question):
    from culture_rag import QueryError

    try:
        hits = small_assistant.search(question, k=3)
    except QueryError as exc:
        assert "empty" in str(exc) or "limit" in str(exc), exc
        return
    assert len(hits) <= 3 and all(h.chunk.text for h in hits)
