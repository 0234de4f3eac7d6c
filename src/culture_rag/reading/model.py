"""The fitted weights: the sentence scorer (is this sentence evidence?), two logistic
regressions (does the best candidate answer the question at all? is a further sentence evidence
too?) and the selection constants, in one versioned JSON file
with its sha256 beside it. JSON, not pickle: the file is data, read by checking then parsing.
bench/quality/fit.py writes it from the train split; the same data gives the same file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from culture_rag.errors import CultureRagError
from culture_rag.files import file_sha256

FORMAT = "culture-rag-answerer/2"  # 2: a fitted keep model replaced keep_ratio and keep_min


@dataclass(frozen=True)
class Linear:
    """A standardized logistic regression: sigmoid(((x - mean) / scale) @ coef + intercept)."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != len(self.names):
            raise CultureRagError(f"the answerer's weights expect {len(self.names)} features, got {x.shape[-1]}; refit with bench/quality/fit.py")
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return z @ np.asarray(self.coef) + self.intercept

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))


@dataclass(frozen=True)
class Trees:
    """Gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier, exported as plain
    arrays): the logit is `baseline` plus each tree's leaf value for x. Numerical splits only;
    a missing value goes where the tree sent missing values when it was fitted."""

    names: tuple[str, ...]
    baseline: float
    feature: tuple[tuple[int, ...], ...]  # per tree, per node
    threshold: tuple[tuple[float, ...], ...]  # go left when x[feature] <= threshold
    left: tuple[tuple[int, ...], ...]
    right: tuple[tuple[int, ...], ...]
    missing_left: tuple[tuple[int, ...], ...]
    leaf: tuple[tuple[int, ...], ...]  # 1 for a leaf
    value: tuple[tuple[float, ...], ...]  # a leaf's value

    def logit(self, x: np.ndarray) -> np.ndarray:
        if x.shape[-1] != len(self.names):
            raise CultureRagError(f"the answerer's weights expect {len(self.names)} features, got {x.shape[-1]}; refit with bench/quality/fit.py")
        x = np.atleast_2d(x)
        out = np.full(len(x), self.baseline)
        rows = np.arange(len(x))
        for t in range(len(self.feature)):
            feature, threshold = np.asarray(self.feature[t]), np.asarray(self.threshold[t])
            left, right, missing = np.asarray(self.left[t]), np.asarray(self.right[t]), np.asarray(self.missing_left[t], bool)
            leaf, value = np.asarray(self.leaf[t], bool), np.asarray(self.value[t])
            node = np.zeros(len(x), np.int64)
            while not leaf[node].all():  # every row steps down until it stands on a leaf
                inner = ~leaf[node]
                n, r = node[inner], rows[inner]
                v = x[r, feature[n]]
                go_left = np.where(np.isnan(v), missing[n], v <= threshold[n])
                node[inner] = np.where(go_left, left[n], right[n])
            out += value[node]
        return out

    def probability(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))


@dataclass(frozen=True)
class AnswerModel:
    sentence: Linear | Trees  # P(a candidate sentence is gold evidence | its features)
    answerable: Linear  # P(the question is answered by the best candidates | their scores)
    decline_below: float  # decline when P(answerable) is below this
    keep: Linear  # P(a further sentence is evidence too | how it compares with the best; keep.KEEP_NAMES)
    keep_above: float  # a further sentence is quoted when its P(keep) is at least this
    max_sentences: int
    rerank_top: int  # candidates, by first-stage rank, the cross-encoder reads
    redundant_cosine: float = 0.9  # a sentence this close to a chosen one says it again
    fitted_on: str = ""  # what it was fitted on: split file, questions, commit

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> AnswerModel:
        try:
            raw = json.loads(text)
            if raw.pop("format") != FORMAT:
                raise ValueError(f"format is not {FORMAT}")
            raw["sentence"] = _scorer(raw["sentence"])
            for name in ("answerable", "keep"):
                raw[name] = Linear(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw[name].items()})
            return cls(**raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise CultureRagError(f"{where}: not answerer weights ({exc}); refit with bench/quality/fit.py") from None


def _tuples(v):
    return tuple(_tuples(i) for i in v) if isinstance(v, list) else v


def _scorer(raw: dict) -> Linear | Trees:
    fields = {k: _tuples(v) for k, v in raw.items()}
    return Trees(**fields) if "baseline" in fields else Linear(**fields)


def packaged_path() -> Path:
    return Path(str(resources.files("culture_rag") / "data" / "answerer.json"))


def load(path: Path | None = None) -> AnswerModel:
    """The weights at `path` (default: the packaged ones), after their sha256 matches the one
    written beside them."""
    path = Path(path) if path is not None else packaged_path()
    sidecar = path.with_name(path.name + ".sha256")
    try:
        expected = sidecar.read_text(encoding="ascii").split()[0]
    except (OSError, IndexError):
        raise CultureRagError(f"{sidecar}: missing; the answerer's weights are checked against it. Refit with bench/quality/fit.py") from None
    actual = file_sha256(path)
    if actual != expected:
        raise CultureRagError(f"{path}: sha256 {actual} does not match {sidecar} ({expected}); reinstall or refit with bench/quality/fit.py")
    return AnswerModel.from_json(path.read_text(encoding="utf-8"), str(path))


def save(model: AnswerModel, path: Path) -> str:
    """Write the weights and their sha256; returns the sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(model.to_json(), encoding="utf-8")
    sha = file_sha256(path)
    path.with_name(path.name + ".sha256").write_text(f"{sha}  {path.name}\n", encoding="ascii")
    return sha
