#!/bin/sh
# head_e2e.sh - the full server under mpirun: dsa-head on rank 0 driving
# TP=2 x PP=2 dsa-worker ranks (loopback, shared memory, oversubscribed).
# Usage:
#   head_e2e.sh BUILD SRC greedy    streamed greedy completions equal the
#                                   single-process server's, and so do the
#                                   prompt logprobs (prompt_logprobs, echo)
#   head_e2e.sh BUILD SRC spec      with --speculative-config (k = 2) on the
#                                   head and the workers, greedy completions
#                                   equal the single-process server's without
#   head_e2e.sh BUILD SRC structured  grammar-constrained completions (JSON
#                                   schema, regex, choice; greedy and
#                                   seeded) equal the single-process
#                                   server's under TP=4 x PP=1 (one batch in
#                                   flight) and TP=2 x PP=2 (two), and the
#                                   sampling ranks took the masks in their
#                                   own frame after each plan (protocol 6)
#   head_e2e.sh BUILD SRC kill      kill -9 a worker mid-stream: the client
#                                   gets an SSE error event and [DONE] within
#                                   10 s, the job exits non-zero, nothing left
#   head_e2e.sh BUILD SRC stall     SIGSTOP a worker mid-stream: the head's
#                                   step timeout sends an SSE error event and
#                                   [DONE] and ends the job
#   head_e2e.sh BUILD SRC health    SIGSTOP a worker while idle, then
#                                   during a stream: /health turns 503
#                                   within seconds (pings, late steps) and
#                                   200 again after SIGCONT; clean exit
#   head_e2e.sh BUILD SRC badmodel  one worker's --model is wrong: the job
#                                   fails with a message naming rank and path
#   head_e2e.sh BUILD SRC layout    the head is told TP=4 x PP=1 while the
#                                   workers form TP=2 x PP=2: it refuses to
#                                   serve (log, /health 503 with the reason,
#                                   requests 503) and exits 0 on SIGTERM
# Exit 77 (skip) without mpirun or python3, except under CI=true.
set -u
BUILD=$1 SRC=$2 MODE=$3
. "$SRC/tests/mpi/common.sh"
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
HEAD=$BUILD/head/dsa-head WORKER=$BUILD/worker/dsa-worker MK=$BUILD/tools/dsa-mkmodel
CLIENT="python3 $SRC/tests/mpi/head_client.py"
for f in "$HEAD" "$WORKER" "$MK"; do
    [ -x "$f" ] || { echo "missing $f"; exit 1; }
done
"$MK" --out "$TMP/model" --heads 4 --inter 128 --moe-inter 32 --vocab 512 --layers 2 \
    --hidden 64 --seed 11 >"$TMP/mk.log" 2>&1 || { cat "$TMP/mk.log"; exit 1; }
HARGS="--model $TMP/model --served-model-name m --port 0 --port-file $TMP/port --log-format text \
--max-model-len 256 --max-num-seqs 8 --threads 1 --block-size 16"
WARGS="--model $TMP/model --tp 2 --threads 1 --block-size 16 --max-model-len 256 \
--num-blocks 64 --max-num-seqs 8 --preflight-timeout 20"

no_leftovers() {
    sleep 1
    left=$(pgrep -f "$TMP" 2>/dev/null | tr '\n' ' ')
    if [ -n "$left" ]; then
        echo "FAIL: processes left behind: $left"
        ps -o pid,args -p $(echo "$left" | tr ' ' ',') 2>/dev/null
        exit 1
    fi
}
start_job() { # extra head args, then extra worker args after --
    hx=
    while [ $# -gt 0 ] && [ "$1" != -- ]; do hx="$hx $1"; shift; done
    [ $# -gt 0 ] && shift
    rm -f "$TMP/port"
    mpirun --oversubscribe -np 1 "$HEAD" $HARGS --step-timeout 20 --hello-timeout 60 $hx : \
        -np 4 "$WORKER" $WARGS "$@" >"$TMP/job.log" 2>&1 &
    MPIPID=$!
}

case $MODE in
greedy)
    # the single-process server first
    "$HEAD" $HARGS --distributed off >"$TMP/single.log" 2>&1 &
    SPID=$!
    port=$($CLIENT wait "$TMP/port" 60) || { cat "$TMP/single.log"; exit 1; }
    $CLIENT greedy "$port" "$TMP/single.json" || { tail "$TMP/single.log"; exit 1; }
    kill -TERM "$SPID"
    wait "$SPID"
    src=$?
    SPID=
    [ "$src" -eq 0 ] || { echo "FAIL: the single server exited $src"; exit 1; }
    grep -q "MPI\|rank 0" "$TMP/single.log" && { echo "FAIL: MPI without mpirun"; exit 1; }
    # then the same under mpirun, TP=2 x PP=2, the layout the head expects
    start_job --tensor-parallel-size 2 --pipeline-parallel-size 2
    port=$($CLIENT wait "$TMP/port" 90) || { cat "$TMP/job.log"; exit 1; }
    $CLIENT greedy "$port" "$TMP/dist.json" || { tail -30 "$TMP/job.log"; exit 1; }
    grep -q "TP=2 x PP=2; two micro-batches in flight" "$TMP/job.log" ||
        { cat "$TMP/job.log"; echo "FAIL: no TP=2 x PP=2 pipeline"; exit 1; }
    # SIGTERM to the head itself (mpirun would forward it to every rank):
    # it drains, sends Shutdown, and the workers exit 0 too
    hpid=$(pgrep -f "^$HEAD --model $TMP/model")
    kill -TERM $hpid
    wait_job 30
    tail -12 "$TMP/job.log"
    no_leftovers
    [ "$RC" -eq 0 ] || { echo "FAIL: the distributed job exited $RC after SIGTERM"; exit 1; }
    if ! cmp -s "$TMP/single.json" "$TMP/dist.json"; then
        diff "$TMP/single.json" "$TMP/dist.json"
        echo "FAIL: distributed completions differ from the single-process server"
        exit 1
    fi
    $CLIENT plpcmp "$TMP/single.json.plp" "$TMP/dist.json.plp" ||
        { echo "FAIL: distributed prompt logprobs differ from the single-process server"; exit 1; }
    cat "$TMP/dist.json"
    echo "greedy TP=2 x PP=2 = single process; clean exit"
    ;;
spec)
    # speculative decoding with the MTP module under mpirun: a checkpoint
    # with an MTP layer, the single-process server without drafts, then
    # TP=2 x PP=2 with --speculative-config (k = 2) on the head and the
    # workers: the same greedy completions, 40 tokens each
    "$MK" --out "$TMP/mtp" --heads 4 --inter 128 --moe-inter 32 --vocab 512 --layers 2 \
        --hidden 64 --seed 12 --mtp 1 >"$TMP/mk.log" 2>&1 || { cat "$TMP/mk.log"; exit 1; }
    HARGS=$(echo "$HARGS" | sed "s|$TMP/model|$TMP/mtp|")
    WARGS=$(echo "$WARGS" | sed "s|$TMP/model|$TMP/mtp|")
    SPEC='{"method":"deepseek_mtp","num_speculative_tokens":2}'
    "$HEAD" $HARGS --distributed off >"$TMP/single.log" 2>&1 &
    SPID=$!
    port=$($CLIENT wait "$TMP/port" 60) || { cat "$TMP/single.log"; exit 1; }
    $CLIENT greedy "$port" "$TMP/single.json" 40 || { tail "$TMP/single.log"; exit 1; }
    kill -TERM "$SPID"
    wait "$SPID"
    SPID=
    start_job --tensor-parallel-size 2 --pipeline-parallel-size 2 --speculative-config "$SPEC" \
        -- --speculative-config "$SPEC"
    port=$($CLIENT wait "$TMP/port" 90) || { cat "$TMP/job.log"; exit 1; }
    $CLIENT greedy "$port" "$TMP/dist.json" 40 || { tail -30 "$TMP/job.log"; exit 1; }
    drafts=$(curl -s "http://127.0.0.1:$port/metrics" |
        sed -n 's/^vllm:spec_decode_num_draft_tokens_total{[^}]*} \([0-9.]*\)$/\1/p')
    hpid=$(pgrep -f "^$HEAD --model $TMP/mtp")
    kill -TERM $hpid
    wait_job 30
    no_leftovers
    [ "$RC" -eq 0 ] || { tail -20 "$TMP/job.log"; echo "FAIL: the job exited $RC"; exit 1; }
    case "$drafts" in ""|0|0.0) echo "FAIL: no draft tokens verified ($drafts)"; exit 1 ;; esac
    if ! cmp -s "$TMP/single.json" "$TMP/dist.json"; then
        diff "$TMP/single.json" "$TMP/dist.json"
        echo "FAIL: speculative TP=2 x PP=2 completions differ from the single-process server"
        exit 1
    fi
    echo "speculative (k=2, $drafts draft tokens) TP=2 x PP=2 = single process without drafts"
    ;;
structured)
    "$HEAD" $HARGS --distributed off >"$TMP/single.log" 2>&1 &
    SPID=$!
    port=$($CLIENT wait "$TMP/port" 60) || { cat "$TMP/single.log"; exit 1; }
    $CLIENT structured "$port" "$TMP/single.json" || { tail "$TMP/single.log"; exit 1; }
    kill -TERM "$SPID"
    wait "$SPID"
    SPID=
    for layout in "4 1" "2 2"; do
        set -- $layout
        WARGS=$(echo "$WARGS" | sed "s/--tp [0-9]*/--tp $1/")
        start_job --tensor-parallel-size "$1" --pipeline-parallel-size "$2"
        port=$($CLIENT wait "$TMP/port" 90) || { cat "$TMP/job.log"; exit 1; }
        $CLIENT structured "$port" "$TMP/dist.json" || { tail -30 "$TMP/job.log"; exit 1; }
        hpid=$(pgrep -f "^$HEAD --model $TMP/model")
        kill -TERM $hpid
        wait_job 30
        no_leftovers
        [ "$RC" -eq 0 ] || { tail -20 "$TMP/job.log"; echo "FAIL: the job exited $RC"; exit 1; }
        if ! cmp -s "$TMP/single.json" "$TMP/dist.json"; then
            diff "$TMP/single.json" "$TMP/dist.json"
            echo "FAIL: TP=$1 x PP=$2 constrained completions differ from the single process"
            exit 1
        fi
        # the last stage's ranks (tp of them) took each constrained step's
        # masks from a StepMasks frame after its plan
        n=$(grep -c "grammar masks of [1-9][0-9]* steps came after their plan" "$TMP/job.log")
        [ "$n" -eq "$1" ] || { cat "$TMP/job.log"; echo "FAIL: $n ranks report late masks, want $1"; exit 1; }
        grep "grammar masks of" "$TMP/job.log"
        echo "structured TP=$1 x PP=$2 = single process; masks after the plan"
    done
    cat "$TMP/dist.json"
    ;;
kill | stall)
    if [ "$MODE" = kill ]; then
        # mpirun tears the job down (SIGTERM to every rank, SIGKILL soon
        # after): the head sees its step overdue and ends the stream first
        start_job
        sig=KILL want=want-error-event
    else
        # workers' own collective timeout well above the head's step timeout
        start_job --step-timeout 3 -- --timeout 30
        sig=STOP want=want-error-event
    fi
    port=$($CLIENT wait "$TMP/port" 90) || { cat "$TMP/job.log"; exit 1; }
    victim=$(pgrep -f "^$WORKER --model $TMP/model" | sed -n 3p)
    [ -n "$victim" ] || { echo "FAIL: no worker to stop"; exit 1; }
    $CLIENT fault "$port" "$victim" "SIG$sig" $want
    crc=$?
    wait_job 20
    tail -15 "$TMP/job.log"
    no_leftovers
    [ "$crc" -eq 0 ] || { echo "FAIL: the client's check failed"; exit 1; }
    [ "$RC" -ne 0 ] || { echo "FAIL: the job exited 0 after a worker failed"; exit 1; }
    if [ "$MODE" = stall ]; then
        grep -q "dsa: rank 0 (.*dsa-head exits: .*no answer in\|dsa: rank 0 (.*dsa-head exits: .*nothing in" \
            "$TMP/job.log" || { echo "FAIL: the head did not end the job on its timeout"; exit 1; }
    fi
    echo "$MODE of a worker mid-stream: client saw the end, job exit $RC, nothing left"
    ;;
health)
    # step timeout far above the stall: only /health may react
    start_job --health-late-timeout 2 --ping-interval 0.3 --step-timeout 60 -- --timeout 120
    port=$($CLIENT wait "$TMP/port" 90) || { cat "$TMP/job.log"; exit 1; }
    victim=$(pgrep -f "^$WORKER --model $TMP/model" | sed -n 3p)
    [ -n "$victim" ] || { echo "FAIL: no worker to stop"; exit 1; }
    $CLIENT health "$port" "$victim" idle || { tail -20 "$TMP/job.log"; exit 1; }
    $CLIENT health "$port" "$victim" busy || { tail -20 "$TMP/job.log"; exit 1; }
    hpid=$(pgrep -f "^$HEAD --model $TMP/model")
    kill -TERM $hpid
    wait_job 30
    tail -8 "$TMP/job.log"
    no_leftovers
    [ "$RC" -eq 0 ] || { echo "FAIL: the job exited $RC after SIGTERM"; exit 1; }
    echo "stalled worker: /health 503 within seconds, idle and busy; recovered; clean exit"
    ;;
badmodel)
    start=$(date +%s)
    mpirun --oversubscribe -np 1 "$HEAD" $HARGS --hello-timeout 60 : \
        -np 1 "$WORKER" $WARGS : -np 1 "$WORKER" $WARGS --model "$TMP/no-such-model" \
        >"$TMP/job.log" 2>&1 &
    MPIPID=$!
    wait_job 60
    took=$(($(date +%s) - start))
    tail -15 "$TMP/job.log"
    no_leftovers
    [ "$RC" -ne 0 ] || { echo "FAIL: exit 0 with a missing model"; exit 1; }
    grep -q "rank 2 (.*no-such-model" "$TMP/job.log" ||
        { echo "FAIL: no message naming rank 2 and the model"; exit 1; }
    echo "bad --model on rank 2 under dsa-head: job failed with exit $RC in $took s"
    ;;
layout)
    start_job --tensor-parallel-size 4 --pipeline-parallel-size 1
    i=0
    while [ ! -s "$TMP/port" ] && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
    [ -s "$TMP/port" ] || { cat "$TMP/job.log"; echo "FAIL: the head never listened"; exit 1; }
    port=$(cat "$TMP/port")
    # /health: 503 "starting" while the workers load, then 503 "failed"
    i=0 health=
    while [ $i -lt 450 ]; do
        health=$(curl -s -w ' %{http_code}' --max-time 5 "http://127.0.0.1:$port/health")
        case $health in *failed*) break ;; esac
        sleep 0.2
        i=$((i + 1))
    done
    echo "/health: $health"
    case $health in
    *'"reason":"the workers form TP=2 x PP=2, the configured layout is --tensor-parallel-size 4 --pipeline-parallel-size 1"'*' 503') ;;
    *) tail -20 "$TMP/job.log"; echo "FAIL: /health does not refuse the layout with its reason"; exit 1 ;;
    esac
    req=$(curl -s -w ' %{http_code}' --max-time 10 -H 'Content-Type: application/json' \
        -d '{"model":"m","prompt":"Hello","max_tokens":2}' "http://127.0.0.1:$port/v1/completions")
    echo "completion: $req"
    case $req in *'TP=2 x PP=2'*' 503') ;; *) echo "FAIL: a request was not refused with 503"; exit 1 ;; esac
    grep -q "refusing to serve: the workers form TP=2 x PP=2" "$TMP/job.log" ||
        { cat "$TMP/job.log"; echo "FAIL: no error in the log"; exit 1; }
    # still up and still refusing a moment later (no restart loop, no crash)
    sleep 1
    kill -0 "$MPIPID" 2>/dev/null || { cat "$TMP/job.log"; echo "FAIL: the job ended"; exit 1; }
    hpid=$(pgrep -f "^$HEAD --model $TMP/model")
    kill -TERM $hpid
    wait_job 30
    tail -8 "$TMP/job.log"
    no_leftovers
    [ "$RC" -eq 0 ] || { echo "FAIL: the job exited $RC after SIGTERM"; exit 1; }
    echo "TP=4 x PP=1 configured, TP=2 x PP=2 started: refused with the reason; clean exit"
    ;;
*)
    echo "unknown mode $MODE"
    exit 2
    ;;
esac
exit 0
