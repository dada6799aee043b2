#!/usr/bin/env bash
# The GPU benchmarks as one prepared run, for a lent GPU machine whose python3 already holds torch
# (nothing is installed: the package runs from src/). Each step has its own time limit and log, so
# one that fails or runs long leaves the others' figures. What the machine's image lacks travels
# as wheels on PYTHONPATH (torch-fidelity, which wcgan imports; docs/gpu.md says how).
#
#   bench/gpu.sh [out-folder]            # on the GPU machine (out: $OUT, else bench-gpu-out)
#   DEVICE=cpu QUICK=1 bench/gpu.sh out  # the same steps, tiny, on a CPU: a check of the script
#
# Steps: the device and library versions; one chunk trained and sampled through the CLI on the
# GPU (the digits split, two labels trained, their samples drawn); where a label's time goes at
# 32 and 64 px; a profile of a 64 px label (device busy share, costliest kernels); one-stage
# against two-stage; labels per job (batched labels, looped against vectorized, with device memory
# per label); beside them, on this machine's otherwise idle CPU
# cores, what the moving average of the generators costs (CPU seconds, bench/ema_overhead.py).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-bench-gpu-out}}
mkdir -p "$out"
device=${DEVICE:-cuda}
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
started=$SECONDS

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $out/NAME.log, say how it ended
    local name=$1 limit=$2
    shift 2
    echo "=== $name (limit ${limit} s)"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    cat "$out/$name.log"
    echo "=== $name: exit $rc after $((SECONDS - started)) s in all"
}

if [ -n "${QUICK:-}" ]; then
    nets=(8:8) ks=(1 2) big_ks=1,2 iterations=4 resolutions=(8) width=8 images=64 ema=(--labels 1 --resolutions 8 --iterations 4 --repeats 1)
else
    nets=(32:64 64:64) ks=(1 4 16 64) big_ks=1,4,16 iterations=20 resolutions=(32 64) width=64 images=1300 ema=(--labels 1 10 --resolutions 8 32 --iterations 10 --repeats 2)
fi

step versions 60 "$python" -c "
import sys, torch, torchvision
print(sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(p.name, p.total_memory // 2**30, 'GiB,', p.multi_processor_count, 'multiprocessors')
"
# The EMA benchmark counts this process's CPU seconds, so it runs beside the GPU steps on a core
# of its own; it ends with the last of them at the latest.
timeout 420 "$python" bench/ema_overhead.py "${ema[@]}" > "$out/ema_overhead.log" 2>&1 &
ema_pid=$!

work=$(mktemp -d)
cli() { "$python" -m wcgan.cli "$@"; }
step cli 90 bash -c "
set -e
$(declare -f cli); python=$python
cli split --source digits --no-download --out-dir $work/shards/c000-001 --indices 0 1 -- 0 1
cli train --shard $work/shards/c000-001 --device $device --threads 1 --iterations 200 --width 16 \\
    --checkpoint-dir $work/checkpoints --checkpoint-seconds 1 --log-seconds 1 --model-out $work/models \\
    --losses-out $work/losses --summary-out $work/training --samples-out $work/samples --samples 100
ls -R $work/training $work/samples
head -c 1500 $work/training/0.json; echo
"
step train_throughput 90 "$python" bench/train_throughput.py --device "$device" \
    --resolutions "${resolutions[@]}" --width "$width" --iterations $((iterations * 2))
[ "$device" = cuda ] && step profile 60 "$python" bench/gpu_profile.py --resolution "${resolutions[-1]}" \
    --width "$width" --iterations "$iterations" --top 12
step one_stage 120 "$python" bench/one_stage.py --device "$device" --resolutions "${resolutions[@]}" \
    --width "$width" --critic-steps 1 5 --iterations "$iterations" --repeats 2
step labels_per_job 240 "$python" bench/labels_per_job.py --device "$device" --nets "${nets[@]}" \
    --ks "${ks[@]}" --iterations "$iterations" --iterations-per-net "${nets[0]}=$iterations" \
    --ks-per-net "${nets[-1]}=$big_ks" --images "$images"
wait "$ema_pid"
echo "=== ema_overhead: exit $? after $((SECONDS - started)) s in all"
cat "$out/ema_overhead.log"
rm -rf "$work"
