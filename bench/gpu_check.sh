#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (e.g. a g5/g6 instance on the EKS AL2023 NVIDIA
# AMI, or any host with the NVIDIA driver >= 580 and the NVIDIA container toolkit).
#
#   make cuda-image              # once: builds model-server-cuda:local (or IMAGE=<an ECR tag>)
#   bench/gpu_check.sh [--seconds 1] [--json bench/gpu_check.json]
#   VENV=/path/to/venv bench/gpu_check.sh   # instead of the image: a Python >= 3.12 venv with
#                                           # pip install -r app/requirements-cuda.txt
#
# It runs bench/gpu_check.py in the CUDA image (docker run --gpus all), which loads the XGBoost and
# ONNX MLP examples (app/examples/) through the server's own runtimes on CUDA and on the CPU, checks
# that their outputs agree (probabilities within 1e-4, the same classes), and prints rows/s at batch
# sizes 1, 64, 1024 and 16384 on each device, the batch size from which the GPU is faster, and the
# batching figures (maxBatchSize, maxBatchWaitMs) that should replace the provisional GPU defaults:
# GPU_BATCH in app/model_server/model.py and the stack's GPU-pool modelService settings.
#
# Exit status: 0 the outputs agree; 1 they do not; 2 no usable GPU here (it says why); 3 no image.
# Nothing here has been run on a GPU yet: the first run on one is the measurement.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-model-server-cuda:local}

no_gpu() {
  echo "gpu_check: no GPU to check: $1" >&2
  exit 2
}

# The same test as the server's (runtimes/base.py): the driver exposes each GPU as /dev/nvidia<N>.
compgen -G "/dev/nvidia[0-9]*" >/dev/null || no_gpu "no NVIDIA GPU on this machine (no /dev/nvidia<N>)"
command -v nvidia-smi >/dev/null || no_gpu "nvidia-smi not found: is the NVIDIA driver installed?"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
  || no_gpu "nvidia-smi cannot talk to the driver"

if [[ -n "${VENV:-}" ]]; then
  exec env PYTHONPATH="$ROOT/app" "$VENV/bin/python" "$ROOT/bench/gpu_check.py" --examples "$ROOT/app/examples" "$@"
fi

if ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "gpu_check: image $IMAGE not found: build it with make cuda-image, or set IMAGE" >&2
  exit 3
fi
# --json writes inside the container: give it the bench folder's output file through a writable mount.
args=() json=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --json) json=$2; args+=(--json /out/gpu_check.json); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
chmod 777 "$out"
status=0
docker run --rm --gpus all --read-only --user 10001:10001 \
  -v "$ROOT/bench/gpu_check.py:/bench/gpu_check.py:ro" -v "$ROOT/app/examples:/examples:ro" -v "$out:/out" \
  --entrypoint python "$IMAGE" /bench/gpu_check.py --examples /examples "${args[@]}" || status=$?
if [[ -n "$json" && -f "$out/gpu_check.json" ]]; then
  cp "$out/gpu_check.json" "$json"
fi
exit "$status"
