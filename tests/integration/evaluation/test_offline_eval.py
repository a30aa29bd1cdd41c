"""Offline evaluation against a real registry (MLflow on SQLite) and real trained models.

Two quick credit-risk versions (one trained properly, one barely) and one quick
tiny-gpt are trained, registered, evaluated, recorded in MLflow, read back and
gated; ``paved eval`` is run as a subprocess for its exit codes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from evaluation.gates import check_digest, default_policy, evaluate_gate
from evaluation.offline import champion_report, gate_version
from evaluation.record import (
    METRIC_TAG_PREFIX,
    REPORT_ARTIFACT_DIR,
    REPORT_FILE,
    eval_metric_tags,
    experiment_name,
    latest_eval,
    record_eval,
)
from evaluation.report import EvalReport
from evaluation.suites import run_suite
from evaluation.suites.common import require_kind
from evaluation.suites.tabular import EVAL_SEED
from evaluation.suites.text_generation import held_out_corpus
from paved.errors import InvalidInput, NotFound, PermissionDenied
from paved.schemas import Actor, Role
from paved.settings import Settings
from pipelines.train import train_and_log
from pipelines.trainers.tiny_gpt import TinyGPTParams
from registry.fetch import cache_path
from registry.service import Registry
from registry.store import MlflowStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ENGINEER = Actor(identity="alice", roles=frozenset({Role.ML_ENGINEER}), team="risk")
PROMOTER = Actor(identity="promotion-flow", roles=frozenset({Role.PROMOTION}))
VIEWER = Actor(identity="vic", roles=frozenset({Role.VIEWER}), team="risk")


@dataclass(frozen=True)
class World:
    home: Path
    registry: Registry
    credit: str  # v1 trained properly, v2 barely (a clear regression)
    tiny: str  # v1: a few steps of tiny-gpt


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("eval")
    settings = Settings(home=root / "home", actor="tester")
    registry = Registry.from_settings(settings)
    credit, tiny = f"credit-{uuid.uuid4().hex[:6]}", f"tiny-{uuid.uuid4().hex[:6]}"

    def train(kind: str, name: str, seed: int, **options: object) -> None:
        train_and_log(
            kind,
            registry=registry,
            work_dir=root / "work",
            actor=ENGINEER,
            team="risk",
            seed=seed,
            register_as=name,
            **options,
        )

    train("credit-risk", credit, seed=1, rows=3000, epochs=6)
    train("credit-risk", credit, seed=2, rows=300, epochs=1)
    train("tiny-gpt", tiny, seed=0, params=TinyGPTParams(steps=30, batch_size=16))
    return World(settings.home, registry, credit, tiny)


def _store(world: World) -> MlflowStore:
    store = world.registry.store
    assert isinstance(store, MlflowStore)
    return store


# --- suites ----------------------------------------------------------------------------


def test_tabular_suite_scores_held_out_data_deterministically(world: World) -> None:
    good = run_suite(world.registry, f"{world.credit}/1")
    weak = run_suite(world.registry, f"{world.credit}/2")
    assert good.suite == "credit-risk-offline"
    assert good.model_digest == world.registry.get(f"{world.credit}/1").digest
    assert set(good.metrics) == {
        "auc",
        "accuracy",
        "log_loss",
        "brier",
        "ece",
        "base_rate",
        "batch_latency_p50_ms",
        "batch_latency_p95_ms",
    }
    assert good.samples == {"rows": 4096, "positives": good.samples["positives"], "batches": 32}
    assert good.params["seed"] == EVAL_SEED >= 2**32  # never a training seed
    # Same data for every version: a candidate and its champion compare directly.
    assert good.dataset_digest == weak.dataset_digest
    assert good.metrics["auc"] > 0.72 > weak.metrics["auc"]
    assert 0 < good.metrics["batch_latency_p50_ms"] <= good.metrics["batch_latency_p95_ms"]
    again = run_suite(world.registry, f"{world.credit}/1")
    assert again.quality_metrics() == good.quality_metrics()
    assert again.dataset_digest == good.dataset_digest


def test_text_suite_scores_the_versions_own_held_out_prompts(world: World) -> None:
    report = run_suite(world.registry, f"{world.tiny}/1")
    detail = world.registry.describe(f"{world.tiny}/1")
    assert report.suite == "tiny-gpt-offline"
    assert report.samples["prompts"] == int(detail.params["held_out_rows"])
    # The trainer measured the same held-out split; padding-free batching agrees with it.
    assert report.metrics["perplexity"] == pytest.approx(
        detail.metrics["heldout_perplexity"], rel=1e-4
    )
    assert report.metrics["exact_match"] == detail.metrics["heldout_exact_match"]
    assert {"exact_match_color", "greedy_latency_p50_ms", "greedy_latency_p95_ms"} <= set(
        report.metrics
    )
    again = run_suite(world.registry, f"{world.tiny}/1")
    assert again.quality_metrics() == report.quality_metrics()
    assert again.dataset_digest == report.dataset_digest


def test_text_suite_refuses_a_split_it_cannot_prove(world: World) -> None:
    detail = world.registry.describe(f"{world.tiny}/1")
    assert {e.prompt for e in held_out_corpus(detail).held_out}
    other_seed = detail.model_copy(update={"params": {**detail.params, "seed": "1"}})
    with pytest.raises(InvalidInput) as exc:
        held_out_corpus(other_seed)
    assert exc.value.rule == "heldout_split_digest"
    no_seed = detail.model_copy(update={"params": {}})
    with pytest.raises(InvalidInput) as exc:
        held_out_corpus(no_seed)
    assert exc.value.rule == "heldout_split_unknown"
    credit = world.registry.describe(f"{world.credit}/1")
    with pytest.raises(InvalidInput) as exc:
        require_kind(credit, "tiny-gpt", "tiny-gpt-offline")
    assert exc.value.rule == "suite_model_kind"


# --- recording -------------------------------------------------------------------------


def test_record_logs_a_run_and_tags_the_version(world: World) -> None:
    reg, ref = world.registry, f"{world.credit}/1"
    report = run_suite(reg, ref)
    recorded = record_eval(reg, report, actor=ENGINEER)
    assert recorded.experiment == experiment_name(world.credit) == f"paved/eval/{world.credit}"

    run = _store(world).client.get_run(recorded.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["paved.eval.model"] == world.credit
    assert run.data.tags["paved.eval.version"] == "1"
    assert run.data.tags["paved.eval.by"] == "alice"
    assert run.data.metrics["auc"] == pytest.approx(report.metrics["auc"])
    assert run.data.params["suite"] == "credit-risk-offline"
    assert run.data.params["samples.rows"] == "4096"
    artifact = Path(
        _store(world).download(f"{run.info.artifact_uri}/{REPORT_ARTIFACT_DIR}", world.home / "dl")
    )
    assert EvalReport.model_validate_json((artifact / REPORT_FILE).read_text()) == report

    assert latest_eval(reg, world.credit, 1) == report
    assert eval_metric_tags(reg, world.credit, 1) == report.metrics  # repr round-trips
    version = reg.store.get_version(world.credit, 1)
    assert version is not None
    assert version.tags[METRIC_TAG_PREFIX + "auc"] == repr(report.metrics["auc"])

    # A newer report replaces the tags, including metrics it no longer has.
    slim = report.model_copy(update={"metrics": {"auc": 0.5}})
    record_eval(reg, slim, actor=ENGINEER)
    assert eval_metric_tags(reg, world.credit, 1) == {"auc": 0.5}
    assert latest_eval(reg, world.credit, 1) == slim
    record_eval(reg, report, actor=ENGINEER)


def test_record_refuses_viewers_foreign_digests_and_unknown_versions(world: World) -> None:
    reg = world.registry
    report = run_suite(reg, f"{world.credit}/2")
    with pytest.raises(PermissionDenied):
        record_eval(reg, report, actor=VIEWER)
    with pytest.raises(InvalidInput) as exc:
        record_eval(reg, report.model_copy(update={"version": 1}), actor=ENGINEER)
    assert exc.value.rule == "eval_digest"
    with pytest.raises(NotFound):
        record_eval(reg, report.model_copy(update={"version": 99}), actor=ENGINEER)
    assert latest_eval(reg, world.tiny, 1) is None  # never recorded (so far in this module)
    with pytest.raises(NotFound):
        latest_eval(reg, world.credit, 99)


# --- gates -----------------------------------------------------------------------------


def test_gate_passes_and_fails_on_real_reports(world: World) -> None:
    reg, name = world.registry, world.credit
    # No champion yet: only bounds apply, and the default policy has none.
    first = gate_version(reg, f"{name}/1", f"{name}@champion", actor=ENGINEER)
    assert first.champion is None
    assert first.gate.passed
    reg.set_alias(name, "champion", 1, actor=PROMOTER)

    worse = gate_version(reg, f"{name}/2", f"{name}@champion", actor=ENGINEER)
    assert worse.champion is not None
    assert worse.champion.version == 1
    assert not worse.gate.passed
    auc = next(r for r in worse.gate.rules if r.rule == "auc vs champion")
    assert auc.status == "fail"
    assert auc.difference == pytest.approx(
        worse.champion.metrics["auc"] - worse.candidate.report.metrics["auc"]
    )
    assert any(
        f.startswith("auc fell ") and "the policy allows 0.01" in f for f in worse.gate.failures
    )
    assert latest_eval(reg, name, 2) == worse.candidate.report  # recorded, gate or not

    # The champion as the candidate against the weak one passes (it is better).
    v1 = latest_eval(reg, name, 1)
    v2 = latest_eval(reg, name, 2)
    assert v1 is not None
    assert v2 is not None
    digest = check_digest(reg, f"{name}/1")
    assert evaluate_gate(v1, v2, default_policy(v1.task), digest=digest).passed

    with pytest.raises(NotFound):  # a mistyped model cannot pass for want of a champion
        gate_version(reg, f"{name}/2", "no-such-model@champion", actor=ENGINEER)
    with pytest.raises(InvalidInput) as exc:
        champion_report(reg, f"{world.tiny}/1", like=v1, actor=ENGINEER)
    assert exc.value.rule == "gate_task_mismatch"


def test_tiny_gpt_gate_against_itself_passes(world: World) -> None:
    outcome = gate_version(world.registry, f"{world.tiny}/1", f"{world.tiny}/1", actor=ENGINEER)
    assert outcome.gate.passed, outcome.gate.failures


def test_check_digest_fails_when_the_stored_files_change(world: World) -> None:
    reg = world.registry
    train_and_log(
        "credit-risk",
        registry=reg,
        work_dir=world.home / "work",
        actor=ENGINEER,
        team="risk",
        seed=3,
        register_as=world.credit,
        rows=300,
        epochs=1,
    )
    info = reg.get(f"{world.credit}/3")
    assert check_digest(reg, info.ref).status == "pass"
    stored = Path(info.source.removeprefix("file://")) / "config.json"
    stored.write_text(stored.read_text() + " ")
    cached = cache_path(reg.cache_dir, info) / "config.json"
    cached.write_text(cached.read_text() + " ")
    result = check_digest(reg, info.ref)
    assert result.status == "fail"
    assert result.message.startswith(f"{info.ref}'s files do not match what was registered")


# --- the CLI ---------------------------------------------------------------------------


def _paved(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAVED_")}
    env["PAVED_HOME"] = str(world.home)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_exit_status_says_whether_the_gate_passed(world: World) -> None:
    name = world.credit
    world.registry.set_alias(name, "champion", 1, actor=PROMOTER)
    failed = _paved(world, "eval", f"{name}/2", "--against", f"{name}@champion")
    assert failed.returncode == 3, failed.stderr
    assert "auc fell" in failed.stdout
    assert "gate failed" in failed.stdout

    passed = _paved(world, "eval", f"{name}/1", "--against", f"{name}@champion", "-o", "json")
    assert passed.returncode == 0, passed.stderr
    body = json.loads(passed.stdout)
    assert body["gate"]["passed"] is True
    assert body["evaluation"]["report"]["model"] == name
    assert body["evaluation"]["run_id"]


def test_cli_help_documents_the_exit_status() -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["eval", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "3 the gate failed" in result.output
