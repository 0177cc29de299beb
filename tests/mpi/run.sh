#!/bin/sh
# run.sh - multi-rank tests under mpirun on this machine (loopback, shared
# memory), oversubscribed.  Usage:
#   run.sh BUILD SRC logits TP PP [MODEL]
#                                   logits of TP x PP workers = single rank
#   run.sh BUILD SRC masks          TP=2 x PP=2 with grammar masks that
#                                   follow their plans (StepMasks): logits
#                                   and tokens = single rank, tokens masked
#   run.sh BUILD SRC nomasks        masks announced and never sent: the
#                                   sampling ranks fail the step naming the
#                                   masks within their --timeout, the job
#                                   ends non-zero, nothing left
#   run.sh BUILD SRC kill           kill -9 a worker mid-run: the job ends
#                                   non-zero within 10 s, nothing left
#   run.sh BUILD SRC badmodel       one rank's --model is wrong: clear error
#   run.sh BUILD SRC nostart        one rank never starts MPI: bounded failure
#   run.sh BUILD SRC stall          SIGSTOP a worker mid-run (alive, silent):
#                                   the deadlines end the job within 10 s
# Exit 77 (skip) without mpirun, except under CI=true (then a failure).
set -u
BUILD=$1 SRC=$2 MODE=$3
. "$SRC/tests/mpi/common.sh"
WORKER=$BUILD/worker/dsa-worker DRIVER=$BUILD/tests/dist_logits MK=$BUILD/tools/dsa-mkmodel
for f in "$WORKER" "$DRIVER" "$MK"; do
    [ -x "$f" ] || { echo "missing $f"; exit 1; }
done
# logits mode may name a checkpoint (6th argument: the dense golden sets);
# otherwise a random DeepSeek-V3 one is made
MODEL=$TMP/model
if [ "$MODE" = logits ] && [ $# -ge 6 ]; then
    MODEL=$6
else
    "$MK" --out "$TMP/model" --heads 8 --inter 128 --moe-inter 32 --vocab 512 --layers 2 \
        --hidden 64 --seed 11 >"$TMP/mk.log" 2>&1 || { cat "$TMP/mk.log"; exit 1; }
fi
WARGS="--model $MODEL --threads 1 --block-size 4 --max-model-len 32 --num-blocks 40 \
--timeout 20 --preflight-timeout 20"
DARGS="--model $MODEL --step-timeout 20 --hello-timeout 60 --preflight-timeout 20"

# Runs mpirun in the background with a hard bound; sets RC and ELAPSED.
run_job() { # seconds, mpirun args...
    limit=$1
    shift
    start=$(date +%s)
    mpirun --oversubscribe "$@" >"$TMP/out.log" 2>&1 &
    MPIPID=$!
    wait_job "$limit" "$start"
}
no_leftovers() {
    sleep 1
    left=$(pgrep -f "$TMP" 2>/dev/null | tr '\n' ' ')
    if [ -n "$left" ]; then
        echo "FAIL: processes left behind: $left"
        ps -o pid,args -p $(echo "$left" | tr ' ' ',') 2>/dev/null
        exit 1
    fi
}

case $MODE in
logits)
    TP=$4 PP=$5 N=$(($4 * $5))
    run_job 85 -np 1 "$DRIVER" $DARGS --dump "$TMP/logits.f32" : \
        -np "$N" "$WORKER" $WARGS --tp "$TP" --dump-logits "$TMP/logits.f32"
    cat "$TMP/out.log"
    no_leftovers
    [ "$RC" -eq 0 ] || { echo "FAIL: TP=$TP PP=$PP exit $RC after $ELAPSED s"; exit 1; }
    grep -q "dist_logits: .*: ok" "$TMP/out.log" || { echo "FAIL: no comparison"; exit 1; }
    echo "TP=$TP PP=$PP: ok in $ELAPSED s"
    ;;
masks)
    run_job 85 -np 1 "$DRIVER" $DARGS --masks 1 --dump "$TMP/logits.f32" : \
        -np 4 "$WORKER" $WARGS --tp 2 --dump-logits "$TMP/logits.f32"
    cat "$TMP/out.log"
    no_leftovers
    [ "$RC" -eq 0 ] || { echo "FAIL: exit $RC after $ELAPSED s"; exit 1; }
    grep -q "dist_logits: .*: ok" "$TMP/out.log" || { echo "FAIL: no comparison"; exit 1; }
    grep -q "^8 StepMasks frames sent after their plans" "$TMP/out.log" ||
        { echo "FAIL: not 8 StepMasks frames (4 steps x 2 micro-batches)"; exit 1; }
    n=$(grep -c "grammar masks of 8 steps came after their plan" "$TMP/out.log")
    [ "$n" -eq 2 ] || { echo "FAIL: $n last-stage ranks took 8 StepMasks frames, want 2"; exit 1; }
    echo "masks after the plans, TP=2 PP=2: ok in $ELAPSED s"
    ;;
nomasks)
    run_job 60 -np 1 "$DRIVER" $DARGS --masks 2 --step-timeout 30 : \
        -np 4 "$WORKER" $WARGS --tp 2 --timeout 3
    tail -15 "$TMP/out.log"
    no_leftovers
    [ "$RC" -ne 0 ] || { echo "FAIL: exit 0 without masks"; exit 1; }
    [ "$ELAPSED" -le 25 ] || { echo "FAIL: the job took $ELAPSED s to end"; exit 1; }
    grep -q "dsa: rank [34] (.*): step 1: the grammar masks of step 1 from the head: .*nothing in 3.0 s" \
        "$TMP/out.log" || { echo "FAIL: no message naming the missing masks"; exit 1; }
    echo "masks never sent: the job failed with exit $RC in $ELAPSED s, message names them"
    ;;
kill | stall)
    start=$(date +%s)
    mpirun --oversubscribe -np 1 "$DRIVER" $DARGS --loop-seconds 60 --step-timeout 4 \
        --ready-file "$TMP/ready" : -np 4 "$WORKER" $WARGS --tp 2 --timeout 3 \
        >"$TMP/out.log" 2>&1 &
    MPIPID=$!
    i=0
    while [ ! -e "$TMP/ready" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
    [ -e "$TMP/ready" ] || { cat "$TMP/out.log"; echo "FAIL: job never ready"; exit 1; }
    sleep 1
    victim=$(pgrep -f "^$WORKER --model $TMP/model" | sed -n 2p)
    [ -n "$victim" ] || { echo "FAIL: no worker to kill"; exit 1; }
    killed=$(date +%s)
    if [ "$MODE" = kill ]; then
        kill -9 "$victim"
        echo "killed worker pid $victim"
    else
        kill -STOP "$victim"
        echo "stopped worker pid $victim"
    fi
    wait_job 30 "$start"
    took=$(($(date +%s) - killed))
    cat "$TMP/out.log" | tail -20
    no_leftovers
    [ "$RC" -ne 0 ] || { echo "FAIL: the job exited 0 after a worker failed"; exit 1; }
    [ "$took" -le 10 ] || { echo "FAIL: the job took $took s to end"; exit 1; }
    if [ "$MODE" = stall ]; then
        grep -q "dsa: rank [0-9]* (.*no answer in" "$TMP/out.log" ||
            { echo "FAIL: no timeout message naming a rank"; exit 1; }
    fi
    echo "$MODE of a worker: job ended with exit $RC in $took s, nothing left"
    ;;
badmodel)
    run_job 60 -np 1 "$DRIVER" $DARGS : -np 1 "$WORKER" $WARGS --tp 2 : \
        -np 1 "$WORKER" $WARGS --tp 2 --model "$TMP/no-such-model"
    cat "$TMP/out.log" | tail -20
    no_leftovers
    [ "$RC" -ne 0 ] || { echo "FAIL: exit 0 with a missing model"; exit 1; }
    grep -q "rank 2 (.*no-such-model" "$TMP/out.log" ||
        { echo "FAIL: no message naming rank 2 and the model"; exit 1; }
    echo "bad --model on rank 2: job failed with exit $RC in $ELAPSED s, message names the rank"
    ;;
nostart)
    # rank 2 is a program that never calls MPI_Init: the others' start-up
    # watchdog (--preflight-timeout 5) ends the job.
    ln -s "$(command -v sleep)" "$TMP/never-starts"
    run_job 60 -np 1 "$DRIVER" $DARGS --preflight-timeout 5 : \
        -np 1 "$WORKER" $WARGS --tp 2 --preflight-timeout 5 : -np 1 "$TMP/never-starts" 40
    cat "$TMP/out.log" | tail -20
    no_leftovers
    [ "$RC" -ne 0 ] || { echo "FAIL: exit 0 with a rank that never started"; exit 1; }
    [ "$ELAPSED" -le 30 ] || { echo "FAIL: took $ELAPSED s"; exit 1; }
    grep -q "rank [01] (.*did not finish" "$TMP/out.log" ||
        { echo "FAIL: no message naming the rank"; exit 1; }
    echo "a rank that never starts: job failed with exit $RC in $ELAPSED s"
    ;;
launch)
    # dsa-launch builds the documented command line
    cmd=$("$BUILD/tools/dsa-launch" --model "$TMP/model" --tp 8 --pp 2 --hostfile hosts \
        --ifname eth0 --pp-layers 1,1 --dry-run -- --port 8000)
    echo "$cmd"
    for want in "--hostfile hosts" "-np 1 " "dsa-head --model $TMP/model --port 8000 :" \
        "-np 16 " "dsa-worker --model $TMP/model --tp 8 --pp-layers 1,1" \
        "btl_tcp_if_include eth0" "NCCL_SOCKET_IFNAME=eth0"; do
        case $cmd in *"$want"*) ;; *) echo "FAIL: no '$want'"; exit 1 ;; esac
    done
    # a speculative config given to the head reaches every worker too
    cmd=$("$BUILD/tools/dsa-launch" --model "$TMP/model" --tp 2 --pp 2 --dry-run -- \
        --speculative-config '{"num_speculative_tokens":2}' --port 8000)
    echo "$cmd"
    case $cmd in
    *"dsa-head "*"--speculative-config "*" : -np 4 "*"dsa-worker "*"--speculative-config '{\"num_speculative_tokens\":2}'") ;;
    *) echo "FAIL: --speculative-config not given to both the head and the workers"; exit 1 ;;
    esac
    echo "dsa-launch: ok"
    ;;
*)
    echo "unknown mode $MODE"
    exit 2
    ;;
esac
exit 0
