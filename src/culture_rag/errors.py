"""The project's error types. Every message names the file or field and says what to do."""

from __future__ import annotations

from pathlib import Path


class CultureRagError(Exception):
    """Base class: the CLI and the app show these messages to users as they are."""


class IngestError(CultureRagError):
    """A paper could not be read. `reason` is a short machine-readable kind."""

    def __init__(self, path: str | Path, reason: str, detail: str) -> None:
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class EncryptedPdfError(IngestError):
    def __init__(self, path: str | Path, wrong_password: bool = False) -> None:
        detail = (
            "the password does not open this encrypted PDF; check it and try again"
            if wrong_password
            else "encrypted PDF; give the password (`culture-rag add FILE --password PASSWORD`, or the password field in the app)"
        )
        super().__init__(path, "encrypted", detail)


class IndexLoadError(CultureRagError):
    """The index on disk is missing, damaged or made with other settings."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")


class IndexModelMismatch(IndexLoadError):
    """The index was built with another embedding model or passage backend; `build` re-embeds."""


class IndexWriteError(CultureRagError):
    """Writing a new index generation failed; the previous one is still served."""


class ModelError(CultureRagError):
    """An embedding or generative model could not be loaded or called."""


class ClusterError(CultureRagError):
    """A build on a Ray cluster (`build --ray`) could not reach the cluster or failed on it."""


class QueryError(CultureRagError):
    """The question cannot be answered as given (empty, too long, empty index)."""


class PaperNotFoundError(CultureRagError):
    def __init__(self, paper_id: str) -> None:
        self.paper_id = paper_id
        super().__init__(f"no paper with id {paper_id!r} in the index; `culture-rag papers` lists the ids")


class UsersFileError(CultureRagError):
    """users.toml (the accounts of `serve --auth`) is missing, malformed or holds a plain-text password."""

    def __init__(self, path: str | Path, detail: str, entry: str | None = None) -> None:
        self.path = str(path)
        self.entry = entry
        self.detail = detail
        where = f"{self.path}, entry {entry!r}" if entry else self.path
        super().__init__(f"{where}: {detail}")


class ExposureError(CultureRagError):
    """The server would be reachable from other machines without logins."""


class FeedbackError(CultureRagError):
    """A feedback record is malformed (unknown kind, missing question, too long)."""


class SourceFileError(CultureRagError):
    """The file a paper was indexed from is missing, changed or unreadable."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = str(path)
        self.detail = detail
        super().__init__(f"{self.path}: {detail}")
