#!/usr/bin/env bash
# The first thing a session that is lent a GPU runs (about 8 minutes, each part under its own timeout):
#   bash benchmarks/gpu_check.sh            # results under benchmarks/gpu/ (and benchmarks/bench_gpu.json)
# 1. what the machine has (GPU, torch, ONNX Runtime's execution providers);
# 2. the GPU tests: engine parity with the reference on CUDA in float32, CUDA graphs recorded and
#    replayed, bf16 runs, LoRA followed by the engines;
# 3. the engine bench on Janus-Pro-1B / 7B shapes (random weights): hf, fast, onnx at batch 1 and 16;
# 4. the peak memory of one GRPO step at G = 8 (LoRA + checkpointing vs full fine-tuning).
# Written before any GPU was lent: it has not run yet. A part that fails does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${GPU_CHECK_OUT:-benchmarks/gpu}"
mkdir -p "$OUT"
status=0
run() {  # run NAME SECONDS COMMAND...: output to $OUT/NAME.txt, a failure noted and the script goes on
  local name=$1 seconds=$2
  shift 2
  echo "== $name (at most ${seconds}s): $*"
  if ! timeout "$seconds" "$@" >"$OUT/$name.txt" 2>&1; then
    echo "   FAILED or timed out: see $OUT/$name.txt"
    status=1
  fi
  tail -n 5 "$OUT/$name.txt"
}

run machine 30 bash -c 'nvidia-smi; python -c "import torch, transformers, onnxruntime as ort; print(torch.__version__, torch.version.cuda, transformers.__version__, ort.__version__, ort.get_available_providers())"'
run gpu_tests 150 python -m pytest -q -m gpu tests/test_engine_gpu.py
run lora_tests 60 python -m pytest -q tests/test_engine_lora.py -k "not onnx"
run bench 240 python -m reasoner bench --models janus-pro-1b,janus-pro-7b --engines hf,fast,onnx \
  --batches 1,16 --device cuda --json benchmarks/bench_gpu.json
run grpo_memory 90 python -m finetune.memory --preset janus-pro-1b --layers 24 --device cuda \
  --json "$OUT/grpo_memory_gpu.json"
echo "gpu_check: done (status $status); results in $OUT/ and benchmarks/bench_gpu.json"
exit $status
