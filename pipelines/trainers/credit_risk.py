"""Trainer for the bundled ``credit-risk`` model: generate data, fit, evaluate, save.

Training runs inside ``torch.random.fork_rng`` seeded from ``seed`` and uses its own
``torch.Generator`` for shuffling, so the same seed yields byte-identical weights
and the caller's global RNG state is left as it was. Early stopping keeps the
epoch with the best validation log loss; the test split is touched only once, for
the reported metrics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from pydantic import BaseModel, ConfigDict, Field

from bundled.credit_risk.codec import EncodedBatch
from bundled.credit_risk.data import (
    DEFAULT_ROWS,
    FEATURE_KINDS,
    CreditFrame,
    dataset_digest,
    describe,
    make_splits,
)
from bundled.credit_risk.features import fit_feature_specs
from bundled.credit_risk.model import (
    MODEL_KIND,
    Architecture,
    CreditRiskModel,
    ModelConfig,
    default_embedding_dim,
)
from evaluation.metrics import classification_metrics, log_loss
from pipelines.trainers.base import TrainResult
from registry.profile import DataProfile, FeatureProfile, categorical_profile, numeric_profile

DEFAULT_EPOCHS = 20
LOG_FEATURES = frozenset({"annual_income", "loan_amount"})

Floats = npt.NDArray[np.float64]


class TrainingConfig(BaseModel):
    """Every knob of one training run; all of it is logged as params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    rows: int = Field(default=DEFAULT_ROWS, ge=100)
    epochs: int = Field(default=DEFAULT_EPOCHS, ge=1)
    batch_size: int = Field(default=256, ge=1)
    learning_rate: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    hidden_sizes: tuple[int, ...] = (64, 32)
    dropout: float = Field(default=0.1, ge=0, lt=1)
    oov_rate: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="Share of categorical values replaced by the unknown slot while training, "
        "so an unseen category at serving time gets a trained embedding.",
    )
    patience: int = Field(default=4, ge=1, description="Epochs without improvement before stop.")


def reference_profile(frame: CreditFrame) -> DataProfile:
    """Per-feature profile of the raw training inputs, as drift detection will see them."""
    features: dict[str, FeatureProfile] = {}
    for name, kind in FEATURE_KINDS.items():
        values = frame.columns[name]
        if kind == "numeric":
            features[name] = numeric_profile(values.astype(np.float64))
        else:
            features[name] = categorical_profile(values.tolist())
    return DataProfile(rows=len(frame), features=features)


@contextmanager
def _single_thread() -> Iterator[None]:
    """Train on one intra-op thread, restoring the previous setting afterwards.

    Batches of this small MLP are far too small to split: on a 2-core machine that
    is busy, two threads made each step ~15x slower. One thread also pins the order
    of floating-point reductions, which the byte-identical weights rely on.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _predict(model: CreditRiskModel, batch: EncodedBatch) -> Floats:
    model.net.eval()
    with torch.inference_mode():
        return torch.sigmoid(model.logits(batch)).double().numpy()


def _fit(
    model: CreditRiskModel,
    train: EncodedBatch,
    labels: Floats,
    val: EncodedBatch,
    val_labels: Floats,
    cfg: TrainingConfig,
) -> int:
    """Adam with early stopping on validation log loss; returns the best epoch (1-based)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    dense = torch.from_numpy(train.dense)
    categorical = torch.from_numpy(train.categorical)
    target = torch.from_numpy(labels.astype(np.float32))
    optimizer = torch.optim.AdamW(
        model.net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best_loss, best_epoch = float("inf"), 0
    best_state = {k: v.clone() for k, v in model.net.state_dict().items()}
    for epoch in range(1, cfg.epochs + 1):
        model.net.train()
        order = torch.randperm(dense.shape[0], generator=gen)
        for start in range(0, order.numel(), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            cats = categorical[idx]
            if cfg.oov_rate > 0:
                drop = torch.rand(cats.shape, generator=gen) < cfg.oov_rate
                cats = cats.masked_fill(drop, 0)
            optimizer.zero_grad()
            loss = loss_fn(model.net(dense[idx], cats), target[idx])
            loss.backward()
            optimizer.step()
        val_loss = log_loss(val_labels, _predict(model, val))
        if val_loss < best_loss - 1e-5:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.clone() for k, v in model.net.state_dict().items()}
        elif epoch - best_epoch >= cfg.patience:
            break
    model.net.load_state_dict(best_state)
    model.net.eval()
    return best_epoch


def train(
    out_dir: Path, *, seed: int = 0, epochs: int | None = None, rows: int | None = None
) -> TrainResult:
    """Train credit-risk into ``out_dir`` (which then holds only the model's two files)."""
    cfg = TrainingConfig(
        seed=seed,
        epochs=epochs if epochs is not None else DEFAULT_EPOCHS,
        rows=rows if rows is not None else DEFAULT_ROWS,
    )
    splits = make_splits(cfg.rows, seed=cfg.seed)
    specs = fit_feature_specs(FEATURE_KINDS, splits.train.columns, log_features=LOG_FEATURES)
    config = ModelConfig(
        features=specs,
        architecture=Architecture(
            hidden_sizes=list(cfg.hidden_sizes),
            embedding_dims={
                s.name: default_embedding_dim(s.cardinality)
                for s in specs
                if s.kind == "categorical"
            },
            dropout=cfg.dropout,
        ),
    )
    with torch.random.fork_rng(devices=[]), _single_thread():
        torch.manual_seed(cfg.seed)
        model = CreditRiskModel.create(config)
        encode = model.codec.encode_columns
        train_batch = encode(splits.train.columns)
        val_batch = encode(splits.validation.columns)
        best_epoch = _fit(
            model,
            train_batch,
            splits.train.label.astype(np.float64),
            val_batch,
            splits.validation.label.astype(np.float64),
            cfg,
        )
    test_labels = splits.test.label.astype(np.float64)
    metrics = classification_metrics(test_labels, _predict(model, encode(splits.test.columns)))
    model.save(out_dir)
    params: dict[str, str | int | float | bool] = {
        **{k: v for k, v in cfg.model_dump().items() if k != "hidden_sizes"},
        "hidden_sizes": ",".join(str(h) for h in cfg.hidden_sizes),
        "best_epoch": best_epoch,
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "test_rows": len(splits.test),
        "features": len(specs),
        "parameters": sum(p.numel() for p in model.net.parameters()),
    }
    return TrainResult(
        kind=MODEL_KIND,
        model_dir=out_dir,
        task="tabular-classification",
        framework="torch",
        params=params,
        metrics=metrics,
        dataset_digest=dataset_digest(splits),
        dataset_description=describe(cfg.rows, cfg.seed),
        reference_profile=reference_profile(splits.train),
        intended_use=(
            "Demonstration and testing of the Pavedpath lifecycle: scoring the probability "
            "that a consumer-loan applicant defaults, from 16 application features."
        ),
        limitations=(
            "Trained on generated data, not real applicants; not for credit decisions. "
            "No missing-value handling (every feature is required), no fairness review; "
            "unseen categories share one learned 'unknown' embedding."
        ),
    )
