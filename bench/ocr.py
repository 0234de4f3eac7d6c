"""OCR of scanned pages: what becomes of the robustness PDFs without extractable text, and the
time per page; with --compare, render resolution, languages and Tesseract's threads side by side
on pages whose text is known.

Part 1 finds the files that have no extractable text without OCR (every PDF of
../shared/pdfs/robustness read as before), then reads each through the contained parser with
OCR (the default settings) and with OCR off, and times every page OCR reads.

Part 2 (--compare) reads the same pages with each setting in turn, page by page, so that the
machine's changing load hits every setting alike: born-digital arXiv pages rendered to pixels
(the reference is their text layer), pages of a scanned book (the reference is its own OCR
layer, which has errors of its own) and a scanned Chinese page (the reference is its text as
read off the page by eye). Recall: the share of the reference's words (Latin: lower-case words
of 3+ letters; Chinese: characters) that the OCR text holds, counted with multiplicity.
"""

from __future__ import annotations

import os
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import common
from common import SHARED, row

ROBUSTNESS = SHARED / "pdfs" / "robustness"
ARAGOG = SHARED / "pdfs" / "aragog"
BOOK = ROBUSTNESS / "image_or_scanned" / "Seige_of_Vicksburg_Sample_OCR.pdf"
CHINESE = ROBUSTNESS / "corrupt" / "malformed-from-issue-932.pdf"
# The Chinese page as it reads (the stamp's ring of characters left out).
CHINESE_REFERENCE = (
    "重庆万州经济技术开发（集团）有限公司2021年度第二期债务融资工具定向募集说明书"
    "（本页为《重庆万州经济技术开发（集团）有限公司2021年度第二期债务融资工具定向募集说明书》之签字页，本页无正文）"
    "重庆万州经济技术开发（集团）有限公司（盖章）2021年3月31日"
)
COMPARED = (  # (dpi, languages, OMP_THREAD_LIMIT)
    (300, "auto", "1"),
    (200, "auto", "1"),
    (300, "eng+chi_sim+rus", "1"),
    (300, "eng", "1"),
    (300, "auto", ""),  # Tesseract's own OpenMP threads (every core)
)


def without_text() -> list[Path]:
    from culture_rag.errors import IngestError
    from culture_rag.ingest.papers import read_paper

    found = []
    for path in sorted(ROBUSTNESS.glob("*/*.pdf")):
        try:
            read_paper(path)
        except IngestError as exc:
            if exc.reason == "no_text":
                found.append(path)
    return found


def outcome(parser, path: Path) -> tuple[str, float, tuple[int, ...]]:
    from culture_rag.errors import IngestError

    start = time.perf_counter()
    try:
        paper = parser.parse(path, None, None)
    except IngestError as exc:
        return exc.reason, time.perf_counter() - start, ()
    return "indexed", time.perf_counter() - start, paper.ocr_pages


def page_times(path: Path, options) -> list[tuple[int, float, str, int]]:
    """(page, seconds, language, word characters read) for each page OCR reads, in this process."""
    import pypdfium2 as pdfium

    from culture_rag.ingest import ocr
    from culture_rag.ingest.pdf import pdfium_text

    data = path.read_bytes()
    raw = pdfium_text(path, data, None)
    doc = pdfium.PdfDocument(data)
    installed = ocr.installed_languages()
    out = []
    try:
        for index in ocr.pages_to_read(doc, raw):
            start = time.perf_counter()
            page = ocr._read_page(path, doc, index, options, installed)
            seconds = time.perf_counter() - start
            out.append((index + 1, seconds, page.language if page else "failed", ocr.word_chars(page.text) if page else 0))
    finally:
        doc.close()
    return out


def part1(rows: list) -> None:
    from culture_rag.ingest.build import PdfParser
    from culture_rag.ingest.ocr import OcrOptions
    from culture_rag.settings import Settings

    settings = Settings()
    options = OcrOptions(True, settings.ocr_languages, settings.ocr_dpi, settings.ocr_page_timeout_s)
    files = without_text()
    print(f"\n{len(files)} files without extractable text before OCR (ocr_dpi={options.dpi}, ocr_languages={options.languages})")
    print("| file | pages OCR read | with OCR | OCR pages kept | file time (s) | OCR off | per page (s) | language | word chars read |")
    print("|---|--:|---|---|--:|---|--:|---|--:|")
    all_pages: list[float] = []
    outcomes = Counter()
    os.environ["OMP_THREAD_LIMIT"] = "1"  # as in the parser process (ingest._worker)
    with PdfParser(settings.parse_timeout_s, settings.parse_memory_mb, options) as on, PdfParser(
        settings.parse_timeout_s, settings.parse_memory_mb, OcrOptions(enabled=False)
    ) as off:
        on.start()
        off.start()
        for path in files:
            status, seconds, kept = outcome(on, path)
            status_off, _, _ = outcome(off, path)
            timed = page_times(path, options)
            all_pages += [t for _, t, _, _ in timed]
            outcomes[status] += 1
            per_page = f"{statistics.median([t for _, t, _, _ in timed]):.2f}" if timed else "-"
            languages = ",".join(sorted({lang for _, _, lang, _ in timed})) or "-"
            chars = sum(c for *_, c in timed)
            print(
                f"| {path.parent.name}/{path.name} | {len(timed)} | {status} | {list(kept) or '-'} | {seconds:.2f} | "
                f"{status_off} | {per_page} | {languages} | {chars} |",
                flush=True,
            )
    median = statistics.median(all_pages) if all_pages else 0.0
    print(f"\npages OCR read: {len(all_pages)}; seconds per page: median {median:.2f}, max {max(all_pages, default=0):.2f}")
    print("outcomes with OCR: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    rows.append(row("ocr", "robustness files indexed by OCR", outcomes["indexed"], "files"))
    rows.append(row("ocr", "seconds per OCR page (robustness, median)", round(median, 2), "s"))


# --- part 2 ---------------------------------------------------------------------------------


def _latin(text: str) -> Counter:
    return Counter(re.findall(r"[a-z]{3,}", text.lower()))


def _han(text: str) -> Counter:
    return Counter(re.findall(r"[\u4e00-\u9fff]", text))


def recall(reference: str, text: str, han: bool) -> float:
    count = _han if han else _latin
    ref, got = count(reference), count(text)
    return sum((ref & got).values()) / max(1, sum(ref.values()))


def compare_pages() -> list[tuple[str, Path, int, str, bool]]:
    """(label, file, 0-based page, reference text, is Chinese)."""
    import pypdfium2 as pdfium

    pages = []
    for name, index in (("bert.pdf", 0), ("hellaswag.pdf", 2), ("PAL.pdf", 3)):
        doc = pdfium.PdfDocument(ARAGOG / name)
        pages.append((f"{name} p{index + 1}", ARAGOG / name, index, doc[index].get_textpage().get_text_bounded(), False))
    book = pdfium.PdfDocument(BOOK)
    for index in (0, 1, 3):
        pages.append((f"{BOOK.name[:14]} p{index + 1}", BOOK, index, book[index].get_textpage().get_text_bounded(), False))
    pages.append((f"{CHINESE.name} p1", CHINESE, 0, CHINESE_REFERENCE, True))
    return pages


def part2(rows: list) -> None:
    import pypdfium2 as pdfium

    from culture_rag.ingest import ocr
    from culture_rag.ingest.ocr import OcrOptions

    installed = ocr.installed_languages()
    pages = compare_pages()
    results: dict[tuple, list[tuple[str, float, float]]] = {c: [] for c in COMPARED}
    for label, path, index, reference, han in pages:
        doc = pdfium.PdfDocument(path)
        for dpi, languages, threads in COMPARED:
            if threads:
                os.environ["OMP_THREAD_LIMIT"] = threads
            else:
                os.environ.pop("OMP_THREAD_LIMIT", None)
            start = time.perf_counter()
            page = ocr._read_page(path, doc, index, OcrOptions(True, languages, dpi, 300.0), installed)
            seconds = time.perf_counter() - start
            text = page.text if page else ""
            results[(dpi, languages, threads)].append((label, seconds, recall(reference, text, han)))
        doc.close()
    os.environ["OMP_THREAD_LIMIT"] = "1"
    print("\nsettings side by side (one page after another, each setting in turn)")
    print("| dpi | languages | OMP threads | median s/page | Latin pages: mean recall | Chinese page: recall, s | pages (recall) |")
    print("|--:|---|---|--:|--:|--:|---|")
    for (dpi, languages, threads), got in results.items():
        latin = [r for label, _, r in got if not label.startswith(CHINESE.name)]
        chinese = next((r, s) for label, s, r in got if label.startswith(CHINESE.name))
        median = statistics.median(s for _, s, _ in got)
        detail = ", ".join(f"{label} {r:.3f}" for label, _, r in got)
        print(
            f"| {dpi} | {languages} | {threads or 'all'} | {median:.2f} | {statistics.mean(latin):.3f} | "
            f"{chinese[0]:.3f}, {chinese[1]:.2f} | {detail} |",
            flush=True,
        )
        rows.append(row("ocr", f"s/page {dpi}dpi {languages} omp={threads or 'all'}", round(median, 2), "s"))


def main() -> None:
    parser = common.args_parser(__doc__)
    parser.add_argument("--compare", action="store_true", help="also compare dpi, languages and threads (a few minutes)")
    args = parser.parse_args()
    common.quiet()
    common.header("OCR of scanned pages (bench/ocr.py)")
    import pytesseract

    print(f"tesseract {pytesseract.get_tesseract_version()}, pytesseract {common._version('pytesseract')}")
    rows: list = []
    part1(rows)
    if args.compare:
        part2(rows)
    common.finish(rows, args.json, show=False)


if __name__ == "__main__":
    main()
