"""Model cards: a Markdown summary stored with every run and shown in the MLflow UI."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CardFacts(BaseModel):
    """What a model card says; every field comes from the training run."""

    model_config = ConfigDict(extra="forbid")

    title: str
    team: str
    task: str
    framework: str
    git_commit: str
    dataset_digest: str
    dataset_description: str
    intended_use: str = "Not stated."
    limitations: str = "Not stated."
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


def render_card(facts: CardFacts) -> str:
    lines = [
        f"# {facts.title}",
        "",
        f"- **Owner team:** {facts.team}",
        f"- **Task:** {facts.task}",
        f"- **Framework:** {facts.framework}",
        f"- **Code version:** `{facts.git_commit}`",
        f"- **Training data:** {facts.dataset_description} (digest `{facts.dataset_digest}`)",
        "",
        "## Intended use",
        "",
        facts.intended_use,
        "",
        "## Limitations",
        "",
        facts.limitations,
        "",
        "## Evaluation",
        "",
        "| metric | value |",
        "|---|---|",
        *(f"| {k} | {v:.6g} |" for k, v in sorted(facts.metrics.items())),
        "",
        "## Training parameters",
        "",
        "| parameter | value |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in sorted(facts.params.items())),
        "",
    ]
    return "\n".join(lines)
