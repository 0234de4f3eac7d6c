"""Text of a PDF, page by page, from two readers.

PDFium (pypdfium2, Chrome's PDF engine) reads first: it is C++, 10-40x faster than pypdf on
these papers (bench/indexing.py), which made parsing the largest cost of indexing after the
model. pypdf reads what PDFium refuses or finds no text in: the two repair different damage (a
trailer whose closing ">>" lost a byte stops PDFium, not pypdf; tests/test_papers.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from culture_rag.errors import EncryptedPdfError, IngestError
from culture_rag.ingest import fonts

REDO = "; re-download it or export it again from its source"


@dataclass(frozen=True)
class PdfText:
    """Raw (uncleaned) text of each page, and the /Info title and author as written."""

    pages: tuple[str, ...]
    title: str = ""
    author: str = ""
    reader: str = ""  # "pdfium" when the pages are PDFium's text, whose characters the source view finds again
    run_in: tuple[tuple[str, ...], ...] = ()  # per page, its run-in headings (fonts.run_in_heads); PDFium only
    title_lines: tuple[str, ...] = ()  # the first page's lines in its largest font (fonts.largest_font_lines)


def _passwords(password: str | None) -> list[str | None]:
    # An empty user password is common (r2-empty-password): try it before asking the user.
    return ([password] if password is not None else []) + [None]


# --- PDFium -----------------------------------------------------------------------------------


def pdfium_text(where: str | Path, data: bytes, password: str | None) -> PdfText:
    """Raises IngestError when PDFium cannot open the file, whatever the cause: its error codes
    are process-wide and go stale (a corrupt file read after an encrypted one reported "password"),
    so pypdf, which reads next, names the cause. A page PDFium cannot read costs that page only."""
    import pypdfium2 as pdfium

    for candidate in _passwords(password):
        try:
            doc = pdfium.PdfDocument(data, password=candidate)
            break
        except pdfium.PdfiumError as exc:
            error = exc
    else:
        raise IngestError(where, "corrupt", f"PDFium cannot open it ({error})")
    try:
        meta = doc.get_metadata_dict(skip_empty=True)
        read = [_pdfium_page(doc, i, title=i < TITLE_PAGES) for i in range(len(doc))]
        pages = tuple(text for text, _, _ in read)
        title_lines = next((lines for text, _, lines in read if text.strip()), ())
        return PdfText(pages, meta.get("Title", ""), meta.get("Author", ""), "pdfium", tuple(heads for _, heads, _ in read), title_lines)
    finally:
        doc.close()


TITLE_PAGES = 2  # pages whose largest font may be the title: the first, or the one after a cover


def _pdfium_page(doc, index: int, title: bool) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The page's text, its run-in headings and, with `title`, its largest-font lines (fonts.py)."""
    import pypdfium2 as pdfium

    try:
        page = doc[index]
        textpage = page.get_textpage()
    except pdfium.PdfiumError:
        return "", (), ()
    try:
        # PDFium ends lines with \r\n and marks a line-end hyphen it removed with \x02
        text = textpage.get_text_bounded().replace("\r\n", "\n").replace("\r", "\n").replace("\x02", "")
        chars = fonts.page_chars(textpage)
        return text, fonts.run_in_heads(textpage, chars), fonts.largest_font_lines(textpage, chars) if title else ()
    finally:
        textpage.close()
        page.close()


# --- pypdf ------------------------------------------------------------------------------------


def pypdf_text(where: str | Path, data: bytes, password: str | None) -> PdfText:
    from pypdf import PdfReader
    from pypdf.errors import (
        DependencyError,
        FileNotDecryptedError,
        PdfReadError,
        PyPdfError,
    )

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            _pypdf_decrypt(reader, where, password)
        pages = _pypdf_pages(reader)
    except IngestError:
        raise
    except FileNotDecryptedError as exc:
        raise EncryptedPdfError(where) from exc
    except DependencyError as exc:
        raise IngestError(where, "dependency", f"cannot decrypt: {exc}; install the `cryptography` package") from exc
    except MemoryError as exc:
        raise IngestError(
            where,
            "too_large",
            "parsing needed more memory than allowed (parse_memory_mb); the PDF may be a decompression bomb. "
            "If you trust it, raise CULTURE_RAG_PARSE_MEMORY_MB",
        ) from exc
    except (PyPdfError, PdfReadError) as exc:
        raise IngestError(where, "corrupt", f"corrupt PDF ({type(exc).__name__}: {exc}){REDO}") from exc
    except RecursionError as exc:
        raise IngestError(where, "corrupt", f"corrupt PDF (RecursionError: nesting too deep){REDO}") from exc
    except Exception as exc:  # pypdf raises plain ValueError/KeyError/... on damaged input
        raise IngestError(where, "corrupt", f"corrupt PDF ({type(exc).__name__}: {exc}){REDO}") from exc
    title, author = _pypdf_info(reader)
    return PdfText(tuple(pages), title, author)


def _pypdf_pages(reader) -> list[str]:
    """A damaged page costs that page only; the document counts as corrupt when no page yields
    text and some page failed."""
    from pypdf.errors import DependencyError, FileNotDecryptedError

    texts: list[str] = []
    first_error: Exception | None = None
    for page in reader.pages:
        try:
            texts.append(page.extract_text() or "")
        except (MemoryError, DependencyError, FileNotDecryptedError):
            raise
        except Exception as exc:  # noqa: BLE001  pypdf's errors on a broken page are of every type
            first_error = first_error or exc
            texts.append("")
    if first_error is not None and not any(t.strip() for t in texts):
        raise first_error
    return texts


def _pypdf_decrypt(reader, where, password: str | None) -> None:
    from pypdf import PasswordType

    for candidate in _passwords(password):
        if reader.decrypt(candidate or "") != PasswordType.NOT_DECRYPTED:
            return
    raise EncryptedPdfError(where, wrong_password=password is not None)


def _pypdf_info(reader) -> tuple[str, str]:
    try:
        info = reader.metadata
        return (str(info.title or ""), str(info.author or "")) if info else ("", "")
    except Exception:  # noqa: BLE001  a damaged /Info dictionary costs the metadata, not the paper
        return "", ""


# --- PDFium character indices (source view) ---------------------------------------------------

# How far ahead a character of the bounded text is looked for in the page's character stream:
# the stream also holds characters the bounded text leaves out (generated line breaks, NULs,
# glyphs outside the crop box), a few at a time.
_LOOKAHEAD = 16


def page_char_trace(page) -> tuple[str, list[int]] | None:
    """`_pdfium_page`'s text of an open page, with each character's PDFium char index (-1: none
    found). The bounded text (what is indexed) is the character stream less a few characters
    (generated line breaks, NULs, glyphs outside the crop box): equal stretches are matched whole,
    and at a difference the next character is looked for a few characters ahead."""
    import pypdfium2 as pdfium

    try:
        textpage = page.get_textpage()
    except pdfium.PdfiumError:
        return None
    try:
        bounded = textpage.get_text_bounded()
        stream = fonts.page_chars(textpage)
    finally:
        textpage.close()
    found = _subsequence(bounded, stream)
    # as _pdfium_page: \r\n and \r become \n, \x02 (a hyphen PDFium removed) goes
    text, chars = [], []
    for i, ch in enumerate(bounded):
        if ch == "\x02" or (ch == "\r" and bounded[i + 1 : i + 2] == "\n"):
            continue
        text.append("\n" if ch == "\r" else ch)
        chars.append(found[i])
    return "".join(text), chars


def _subsequence(short: str, long: str) -> list[int]:
    """For each character of `short`, its index in `long`, which holds it with a few extra
    characters here and there (-1 where a character is not found nearby)."""
    out: list[int] = []
    i = j = 0
    while i < len(short):
        n = _common_prefix(short, i, long, j)
        out.extend(range(j, j + n))
        i, j = i + n, j + n
        if i >= len(short):
            break
        k = long.find(short[i], j, j + _LOOKAHEAD)
        out.append(k)
        i, j = i + 1, (k + 1 if k >= 0 else j)
    return out


def _common_prefix(a: str, i: int, b: str, j: int) -> int:
    """Length of the common prefix of a[i:] and b[j:], by bisection on slice comparisons."""
    lo, hi = 0, min(len(a) - i, len(b) - j)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[i : i + mid] == b[j : j + mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
