"""Text of scanned pages: PDFium renders a page whose text layer is empty, Tesseract reads it.

Tesseract is Debian's (`tesseract-ocr` and its language packs), called through pytesseract: one
`tesseract` process per call, so a crash or a hang on a hostile image costs that page (the
process is killed after `page_timeout_s`) and it inherits the parser's address-space limit.
Which language to read a page in is decided by Tesseract's script detection (OSD) on the same
rendering: one model per page reads Chinese better than all three at once, and faster
(bench/README.md, "OCR"). At 150 dpi OSD took English pages for Cyrillic.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

from culture_rag.errors import IngestError
from culture_rag.ingest.cleaning import has_real_text, word_chars
from culture_rag.ingest.pdf import PdfText, _passwords

log = logging.getLogger(__name__)

AUTO = "auto"
# What a script OSD names is read with. OSD takes some English pages for Cyrillic, and rus+eng
# reads English as well as eng does, so Cyrillic gets both; eng beside chi_sim misreads Chinese
# characters as Latin words, so Han gets chi_sim alone (which reads digits and Latin fine). The
# Chinese papers of the corpus are in simplified characters. (bench/README.md, "OCR".)
SCRIPT_LANGUAGES = {"Latin": "eng", "Han": "chi_sim", "Cyrillic": "rus+eng"}
FALLBACK_LANGUAGES = "eng+chi_sim+rus"  # when OSD finds too few characters to name a script
INSTALL = "apt-get install tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim tesseract-ocr-rus"
MIN_PAGE_WORD_CHARS = 20  # a page's text layer with fewer word characters is read by OCR
MAX_PIXELS = 40_000_000  # an A2 page at 300 dpi; a larger page is rendered coarser
MAX_SIDE_PX = 30_000  # Tesseract refuses images over 32767 pixels a side

_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


@dataclass(frozen=True)
class OcrOptions:
    """How scanned pages are read; `enabled=False` reports them as needing OCR instead."""

    enabled: bool = True
    languages: str = AUTO  # "auto" (script detection) or Tesseract's form, e.g. "eng+chi_sim"
    dpi: int = 300
    page_timeout_s: float = 60.0


@dataclass(frozen=True)
class OcrLine:
    """One line Tesseract read. Coordinates are PDF points from the page's top-left corner.
    `words` holds, for each word, where it ends in `text` and its left and right edge, so that
    a character offset within the line maps to a box (the line's top and bottom)."""

    text: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1
    words: tuple[tuple[int, float, float], ...]  # (end offset in text, x0, x1)
    new_paragraph: bool = False  # Tesseract starts a block or paragraph here


@dataclass(frozen=True)
class OcrPage:
    page: int  # 1-based
    language: str  # what Tesseract read it with
    seconds: float
    lines: tuple[OcrLine, ...]

    @property
    def text(self) -> str:
        return "".join(("\n\n" if ln.new_paragraph else "\n") * bool(i) + ln.text for i, ln in enumerate(self.lines))


def ocr_options(settings) -> OcrOptions:
    """The OCR fields of a Settings object."""
    return OcrOptions(settings.ocr, settings.ocr_languages, settings.ocr_dpi, settings.ocr_page_timeout_s)


def ocr_page_from_dict(raw: dict) -> OcrPage:
    """An OcrPage from `dataclasses.asdict` sent through JSON (the parser process's reply)."""
    lines = tuple(
        OcrLine(ln["text"], tuple(ln["box"]), tuple(tuple(w) for w in ln["words"]), ln.get("new_paragraph", False))
        for ln in raw["lines"]
    )
    return OcrPage(raw["page"], raw["language"], raw["seconds"], lines)


# --- which pages ------------------------------------------------------------------------------


def pages_to_read(doc, raw: PdfText) -> list[int]:
    """0-based pages whose text layer is empty or nearly so and that may hold text OCR can read:
    an image (a scan), or drawings with no text layer at all (outlined glyphs, fonts without a
    Unicode map). A page whose few words are text objects only ("Potato 7") would be read back
    as the same words, at a second a page."""
    out = []
    for i, text in enumerate(raw.pages):
        if i >= len(doc) or word_chars(text) >= MIN_PAGE_WORD_CHARS:
            continue
        kinds = _object_kinds(doc, i)
        if _IMAGE in kinds or (kinds and not text.strip()):
            out.append(i)
    return out


_IMAGE = 3  # FPDF_PAGEOBJ_IMAGE


def _object_kinds(doc, index: int) -> set[int]:
    import pypdfium2 as pdfium

    try:
        page = doc[index]
    except pdfium.PdfiumError:
        return set()
    try:
        return {obj.type for obj in page.get_objects(max_depth=3)}
    finally:
        page.close()


def _has_image(doc, index: int) -> bool:
    return _IMAGE in _object_kinds(doc, index)


# --- reading ----------------------------------------------------------------------------------


def read_scanned_pages(
    where,
    data: bytes,
    password: str | None,
    raw: PdfText,
    options: OcrOptions,
    announce: Callable[[int], None] | None = None,
) -> tuple[PdfText, tuple[OcrPage, ...]]:
    """`raw` with its nearly empty pages replaced by what OCR reads on them, and those pages.
    `announce(n)` is told how many pages will be read before the first one is, so that the
    parser's time limit can grow by a page budget each (PdfParser). Without Tesseract (or
    with OCR off) a document that is all scans raises IngestError `needs_ocr`."""
    doc = _open(data, password)
    if doc is None:
        return raw, ()  # pypdf read it; PDFium cannot render it
    try:
        wanted = pages_to_read(doc, raw)
        if not wanted:
            return raw, ()
        installed = installed_languages() if options.enabled and shutil.which("tesseract") else frozenset()
        problem = unavailable(options, installed)
        if problem:
            _refuse_if_all_scans(where, doc, raw, wanted, problem)
            return raw, ()
        if announce is not None:
            announce(len(wanted))
        read = [_read_page(where, doc, i, options, installed) for i in wanted]
    finally:
        doc.close()
    pages = list(raw.pages)
    kept = []
    for page in filter(None, read):
        if word_chars(page.text) > word_chars(pages[page.page - 1]):
            pages[page.page - 1] = page.text
            kept.append(page)
    failed = read.count(None)
    if not has_real_text("\n".join(pages)):
        if not failed:
            raise IngestError(
                where, "no_text", f"no text layer, and OCR found no words on its {len(read)} image or drawn page(s)"
            )
        raise IngestError(
            where,
            "ocr_failed",
            f"no text layer, and OCR failed or ran out of time (ocr_page_timeout_s={options.page_timeout_s:g}) on "
            f"{failed} of {len(read)} scanned page(s); the log names the error. If the file is fine, raise "
            "CULTURE_RAG_OCR_PAGE_TIMEOUT_S",
        )
    return PdfText(tuple(pages), raw.title, raw.author, run_in=raw.run_in, title_lines=raw.title_lines), tuple(kept)


def _open(data: bytes, password: str | None):
    import pypdfium2 as pdfium

    for candidate in _passwords(password):
        try:
            return pdfium.PdfDocument(data, password=candidate)
        except pdfium.PdfiumError:
            continue
    return None


def unavailable(options: OcrOptions, installed: frozenset[str]) -> str | None:
    """Why OCR cannot run with the `installed` language packs, or None when it can."""
    if not options.enabled:
        return "OCR is off (CULTURE_RAG_OCR=false); turn it on to read them"
    if not installed:
        return f"Tesseract is not installed; install it (`{INSTALL}`, or `make setup` as root), then build or add the file again"
    wanted = (FALLBACK_LANGUAGES if options.languages == AUTO else options.languages).split("+")
    missing = [lang for lang in wanted if lang not in installed]
    if options.languages == AUTO and len(missing) < len(wanted):
        return None  # script detection reads with the packs there are
    if missing:
        packs = " ".join("tesseract-ocr-" + lang.replace("_", "-") for lang in missing)
        return f"Tesseract has no {'+'.join(missing)} language data; install it (`apt-get install {packs}`)"
    return None


def installed_languages() -> frozenset[str]:
    """Tesseract's languages, from `tesseract --list-langs` itself: pytesseract imports pandas
    (1.2 s here), and this runs before the parser is told of the scanned pages, inside its plain
    parse budget (parse_timeout_s), which a one-page scan then outran."""
    try:
        listed = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.strip() for line in listed.stdout.splitlines()[1:] if line.strip())


def _refuse_if_all_scans(where, doc, raw: PdfText, wanted: list[int], problem: str) -> None:
    if has_real_text("\n".join(raw.pages)):
        log.warning("%s: %d page(s) without a text layer are not read: %s", where, len(wanted), problem)
        return
    scanned = [i for i in wanted if _has_image(doc, i)]
    if scanned:
        raise IngestError(
            where,
            "needs_ocr",
            f"no text layer: {len(scanned)} scanned or image-only page(s) need OCR; {problem}",
        )


def _read_page(where, doc, index: int, options: OcrOptions, installed: frozenset[str]) -> OcrPage | None:
    """One page by OCR, or None when Tesseract fails or runs out of time on it (that page only).
    Script detection and reading share the page's budget, `page_timeout_s`."""
    import pytesseract

    started = time.perf_counter()
    page = doc[index]
    try:
        scale = _scale(page, options.dpi)
        image = page.render(scale=scale, grayscale=True).to_pil()
    finally:
        page.close()
    try:
        language = options.languages
        if language == AUTO:
            language = _detect_language(image, installed, options.page_timeout_s)
        left = options.page_timeout_s - (time.perf_counter() - started)
        if left <= 0:
            raise RuntimeError("Tesseract process timeout (in script detection)")
        table = pytesseract.image_to_data(image, lang=language, timeout=left, output_type=pytesseract.Output.DICT)
    except (RuntimeError, pytesseract.TesseractError, OSError) as exc:  # RuntimeError: pytesseract's timeout
        log.warning("%s: OCR of page %d failed: %s", where, index + 1, str(exc)[:200])
        return None
    return OcrPage(index + 1, language, round(time.perf_counter() - started, 3), _lines(table, 1.0 / scale))


def _scale(page, dpi: int) -> float:
    width, height = page.get_size()
    scale = dpi / 72.0
    if width * height * scale * scale > MAX_PIXELS:
        scale = (MAX_PIXELS / (width * height)) ** 0.5
    return max(min(scale, MAX_SIDE_PX / max(width, height, 1.0)), 1e-3)


def _detect_language(image, installed: frozenset[str], timeout_s: float) -> str:
    """The languages for the page's script by Tesseract's script detection (OSD), else all
    three; only installed language packs are named."""
    import pytesseract

    fallback = "+".join(lang for lang in FALLBACK_LANGUAGES.split("+") if lang in installed) or "eng"
    if "osd" not in installed:
        return fallback
    try:
        osd = pytesseract.image_to_osd(image, timeout=timeout_s, output_type=pytesseract.Output.DICT)
    except pytesseract.TesseractError:  # "Too few characters": a picture, a stamp, a blank page
        return fallback
    languages = SCRIPT_LANGUAGES.get(str(osd.get("script", "")), fallback)
    return "+".join(lang for lang in languages.split("+") if lang in installed) or fallback


def _lines(table: dict, pt_per_px: float) -> tuple[OcrLine, ...]:
    """Tesseract's words grouped into its lines; Chinese and Japanese characters are joined
    without the spaces Tesseract puts between them."""
    grouped: dict[tuple[int, int, int], list[tuple[str, int, int, int, int]]] = {}
    for i, word in enumerate(table["text"]):
        word = (word or "").strip()
        if not word or float(table["conf"][i]) < 0:
            continue
        key = (table["block_num"][i], table["par_num"][i], table["line_num"][i])
        left, top = table["left"][i], table["top"][i]
        grouped.setdefault(key, []).append((word, left, top, left + table["width"][i], top + table["height"][i]))
    lines = []
    previous = None
    for key, words in grouped.items():
        text, ends = "", []
        for word, *_ in words:
            if text and not (_CJK.match(text[-1]) and _CJK.match(word[0])):
                text += " "
            text += word
            ends.append(len(text))
        x0, y0 = min(w[1] for w in words), min(w[2] for w in words)
        x1, y1 = max(w[3] for w in words), max(w[4] for w in words)

        def pt(v: float) -> float:
            return round(v * pt_per_px, 1)

        box = (pt(x0), pt(y0), pt(x1), pt(y1))
        words_at = tuple((end, pt(w[1]), pt(w[3])) for end, w in zip(ends, words))
        lines.append(OcrLine(text, box, words_at, previous is not None and key[:2] != previous))
        previous = key[:2]
    return tuple(lines)
