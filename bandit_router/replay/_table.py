"""Full-information outcome tables: every model's score and cost on every prompt, and readers.

A replay needs, for each prompt, the outcome of *every* model (not only the one a production
router happened to call): then any routing policy can be replayed offline and its regret
measured exactly. This module holds that table (:class:`OutcomeTable`) and reads it from

* the documented outcome CSV format (:func:`read_outcomes`; the embedded RouterBench table
  is in it, and so can your own logs be),
* RouterBench's 0-shot CSVs as RouterDC distributes them (:func:`read_routerbench`),
* FrugalGPT's per-query results as OptLLM distributes them (:func:`read_frugalgpt`).

Every reading problem raises :class:`DatasetError`, whose message is one line naming the file
and the problem.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Final

__all__ = [
    "DATASETS",
    "DatasetError",
    "OutcomeTable",
    "load_dataset",
    "read_frugalgpt",
    "read_outcomes",
    "read_routerbench",
    "write_outcomes",
]

#: The datasets embedded in the package, by name (``load_dataset(name)``).
DATASETS: Final = {"routerbench": "routerbench.csv.gz"}

#: Columns of the outcome CSV format, the required ones first.
REQUIRED_COLUMNS: Final = ("prompt_id", "model", "score")
OPTIONAL_COLUMNS: Final = ("cost", "task")

# RouterBench's fixed (non-model) columns; every other column without "|" is a model's score.
_ROUTERBENCH_FIXED: Final = frozenset(
    {"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
)


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or malformed.

    Attributes:
        path: The file (or folder) at fault.
        problem: What is wrong with it, in a few words.
    """

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(problem.split())  # one line, always
        super().__init__(f"{self.path}: {self.problem}")


@dataclass(frozen=True, eq=False)
class OutcomeTable:
    """Every model's score and cost on every prompt (a full-information log).

    Row ``i`` is prompt ``prompt_ids[i]``; column ``j`` is model ``models[j]``.

    Attributes:
        name: A short name for reports (``"routerbench"``, a file name ...).
        models: The models (the arms of a replay), in order.
        prompt_ids: One id per prompt, unique.
        tasks: Each prompt's task or category (``""`` when unknown).
        scores: ``scores[i][j]``: model j's quality on prompt i, in [0, 1].
        costs: ``costs[i][j]``: what model j's call on prompt i cost (USD, >= 0).
        dropped: Prompts left out when reading because some model's outcome was missing.
        source: Where the data comes from (attribution), one line per source.
        cost_scale: The cost that counts as 1 in rewards: the largest mean cost of a model over
            the table as read (kept by :meth:`subset`, so a part of a table is rewarded like the
            whole), or 1.0 when every cost is 0.

    Raises:
        DatasetError: If the shapes disagree or a value is out of range.
    """

    name: str
    models: tuple[str, ...]
    prompt_ids: tuple[str, ...]
    tasks: tuple[str, ...]
    scores: tuple[tuple[float, ...], ...]
    costs: tuple[tuple[float, ...], ...]
    dropped: int = 0
    source: str = ""
    cost_scale: float = field(default=0.0)

    def __post_init__(self) -> None:
        n, k = len(self.prompt_ids), len(self.models)
        if k == 0:
            raise DatasetError(self.name, "no models")
        if n == 0:
            raise DatasetError(self.name, "no prompt has an outcome for every model")
        if len(set(self.models)) != k:
            raise DatasetError(self.name, f"duplicate model names in {list(self.models)}")
        if len(set(self.prompt_ids)) != n:
            raise DatasetError(self.name, "duplicate prompt ids")
        if len(self.tasks) != n or len(self.scores) != n or len(self.costs) != n:
            raise DatasetError(self.name, "prompt ids, tasks, scores and costs differ in length")
        for i in range(n):
            if len(self.scores[i]) != k or len(self.costs[i]) != k:
                raise DatasetError(self.name, f"prompt {self.prompt_ids[i]!r} lacks a model")
        if not self.cost_scale:
            means = self.mean_costs()
            object.__setattr__(self, "cost_scale", max(means) or 1.0)
        elif not (math.isfinite(self.cost_scale) and self.cost_scale > 0):
            raise DatasetError(self.name, f"cost_scale must be > 0, got {self.cost_scale!r}")

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def mean_scores(self) -> list[float]:
        """Return each model's mean score over the table."""
        n = len(self.scores)
        return [math.fsum(row[j] for row in self.scores) / n for j in range(len(self.models))]

    def mean_costs(self) -> list[float]:
        """Return each model's mean cost per call over the table."""
        n = len(self.costs)
        return [math.fsum(row[j] for row in self.costs) / n for j in range(len(self.models))]

    def rewards(self, lam: float) -> list[list[float]]:
        """Return every cell's reward for the trade-off ``lam``, normalised into [0, 1].

        ``r = score - lam * cost / cost_scale``, then ``(r + lam) / (1 + lam)``: the reward of
        the replay benchmarks (``../shared/tools/reference_replay.py``). A call dearer than
        ``cost_scale`` can fall below 0; these values are reported as they are and only clipped
        where a router must learn them.
        """
        if not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {lam!r}")
        cs = self.cost_scale
        return [
            [((s - lam * c / cs) + lam) / (1 + lam) for s, c in zip(srow, crow, strict=True)]
            for srow, crow in zip(self.scores, self.costs, strict=True)
        ]

    def subset(self, rows: Iterable[int], name: str | None = None) -> OutcomeTable:
        """Return the table restricted to ``rows`` (in that order), keeping ``cost_scale``."""
        keep = list(rows)
        return OutcomeTable(
            name=self.name if name is None else name,
            models=self.models,
            prompt_ids=tuple(self.prompt_ids[i] for i in keep),
            tasks=tuple(self.tasks[i] for i in keep),
            scores=tuple(self.scores[i] for i in keep),
            costs=tuple(self.costs[i] for i in keep),
            dropped=self.dropped,
            source=self.source,
            cost_scale=self.cost_scale,
        )

    def task_names(self) -> list[str]:
        """Return the distinct tasks in order of first appearance."""
        return list(dict.fromkeys(self.tasks))


# --- reading -------------------------------------------------------------------------------


@contextmanager
def _open_text(path: Path) -> Iterator[IO[str]]:
    """Open a CSV file (gzip-compressed if it ends in .gz) as text, or raise DatasetError."""
    if path.is_dir():
        raise DatasetError(path, "is a folder, expected a CSV file")
    with ExitStack() as stack:
        try:
            binary: IO[bytes] = stack.enter_context(path.open("rb"))
        except FileNotFoundError:
            raise DatasetError(path, "no such file") from None
        except OSError as exc:
            raise DatasetError(path, f"cannot be read ({exc.strerror or exc})") from None
        source: IO[bytes] | gzip.GzipFile = binary
        if path.suffix == ".gz":
            source = stack.enter_context(gzip.GzipFile(fileobj=binary, mode="rb"))
        text = stack.enter_context(io.TextIOWrapper(source, encoding="utf-8", newline=""))
        try:
            yield text
        except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as exc:
            raise DatasetError(
                path, f"cannot be read as text ({type(exc).__name__}: {exc})"
            ) from None
        except csv.Error as exc:
            raise DatasetError(path, f"is not a valid CSV file ({exc})") from None


@contextmanager
def _large_fields() -> Iterator[None]:
    """Allow huge CSV fields (RouterBench keeps whole prompts and answers in its cells)."""
    old = csv.field_size_limit()
    csv.field_size_limit(2**31 - 1)
    try:
        yield
    finally:
        csv.field_size_limit(old)


def _number(path: Path, line: int, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(
            path, f"line {line}: column {column!r} is not a number: {text!r}"
        ) from None
    if not math.isfinite(value):
        raise DatasetError(path, f"line {line}: column {column!r} is not finite: {text!r}")
    return value


def _score(path: Path, line: int, column: str, text: str) -> float:
    v = _number(path, line, column, text)
    if not 0.0 <= v <= 1.0:
        raise DatasetError(path, f"line {line}: score {column!r} must lie in [0, 1], got {text!r}")
    return v


def _cost(path: Path, line: int, column: str, text: str) -> float:
    v = _number(path, line, column, text)
    if v < 0:
        raise DatasetError(path, f"line {line}: cost {column!r} must be >= 0, got {text!r}")
    return v


def _header_lines(f: IO[str]) -> tuple[list[str], Iterator[str]]:
    """Split leading ``#`` comment lines (attribution) from the CSV text that follows."""
    comments: list[str] = []
    for line in f:
        if line.startswith("#"):
            comments.append(line[1:].strip())
            continue
        rest = _chain(line, f)
        return comments, rest
    return comments, iter(())


def _chain(first: str, rest: Iterable[str]) -> Iterator[str]:
    yield first
    yield from rest


def read_outcomes(path: str | os.PathLike[str], *, name: str | None = None) -> OutcomeTable:
    """Read an outcome table in the documented CSV format (optionally gzip-compressed).

    The format, one row per (prompt, model) call::

        # optional comment lines first: attribution, notes (kept as the table's source)
        prompt_id,model,score,cost,task
        q1,gpt-4o,1,0.0031,math
        q1,gpt-4o-mini,0,0.0002,math
        ...

    * ``prompt_id``, ``model``, ``score`` are required; ``score`` is the quality in [0, 1].
    * ``cost`` (>= 0, e.g. USD; default 0) and ``task`` (default ``""``) are optional; other
      columns are ignored.
    * Prompts and models keep the order in which they first appear. Each (prompt, model)
      pair appears at most once; a prompt lacking some model's row is left out (counted in
      ``dropped``). A prompt keeps one task.

    Args:
        path: The file; ``.gz`` files are decompressed.
        name: The table's name (default: the file name without extensions).

    Returns:
        The table.

    Raises:
        DatasetError: If the file is missing or malformed; the message names the file, the
            line and the problem.
    """
    p = Path(path)
    prompts: dict[str, dict[str, tuple[float, float]]] = {}
    tasks: dict[str, str] = {}
    models: dict[str, None] = {}
    with _open_text(p) as f:
        comments, lines = _header_lines(f)
        reader = csv.DictReader(lines)
        header = reader.fieldnames
        if not header:
            raise DatasetError(p, "is empty (no header line)")
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DatasetError(
                p,
                f"missing column(s) {', '.join(missing)}; the header is {','.join(header)} "
                f"(expected prompt_id,model,score[,cost][,task])",
            )
        has_cost, has_task = "cost" in header, "task" in header
        for row in reader:
            line = reader.line_num + len(comments)
            if None in row or any(v is None for v in row.values()):
                raise DatasetError(p, f"line {line}: wrong number of fields")
            pid, model = row["prompt_id"], row["model"]
            if not pid or not model:
                raise DatasetError(p, f"line {line}: empty prompt_id or model")
            score = _score(p, line, "score", row["score"])
            cost = _cost(p, line, "cost", row["cost"]) if has_cost and row["cost"] != "" else 0.0
            task = row["task"] if has_task else ""
            cells = prompts.setdefault(pid, {})
            if model in cells:
                raise DatasetError(
                    p, f"line {line}: second row for prompt {pid!r}, model {model!r}"
                )
            if tasks.setdefault(pid, task) != task:
                raise DatasetError(
                    p, f"line {line}: prompt {pid!r} has two tasks, {tasks[pid]!r} and {task!r}"
                )
            cells[model] = (score, cost)
            models[model] = None
    if not models:
        raise DatasetError(p, "has a header but no rows")
    names = tuple(models)
    complete = [pid for pid, cells in prompts.items() if len(cells) == len(names)]
    if not complete:
        raise DatasetError(p, "no prompt has an outcome for every model")
    return OutcomeTable(
        name=name or p.name.split(".")[0],
        models=names,
        prompt_ids=tuple(complete),
        tasks=tuple(tasks[pid] for pid in complete),
        scores=tuple(tuple(prompts[pid][m][0] for m in names) for pid in complete),
        costs=tuple(tuple(prompts[pid][m][1] for m in names) for pid in complete),
        dropped=len(prompts) - len(complete),
        source="\n".join(comments),
    )


def write_outcomes(table: OutcomeTable, path: str | os.PathLike[str]) -> None:
    """Write ``table`` in the outcome CSV format (gzip-compressed if ``path`` ends in .gz).

    The table's ``source`` is written as leading ``#`` comment lines. Numbers are written
    exactly (``repr``), so reading the file back gives the same table.
    """
    p = Path(path)
    buf = io.StringIO(newline="")
    for line in table.source.splitlines():
        buf.write(f"# {line}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["prompt_id", "model", "score", "cost", "task"])
    for i, pid in enumerate(table.prompt_ids):
        for j, m in enumerate(table.models):
            w.writerow([pid, m, _fmt(table.scores[i][j]), _fmt(table.costs[i][j]), table.tasks[i]])
    data = buf.getvalue().encode("utf-8")
    if p.suffix == ".gz":
        # mtime=0: the same table always gives the same bytes (a reproducible package).
        with p.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(data)
    else:
        p.write_bytes(data)


def _fmt(x: float) -> str:
    return "0" if x == 0 else "1" if x == 1 else repr(x)


def read_routerbench(path: str | os.PathLike[str], *, source: str | None = None) -> OutcomeTable:
    """Read RouterBench 0-shot CSVs (RouterDC's ``datasets/routerbench_zs`` layout).

    Every column that is neither one of RouterBench's fixed columns nor contains ``|`` is a
    model's score; ``<model>|total_cost`` is its cost. Prompts lacking a model's score are
    dropped (as the reference replay does), the task is ``eval_name`` and the prompt id
    ``sample_id``. Prompt and answer texts are not kept.

    Args:
        path: A folder (every ``*.csv`` in it, in sorted order) or one CSV file.
        source: The attribution to record (default: RouterBench and RouterDC).

    Raises:
        DatasetError: If a file is missing or malformed.
    """
    p = Path(path)
    files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    if not files:
        raise DatasetError(p, "folder holds no *.csv file")
    models: list[str] | None = None
    ids: list[str] = []
    tasks: list[str] = []
    scores: list[tuple[float, ...]] = []
    costs: list[tuple[float, ...]] = []
    dropped = 0
    with _large_fields():
        for file in files:
            with _open_text(file) as f:
                reader = csv.DictReader(f)
                header = reader.fieldnames or []
                these = [c for c in header if c not in _ROUTERBENCH_FIXED and "|" not in c]
                need = ["sample_id", "eval_name", *(f"{m}|total_cost" for m in these)]
                lacking = [c for c in need if c not in header]
                if not these or lacking:
                    raise DatasetError(
                        file,
                        "not a RouterBench CSV: "
                        + (f"no column {lacking[0]!r}" if lacking else "no model columns"),
                    )
                if models is None:
                    models = these
                elif sorted(these) != sorted(models):
                    raise DatasetError(file, f"models differ from {files[0].name}'s")
                for row in reader:
                    line = reader.line_num
                    if any(row.get(m) in ("", None) for m in models):
                        dropped += 1
                        continue
                    ids.append(row["sample_id"])
                    tasks.append(row["eval_name"])
                    scores.append(tuple(_score(file, line, m, row[m]) for m in models))
                    costs.append(
                        tuple(_cost(file, line, m, row[f"{m}|total_cost"]) for m in models)
                    )
    assert models is not None
    return OutcomeTable(
        name="routerbench",
        models=tuple(models),
        prompt_ids=tuple(ids),
        tasks=tuple(tasks),
        scores=tuple(scores),
        costs=tuple(costs),
        dropped=dropped,
        source=ROUTERBENCH_SOURCE if source is None else source,
    )


def read_frugalgpt(path: str | os.PathLike[str], *, source: str | None = None) -> OutcomeTable:
    """Read FrugalGPT's per-query results (OptLLM's ``overruling.csv`` layout).

    Each ``<model>_cost`` column names a model; ``<model>`` is its 0/1 correctness. The
    prompt id is the first (index) column, the task is the file name without extension.

    Raises:
        DatasetError: If the file is missing or malformed.
    """
    p = Path(path)
    with _large_fields(), _open_text(p) as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        models = [c[: -len("_cost")] for c in header if c.endswith("_cost")]
        lacking = [m for m in models if m not in header]
        if not models or lacking:
            raise DatasetError(
                p,
                "not a FrugalGPT results CSV: "
                + (f"no column {lacking[0]!r}" if lacking else "no <model>_cost columns"),
            )
        id_col = header[0]
        task = p.name.split(".")[0]
        ids: list[str] = []
        scores: list[tuple[float, ...]] = []
        costs: list[tuple[float, ...]] = []
        for row in reader:
            line = reader.line_num
            ids.append(row[id_col] or str(len(ids)))
            scores.append(tuple(_score(p, line, m, row[m] or "") for m in models))
            costs.append(tuple(_cost(p, line, m, row[f"{m}_cost"] or "") for m in models))
    if not ids:
        raise DatasetError(p, "has a header but no rows")
    return OutcomeTable(
        name="frugalgpt-" + task,
        models=tuple(models),
        prompt_ids=tuple(ids),
        tasks=(task,) * len(ids),
        scores=tuple(scores),
        costs=tuple(costs),
        source=FRUGALGPT_SOURCE if source is None else source,
    )


#: Attribution of the RouterBench 0-shot subset (see the embedded table's header).
ROUTERBENCH_SOURCE: Final = (
    "RouterBench 0-shot subset: Hu et al., 'RouterBench: A Benchmark for Multi-LLM Routing "
    "System', arXiv 2403.12031 (2024); HF dataset withmartian/routerbench.\n"
    "As distributed by github.com/shuhao02/RouterDC (datasets/routerbench_zs/"
    "{arc_challenge,mbpp,winograde}_{train,test}.csv, commit "
    "1963d6874b69c94309ea37a34d7d4cd6f527e7c5)."
)
#: Attribution of FrugalGPT's OVERRULING results.
FRUGALGPT_SOURCE: Final = (
    "FrugalGPT per-query API results: Chen, Zaharia & Zou, 'FrugalGPT: How to Use Large "
    "Language Models While Reducing Cost and Improving Performance', arXiv 2305.05176 (2023).\n"
    "As distributed by github.com/superyue72/OptLLM (datasets/text_classification/"
    "overruling.csv, commit 4f980b59100c19056d55ebc029b3f04255f2f68a)."
)


def _sniff(path: Path) -> Callable[[Path], OutcomeTable]:
    """Pick the reader for a file from its header line."""
    with _large_fields(), _open_text(path) as f:
        _, lines = _header_lines(f)
        header = next(csv.reader(lines), None)
    if not header:
        raise DatasetError(path, "is empty (no header line)")
    cols = set(header)
    if cols & {"prompt_id", "model", "score"}:  # meant as the outcome format
        return read_outcomes
    if "eval_name" in cols and any(c.endswith("|total_cost") for c in cols):
        return read_routerbench
    if any(c.endswith("_cost") for c in cols):
        return read_frugalgpt
    raise DatasetError(
        path,
        "unrecognised columns (expected prompt_id,model,score[,cost][,task]; or a RouterBench "
        "or FrugalGPT results CSV)",
    )


def load_dataset(name_or_path: str | os.PathLike[str]) -> OutcomeTable:
    """Load an embedded dataset by name, or a dataset file or folder by path.

    Args:
        name_or_path: ``"routerbench"`` (embedded: 3,150 prompts x 11 models), or a path to a
            file in the outcome CSV format, a RouterBench CSV or folder of CSVs, or a FrugalGPT
            results CSV (recognised by their columns).

    Raises:
        DatasetError: If the dataset does not exist or cannot be read; the message is one
            line naming the file and the problem.
    """
    key = os.fspath(name_or_path)
    if key in DATASETS and not Path(key).exists():
        res = resources.files("bandit_router.replay").joinpath("data", DATASETS[key])
        with resources.as_file(res) as file:
            return read_outcomes(file, name=key)
    p = Path(key)
    if p.is_dir():
        return read_routerbench(p)
    if not p.exists():
        known = ", ".join(sorted(DATASETS))
        raise DatasetError(p, f"no such file (and not an embedded dataset: {known})")
    return _sniff(p)(p)


def check_models(table: OutcomeTable, names: Sequence[str]) -> list[int]:
    """Return the column of each of ``names``, or raise DatasetError naming the unknown one."""
    out = []
    for n in names:
        if n not in table.models:
            raise DatasetError(table.name, f"no model {n!r}; the models are {list(table.models)}")
        out.append(table.models.index(n))
    return out
