"""The credit-risk offline suite: discrimination, calibration and batch latency.

The data is a fresh draw from the same generator the trainer uses, with
:data:`EVAL_SEED`, a seed no training run can have used: ``train_and_log`` accepts
seeds 0..2**32-1 only, and numpy expands a seed into 32-bit words, so a training
seed ``s`` draws its data from the words ``[s, 0]`` and its split from ``[s, 1]``,
while this seed is ``[0xE7A1, 7]``. The rows are therefore independent of every
training, validation and test split, and the same for every version, which is what
makes a candidate and its champion directly comparable (same dataset digest).

Quality is scored in one pass over every row; latency separately, over fixed-size
batches through ``predict_columns`` (validation, encoding, the network: what the
serving backend runs per request), after a few untimed batches.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from bundled.credit_risk.data import CreditFrame, canonical_bytes, generate
from bundled.credit_risk.model import MODEL_KIND, CreditRiskModel, load
from evaluation.metrics import classification_metrics, latency_percentiles
from evaluation.report import EvalReport
from evaluation.suites.common import int_param, require_kind, torch_threads
from paved.errors import InvalidInput
from registry.schemas import ModelVersionDetail

SUITE: Final = "credit-risk-offline"
SUITE_VERSION: Final = 1
EVAL_SEED: Final = (7 << 32) | 0xE7A1
EVAL_ROWS: Final = 4096


class TabularSuite(BaseModel):
    """Settings of the credit-risk suite; all of them are recorded with the report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = Field(default=EVAL_ROWS, ge=200, le=1_000_000, description="Rows drawn.")
    seed: int = Field(
        default=EVAL_SEED,
        ge=2**32,
        description="Data seed; at least 2**32 so no training seed can equal it.",
    )
    batch_size: int = Field(default=128, ge=1, le=65_536, description="Rows per timed batch.")
    warmup_batches: int = Field(default=2, ge=0, le=100, description="Untimed batches first.")
    threads: int = Field(default=1, ge=1, le=256, description="torch intra-op threads.")


def evaluate(
    model_dir: Path, detail: ModelVersionDetail, config: TabularSuite | None = None
) -> EvalReport:
    """Score a verified credit-risk directory on the evaluation draw."""
    cfg = config or TabularSuite()
    require_kind(detail, MODEL_KIND, SUITE)
    if int_param(detail, "seed") == cfg.seed:
        raise InvalidInput(
            f"{detail.ref} was trained with the evaluation seed {cfg.seed}; its scores "
            "on that data would not be held out",
            rule="eval_seed_trained_on",
        )
    frame = generate(cfg.rows, seed=cfg.seed)
    model = load(model_dir)
    labels = frame.label.astype(np.float64)
    with torch_threads(cfg.threads):
        probs = np.asarray(model.predict_columns(frame.columns), dtype=np.float64)
        timings = _batch_latencies(model, frame, cfg)
    metrics = classification_metrics(labels, probs)
    metrics.update(latency_percentiles(timings, prefix="batch_latency"))
    return EvalReport(
        suite=SUITE,
        suite_version=SUITE_VERSION,
        model=detail.name,
        version=detail.version,
        model_digest=detail.digest,
        task=detail.lineage.task,
        metrics=metrics,
        samples={"rows": len(frame), "positives": int(frame.label.sum()), "batches": len(timings)},
        dataset=(
            f"generated credit applications (pavedpath credit_data v1, evaluation seed "
            f"{cfg.seed}): {len(frame)} rows no training run drew"
        ),
        dataset_digest="sha256:" + hashlib.sha256(canonical_bytes(frame)).hexdigest(),
        params=cfg.model_dump(),
    )


def _batch_latencies(model: CreditRiskModel, frame: CreditFrame, cfg: TabularSuite) -> list[float]:
    starts = range(0, len(frame), cfg.batch_size)
    batches = [{k: v[i : i + cfg.batch_size] for k, v in frame.columns.items()} for i in starts]
    for batch in batches[: cfg.warmup_batches]:
        model.predict_columns(batch)
    timings: list[float] = []
    for batch in batches:
        started = time.perf_counter()
        model.predict_columns(batch)
        timings.append(time.perf_counter() - started)
    return timings
