"""The credit-risk model: network, inference wrapper, and its on-disk format.

A model directory holds exactly two files: ``model.safetensors`` (the weights) and
``config.json`` (the feature specs, the architecture and a format marker). Loading
reads the JSON through a pydantic schema that forbids unknown keys and the weights
through ``safetensors.torch.load_file``; nothing is ever unpickled, so a registered
model can be loaded without trusting whoever produced it. The network is built on
the ``meta`` device and the loaded tensors are assigned to it, which skips a random
initialisation that would be overwritten anyway (and leaves torch's RNG alone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from bundled.credit_risk.codec import EncodedBatch, FeatureCodec
from bundled.credit_risk.features import FeatureSpec, TensorSpec
from paved.errors import InvalidInput

MODEL_KIND: Final = "credit-risk"
FORMAT_VERSION: Final = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
MODEL_FILES = frozenset({WEIGHTS_FILE, CONFIG_FILE})
OUTPUT_NAME = "default_probability"
MAX_CONFIG_BYTES = 1 << 20


class Architecture(BaseModel):
    """Hyper-parameters that decide the network's shape; enough to rebuild it for loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hidden_sizes: list[int] = Field(min_length=1, description="Widths of the MLP's hidden layers.")
    embedding_dims: dict[str, int] = Field(description="Embedding width per categorical feature.")
    dropout: float = Field(ge=0.0, lt=1.0, description="Dropout after each hidden layer.")

    @model_validator(mode="after")
    def _positive(self) -> Architecture:
        if any(h < 1 for h in self.hidden_sizes) or any(
            d < 1 for d in self.embedding_dims.values()
        ):
            raise ValueError("layer and embedding widths must be positive")
        return self


class ModelConfig(BaseModel):
    """``config.json``: everything besides the weights that loading needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pavedpath_model: Literal["credit-risk"] = MODEL_KIND
    format_version: Literal[1] = FORMAT_VERSION
    features: list[FeatureSpec] = Field(min_length=1)
    architecture: Architecture
    output_name: str = OUTPUT_NAME

    @model_validator(mode="after")
    def _embeddings_cover_categoricals(self) -> ModelConfig:
        categorical = {f.name for f in self.features if f.kind == "categorical"}
        if set(self.architecture.embedding_dims) != categorical:
            raise ValueError("architecture.embedding_dims must name every categorical feature")
        FeatureCodec(self.features)  # unique names, at least one feature
        return self


def default_embedding_dim(cardinality: int) -> int:
    """Small categoricals need few dimensions; capped so rare vocabularies stay cheap."""
    return max(2, min(8, (cardinality + 1) // 2))


class CreditRiskNet(torch.nn.Module):
    """Embeddings for categoricals, concatenated with dense inputs, into an MLP -> logit."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        codec = FeatureCodec(config.features)
        arch = config.architecture
        self.categorical_names = [s.name for s in codec.categorical]
        self.embeddings = torch.nn.ModuleDict(
            {
                s.name: torch.nn.Embedding(s.cardinality, arch.embedding_dims[s.name])
                for s in codec.categorical
            }
        )
        width = codec.dense_width + sum(arch.embedding_dims.values())
        layers: list[torch.nn.Module] = []
        for hidden in arch.hidden_sizes:
            layers += [
                torch.nn.Linear(width, hidden),
                torch.nn.ReLU(),
                torch.nn.Dropout(arch.dropout),
            ]
            width = hidden
        layers.append(torch.nn.Linear(width, 1))
        self.mlp = torch.nn.Sequential(*layers)

    def forward(self, dense: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Logits of default, shape ``[batch]``."""
        parts = [dense]
        for j, name in enumerate(self.categorical_names):
            parts.append(self.embeddings[name](categorical[:, j]))
        out: torch.Tensor = self.mlp(torch.cat(parts, dim=1))
        return out.squeeze(1)


class CreditRiskModel:
    """A trained credit-risk model ready to score: validation, encoding and the network."""

    def __init__(self, config: ModelConfig, net: CreditRiskNet) -> None:
        self.config = config
        self.codec = FeatureCodec(config.features)
        self.net = net.eval()

    @classmethod
    def create(cls, config: ModelConfig) -> CreditRiskModel:
        """A freshly initialised model (uses torch's global RNG; seed it first)."""
        return cls(config, CreditRiskNet(config))

    def input_schema(self) -> list[TensorSpec]:
        """KServe v2 inputs: one named tensor per feature (FP32, BYTES or BOOL), shape [-1]."""
        return self.codec.input_schema()

    def output_schema(self) -> list[TensorSpec]:
        return [TensorSpec(name=self.config.output_name, datatype="FP32", shape=[-1])]

    def predict_proba(self, rows: Sequence[Mapping[str, object]]) -> list[float]:
        """Probability of default for each ``{feature: value}`` row."""
        return self._score(self.codec.encode_rows(rows))

    def predict_columns(
        self,
        columns: Mapping[str, object],
        datatypes: Mapping[str, str] | None = None,
    ) -> list[float]:
        """Probability of default for columnar input: one equal-length array per feature.

        This is the shape of a KServe v2 request (``inputs[i].name`` -> ``data``);
        pass the declared ``datatype`` of each input to have it checked too.
        """
        return self._score(self.codec.encode_columns(columns, datatypes))

    def logits(self, batch: EncodedBatch) -> torch.Tensor:
        """Raw logits for an encoded batch; the trainer uses this with gradients off."""
        dense = torch.from_numpy(batch.dense)
        categorical = torch.from_numpy(batch.categorical)
        out: torch.Tensor = self.net(dense, categorical)
        return out

    def _score(self, batch: EncodedBatch) -> list[float]:
        if batch.rows == 0:
            return []
        with torch.inference_mode():  # the net is in eval mode since __init__
            probs = torch.sigmoid(self.logits(batch))
        return [float(p) for p in probs.tolist()]

    def save(self, directory: Path) -> None:
        """Write ``model.safetensors`` and ``config.json``; refuse a directory with other files.

        The directory must hold only the model so its digest manifest pins exactly the
        model; the output is byte-identical for identical weights.
        """
        directory.mkdir(parents=True, exist_ok=True)
        foreign = sorted(p.name for p in directory.iterdir() if p.name not in MODEL_FILES)
        if foreign:
            raise InvalidInput(
                f"model directory {directory} holds other files: {', '.join(foreign)}",
                rule="model_dir_not_empty",
            )
        tensors = {
            k: v.detach().to("cpu").contiguous().clone() for k, v in self.net.state_dict().items()
        }
        save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        text = json.dumps(self.config.model_dump(mode="json"), indent=2, sort_keys=True)
        (directory / CONFIG_FILE).write_text(text + "\n", encoding="utf-8")


def read_config(directory: Path) -> ModelConfig:
    """Parse and validate ``config.json`` (unknown keys, wrong marker or version refused)."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise InvalidInput(f"{path} does not exist", rule="model_files")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"{path} is larger than {MAX_CONFIG_BYTES} bytes", rule="model_config")
    try:
        return ModelConfig.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise InvalidInput(
            f"{path} is not a valid credit-risk config: {exc}", rule="model_config"
        ) from exc


def load(directory: Path) -> CreditRiskModel:
    """Load a saved model with safetensors and JSON only; never unpickles."""
    config = read_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise InvalidInput(f"{weights} does not exist", rule="model_files")
    try:
        tensors = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise InvalidInput(
            f"{weights} is not a readable safetensors file: {exc}", rule="model_weights"
        ) from exc
    bad_dtype = sorted(k for k, t in tensors.items() if t.dtype != torch.float32)
    if bad_dtype:
        raise InvalidInput(
            f"{weights}: tensors must be float32: {', '.join(bad_dtype)}", rule="model_weights"
        )
    with torch.device("meta"):
        net = CreditRiskNet(config)
    try:
        net.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as exc:
        raise InvalidInput(
            f"{weights} does not match config.json: {exc}", rule="model_weights"
        ) from exc
    return CreditRiskModel(config, net)
