#!/usr/bin/env bash
# A two-node Ray cluster on one machine whose worker node shares no disk with the driver, and a sweep through it.
#
#   bash docs/cluster_on_one_machine.sh [WORKDIR]      (Linux, root for `unshare --mount`; run from the repository)
#
# The head node runs here; the worker node runs inside its own mount namespace with a tmpfs over WORKDIR/private,
# where the sweep folder lives: the worker cannot see it, as on a cluster whose nodes share no disk. Trials
# persist through --storage (WORKDIR/shared, which both nodes see) and the driver pulls them into its sweep folder.
# Token auth is on with one token for every process. The nodes stop when the script ends (SIGTERM to the
# `ray start --block` processes it started; never `ray stop`, which ends every Ray process on the machine).
set -euo pipefail
WORK=$(realpath -m "${1:-cluster_demo}")
TALSEARCH=${TALSEARCH:-.venv/bin/talsearch}
RAY=${RAY:-.venv/bin/ray}
PORT=${PORT:-6390}
mkdir -p "$WORK/private" "$WORK/shared"
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export RAY_AUTH_TOKEN

"$RAY" start --head --port="$PORT" --num-cpus=1 --dashboard-host=127.0.0.1 --block > "$WORK/head.log" 2>&1 &
HEAD=$!
sleep 15
unshare --mount --propagation private sh -c \
  "mount -t tmpfs tmpfs '$WORK/private' && exec '$RAY' start --address=127.0.0.1:$PORT --num-cpus=1 --block" \
  > "$WORK/worker.log" 2>&1 &
WORKER=$!
trap 'kill -TERM $WORKER $HEAD 2>/dev/null; wait' EXIT
sleep 20

[ -f "$WORK/data/annotations.json" ] || "$TALSEARCH" synth "$WORK/data" --videos 8 --size 32
SETTINGS=(search.num_samples=2 search.trial_workers=1 train.epochs=2 data.image_size=32 model.tiny_width=8
          "tracking.uri=sqlite:///$WORK/shared/mlflow.db")
# 1. without --storage the worker node cannot see the sweep folder: the pre-flight check stops the sweep (exit 2)
"$TALSEARCH" sweep --data "$WORK/data" --config configs/sweep_demo.yaml --out "$WORK/private/sweep" \
    --address "127.0.0.1:$PORT" --check --set "${SETTINGS[@]}" || echo "pre-flight refused the unshared folder (exit $?)"
# 2. with --storage on a folder both nodes see, every trial reaches the driver's sweep folder
"$TALSEARCH" sweep --data "$WORK/data" --config configs/sweep_demo.yaml --out "$WORK/private/sweep" \
    --address "127.0.0.1:$PORT" --storage "$WORK/shared/storage" --set "${SETTINGS[@]}"
"$TALSEARCH" leaderboard "$WORK/private/sweep"
