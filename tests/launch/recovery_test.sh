#!/usr/bin/env bash
# Recovery with real processes (ctest runs each case): a 4-rank job on loopback, recovery on
# (tessel-launch --nnodes 1:1), loses ranks mid-run and goes on, resharded onto the survivors.
#
#   recovery_test.sh BIN baseline LAYOUT    no failure: every rank ends equal to one device
#   recovery_test.sh BIN kill LAYOUT        kill -9 of member 2 mid-run
#   recovery_test.sh BIN stop LAYOUT        SIGSTOP of member 2: only the heartbeat deadline can tell
#   recovery_test.sh BIN coordinator LAYOUT kill -9 of member 0, whose process hosts the coordinator
#   recovery_test.sh BIN twice LAYOUT       member 2 killed, then later member 1 as well
#   recovery_test.sh BIN during LAYOUT      member 1 killed, and member 3 a few milliseconds later,
#                                           while the others recover
#   recovery_test.sh BIN adjacent LAYOUT    members 2 and 3 killed at once: a slice and its buddy's
#                                           copy are both gone, and the newest checkpoint serves
#   recovery_test.sh BIN intruder LAYOUT    member 2 killed; joins with a wrong token, and as rank 2
#                                           again, are refused while the job recovers
#   recovery_test.sh BIN node-killed LAYOUT every process of node 1 killed (2 nodes in network
#                                           namespaces over a veth pair, 2 ranks each)
#   recovery_test.sh BIN node0-killed LAYOUT every process of node 0, the coordinator's, killed
#   recovery_test.sh BIN node-cut LAYOUT    node 1's link cut and its processes frozen
#   recovery_test.sh BIN node0-cut LAYOUT   node 0's link cut and its processes frozen: the
#                                           coordinator's node answers nothing, and node 1 elects
#                                           one of its own
#   recovery_test.sh BIN grow LAYOUT        3 ranks; a 4th joins mid-run (tessel-launch --join), and
#                                           the final parameters equal a run of 3 ranks up to the
#                                           step it joined at and 4 after it
#   recovery_test.sh BIN restart LAYOUT     kill -9 of member 2; its launcher starts it again
#                                           (--max-restarts 1) and the job grows back to 4 ranks
#   recovery_test.sh BIN restart0 LAYOUT    the same for member 0, whose process hosts the coordinator
#   recovery_test.sh BIN node-replaced LAYOUT
#                                           every process of node 1 killed, then a new launcher
#                                           there joins the running job: 2 nodes again
#   RECOVERY_SEED=S recovery_test.sh BIN random LAYOUT
#                                           two members (any, member 0 too) killed at random steps,
#                                           after a random delay into the step
#
# Each passes when the launcher exits 0, every surviving rank's parameters equal the one-device
# run's within 1e-5 relative (the example checks its own shards), every restored state equals
# the one-device run's at the step it was restored to, and the samples the final parameters saw
# are every step's, each exactly once (from a survivor's own log: the steps after a restored one
# run again, and only the second time counts). A member that joined logs from the step it
# resumed at on, each step once. BIN is the build folder. Every wait is bounded;
# processes started here are killed on exit.
set -uo pipefail
bin=$1 mode=$2 layout=$3
launch=$bin/apps/launch/tessel-launch
example=$bin/apps/parallel/tessel-example
work=$(mktemp -d)
group=
cleanup() {
  [ -n "$group" ] && pkill -9 -s "$group" 2>/dev/null
  [ -n "$group" ] && pkill -CONT -s "$group" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"; echo "--- job log"; tail -n 40 "$work/job.log"
  [ -f "$work/joiner.log" ] && { echo "--- the joining launcher's log"; tail -n 30 "$work/joiner.log"; }
  exit 1
}

steps=400 kill_at=100
extra=() grow=()
nproc=4 joined=0
# A replacement's start-up, on a loaded machine, can take seconds: growing runs longer, so that it
# joins well before the end. That long, AdamW's rounding drifts apart across layouts (past 1e-5
# from one device after about 500 steps, without any failure), so the final parameters of a run
# that grew are compared with the same run's layouts one after another: each stopped at the step
# the next one resumed at (a checkpoint) and resumed with the next one's ranks. The states restored
# on the way are compared with one device within 1e-5, as everywhere.
tolerance=1e-5 final_tolerance=1e-5
case $mode in
grow) nproc=3 joined=1 steps=1000 ;;
restart | restart0) grow=(--max-restarts 1) joined=1 steps=1000 ;;
node-replaced) joined=2 steps=1200 ;;
esac
[ $joined -gt 0 ] && final_tolerance=1e-2
[ "$layout" = hybrid ] && extra=(--devices 8)  # 2 devices per rank: a 4x2 mesh, 3x2 after a loss
# The heartbeat deadline: only a frozen rank needs it to be found (a killed one is seen at once), and
# under load a short one would also remove live ranks, which the job survives but the test does not
# expect (under CI's load, one rank once went 6 s without an answer to its heartbeat).
deadline=10
[ "$mode" = stop ] && deadline=2
# The pid of the example process that is member (first rank) $1, looked up once for all members
# (a scan under load is slow, and a job of short steps may be past the kill point meanwhile).
declare -A member_pid=()
find_members() {  # in this shell, right after the launch
  for _ in $(seq 500); do
    for p in $(pgrep -s "$group" -f "apps/parallel/tessel-example"); do
      m=$(tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | sed -n 's/^TESSEL_RANK=//p')
      [ -n "$m" ] && member_pid[$m]=$p
    done
    [ ${#member_pid[@]} -ge $nproc ] && return
    sleep 0.02
  done
  fail "the job's $nproc processes did not all start"
}
pid_of() {
  [ -n "${member_pid[$1]:-}" ] || { echo "FAIL: no process of member $1" >&2; return; }
  echo "${member_pid[$1]}"
}
# Waits until member 0 logged $1 steps (bounded).
wait_for_step() {
  for _ in $(seq 3000); do
    [ -f "$work/s.member$watch" ] && [ "$(grep -c '^step' "$work/s.member$watch")" -ge "$1" ] && return
    sleep 0.01
  done
  fail "the job did not reach step $1"
}

[ "$mode" = adjacent ] && extra+=(--checkpoint-dir "$work/ck" --checkpoint-every 20)
[ "$mode" = node-cut ] || [ "$mode" = node0-cut ] && deadline=2
if [ "${mode#node}" != "$mode" ]; then
  # Two nodes: network namespaces, each joined by a veth pair to a bridge in a third (the switch),
  # 2 ranks each (members 0, 1 on node 0 and 2, 3 on node 1), UCX over tcp between them as between
  # two hosts. Cutting a node's cable at the switch leaves the other's link up.
  if ! ip netns add tessel-probe-$$ 2>/dev/null; then
    echo "SKIP: cannot make network namespaces here (needs root and iproute2)"; exit 0
  fi
  ip netns del tessel-probe-$$
  na=tessel-na-$$ nb=tessel-nb-$$ hub=tessel-hub-$$
  namespaces="$na $nb $hub"
  trap 'cleanup; for ns in $namespaces; do ip netns del $ns 2>/dev/null; done' EXIT
  ip netns add $na && ip netns add $nb && ip netns add $hub || fail "ip netns add"
  ip -n $hub link add br-$$ type bridge && ip -n $hub link set br-$$ up || fail "ip link add bridge"
  for side in a b; do
    ns=$([ $side = a ] && echo $na || echo $nb) address=$([ $side = a ] && echo 10.79.0.1 || echo 10.79.0.2)
    ip link add nv$side-$$ netns $ns type veth peer name hv$side-$$ netns $hub || fail "ip link add veth"
    ip -n $hub link set hv$side-$$ master br-$$ && ip -n $hub link set hv$side-$$ up
    ip -n $ns addr add $address/24 dev nv$side-$$ && ip -n $ns link set nv$side-$$ up && ip -n $ns link set lo up
  done
  # UCX lists only running devices: wait for both nodes' ends to report a carrier.
  for _ in $(seq 50); do
    [ "$(ip netns exec $na cat /sys/class/net/nva-$$/operstate)" = up ] &&
      [ "$(ip netns exec $nb cat /sys/class/net/nvb-$$/operstate)" = up ] && break
    sleep 0.1
  done
  for node in 0 1; do
    ns=$([ $node = 0 ] && echo $na || echo $nb) dev=$([ $node = 0 ] && echo nva-$$ || echo nvb-$$)
    ip netns exec $ns env UCX_TLS=tcp UCX_NET_DEVICES=$dev setsid "$launch" --nnodes 1:2 --node-rank $node \
      --nproc-per-node 2 --master-addr 10.79.0.1 --master-port 29700 --token nodes-$$ \
      --heartbeat-deadline $deadline -- "$example" "$layout" "${extra[@]}" --steps $steps --every 50 \
      --sample-log "$work/s" --tolerance $final_tolerance --save-parameters "$work/p" > "$work/node$node.log" 2>&1 &
    eval "node${node}_sid=\$!"
  done
  # The job's log is the surviving node's; `group` is its launcher.
  if [ "$mode" = node0-killed ] || [ "$mode" = node0-cut ]; then group=$node1_sid other=$node0_sid; ln -s node1.log "$work/job.log"
  else group=$node0_sid other=$node1_sid; ln -s node0.log "$work/job.log"; fi
else
  setsid "$launch" --nnodes 1:1 --nproc-per-node $nproc "${grow[@]}" --heartbeat-deadline $deadline -- "$example" \
    "$layout" "${extra[@]}" --steps $steps --every 50 --sample-log "$work/s" --tolerance $final_tolerance \
    --save-parameters "$work/p" > "$work/job.log" 2>&1 &
  group=$!
  find_members
fi
lost=0
watch=0  # a member that survives: its log and lines are checked
[ "$mode" = coordinator ] || [ "$mode" = restart0 ] && watch=1
[ "$mode" = node0-killed ] || [ "$mode" = node0-cut ] && watch=2
if [ "$mode" = random ]; then  # RECOVERY_SEED picks two members, the steps and delays they die at
  RANDOM=${RECOVERY_SEED:-1}
  first=$((RANDOM % 4)) second=$(((first + 1 + RANDOM % 3) % 4))
  first_step=$((30 + RANDOM % 150)) second_gap=$((30 + RANDOM % 100))
  first_delay=$((RANDOM % 10)) second_delay=$((RANDOM % 10))
  for m in 0 1 2 3; do [ $m != $first ] && [ $m != $second ] && { watch=$m; break; }; done
  echo "seed ${RECOVERY_SEED:-1}: member $first at step $first_step + ${first_delay} ms, member $second $second_gap steps later + ${second_delay} ms"
fi
case $mode in
baseline) ;;
kill)
  wait_for_step $kill_at
  kill -9 "$(pid_of 2)"; lost=1 ;;
stop)
  wait_for_step $kill_at
  victim=$(pid_of 2)
  kill -STOP "$victim"; lost=1 ;;
coordinator)  # member 0, whose process hosts the coordinator: the survivors elect member 1's standby
  wait_for_step $kill_at
  kill -9 "$(pid_of 0)"; lost=1 ;;
random)
  wait_for_step $first_step
  sleep "0.00$first_delay"
  kill -9 "$(pid_of $first)"
  # The second loss comes after the job recovered from the first (when the test ran late, both
  # could otherwise land together, and a slice with its buddy's copy: only a checkpoint serves that).
  for _ in $(seq 3000); do grep -q "^resumed at step" "$work/s.member$watch" 2>/dev/null && break; sleep 0.01; done
  wait_for_step $((first_step + second_gap))
  sleep "0.00$second_delay"
  kill -9 "$(pid_of $second)"; lost=2 ;;
intruder)  # while the job recovers, joins with a wrong token, and as a lost member, are refused
  wait_for_step $kill_at
  kill -9 "$(pid_of 2)"; lost=1
  port=$(sed -n 's/.*coordinator at 127.0.0.1:\([0-9]*\).*/\1/p' "$work/job.log" | head -1)
  timeout 30 "$launch" --nnodes 2 --node-rank 1 --master-port "$port" --token wrong-token -- "$example" "$layout" \
    > "$work/intruder.log" 2>&1
  grep -q "refused rank 1: wrong job token" "$work/intruder.log" || fail "the wrong token was not refused: $(tail -3 "$work/intruder.log")"
  token=$(tr '\0' '\n' < "/proc/$(pid_of 1)/environ" | sed -n 's/^TESSEL_JOB_TOKEN=//p')
  timeout 30 "$launch" --nnodes 4 --node-rank 2 --nproc-per-node 1 --master-port "$port" --token "$token" -- \
    "$example" "$layout" > "$work/impostor.log" 2>&1
  grep -q "refused rank 2: rank 2 has already joined" "$work/impostor.log" ||
    fail "a second rank 2 was not refused: $(tail -3 "$work/impostor.log")" ;;
node-killed | node0-killed)  # every process of one node (node 0's hosts the coordinator)
  wait_for_step $kill_at
  pkill -9 -s "$other"; lost=2 ;;
grow)  # a 4th rank joins the 3, from another launcher with the job's port and token
  wait_for_step $kill_at
  port=$(sed -n 's/.*coordinator at 127.0.0.1:\([0-9]*\).*/\1/p' "$work/job.log" | head -1)
  token=$(tr '\0' '\n' < "/proc/$(pid_of 1)/environ" | sed -n 's/^TESSEL_JOB_TOKEN=//p')
  timeout 30 "$launch" --join --nnodes 1:1 --master-port "$port" --token wrong-token -- "$example" "$layout" \
    > "$work/intruder.log" 2>&1 && fail "a replacement with a wrong token was let in"
  grep -q "refused rank [0-9]*: wrong job token" "$work/intruder.log" ||
    fail "the wrong token was not refused: $(tail -3 "$work/intruder.log")"
  timeout 120 "$launch" --join --nnodes 1:1 --node-rank 0 --nproc-per-node 1 --master-port "$port" --token "$token" \
    --heartbeat-deadline $deadline -- "$example" "$layout" "${extra[@]}" --steps $steps --every 50 \
    --sample-log "$work/s" --tolerance $final_tolerance --save-parameters "$work/p" > "$work/joiner.log" 2>&1 ||
    fail "the joining launcher failed: $(tail -5 "$work/joiner.log")" ;;
restart)  # its launcher starts it again: it joins as member 4
  wait_for_step $kill_at
  kill -9 "$(pid_of 2)"; lost=1 ;;
restart0)  # the coordinator's process: member 1 takes over, and listens on the job's port for the restarted one
  wait_for_step $kill_at
  kill -9 "$(pid_of 0)"; lost=1 ;;
node-replaced)  # node 1 dies; a new launcher on it joins the running job with its 2 ranks
  wait_for_step $kill_at
  pkill -9 -s "$other"; lost=2
  wait "$other" 2>/dev/null
  for _ in $(seq 3000); do grep -q "^resumed at step" "$work/s.member$watch" 2>/dev/null && break; sleep 0.01; done
  wait_for_step $((kill_at + 40))
  ip netns exec $nb env UCX_TLS=tcp UCX_NET_DEVICES=nvb-$$ timeout 120 "$launch" --join --nnodes 1:2 --node-rank 1 \
    --nproc-per-node 2 --master-addr 10.79.0.1 --master-port 29700 --token nodes-$$ --heartbeat-deadline $deadline \
    -- "$example" "$layout" "${extra[@]}" --steps $steps --every 50 --sample-log "$work/s" --tolerance $final_tolerance \
    --save-parameters "$work/p" > "$work/joiner.log" 2>&1 || fail "the joining launcher failed: $(tail -5 "$work/joiner.log")" ;;
node0-cut)  # node 0's link cut and its processes frozen: its members neither answer nor refuse
  wait_for_step $kill_at
  ip -n $hub link set hva-$$ down
  pkill -STOP -s "$other"; lost=2 ;;
node-cut)  # node 1's link cut and its processes frozen: only the heartbeat deadline can tell
  wait_for_step $kill_at
  ip -n $hub link set hvb-$$ down
  pkill -STOP -s "$other"; lost=2 ;;
twice)
  wait_for_step $kill_at
  kill -9 "$(pid_of 2)"
  for _ in $(seq 3000); do grep -q "^resumed at step" "$work/s.member$watch" 2>/dev/null && break; sleep 0.01; done
  wait_for_step $((kill_at + 60))
  kill -9 "$(pid_of 1)"; lost=2 ;;
during)  # members 1 and 3 keep their buddy copies on 2 and 0: their slices survive both losses
  wait_for_step $kill_at
  second=$(pid_of 3)
  kill -9 "$(pid_of 1)"
  sleep 0.005
  kill -9 "$second"; lost=2 ;;
adjacent)  # members 2 and 3 at once: 2's slices and their copy on 3 are gone; the checkpoint serves
  wait_for_step $kill_at
  second=$(pid_of 3)
  kill -9 "$(pid_of 2)" "$second"; lost=2 ;;
*) echo "unknown mode '$mode'"; exit 2 ;;
esac
if [ -n "${victim:-}" ] || [ "$mode" = node-cut ] || [ "$mode" = node0-cut ]; then  # the frozen stay frozen until the others finished
  for _ in $(seq 1200); do
    [ "$(grep -c "parameters after" "$work/job.log")" -ge $((4 - lost)) ] && break
    sleep 0.1
  done
  [ -n "${victim:-}" ] && kill -9 "$victim"
  [ "$mode" = node-cut ] || [ "$mode" = node0-cut ] && pkill -9 -s "$other"
fi
for _ in $(seq ${RECOVERY_WAIT:-1200}); do kill -0 "$group" 2>/dev/null || break; sleep 0.1; done
kill -0 "$group" 2>/dev/null && fail "the job did not finish within 120 s"
wait "$group"; status=$?
[ "$status" = 0 ] || fail "the launcher exited $status"
survivors=$((nproc - lost + joined))
# The losses came mid-run: the lost members' logs stop short of the last step. A member that
# joined logs from the step it resumed at: each step from there once, and the last one.
joiners=0
for log in "$work"/s.member*; do
  if [ "$(head -1 "$log" | cut -d' ' -f1-3)" = "resumed at step" ]; then
    joiners=$((joiners + 1))
    awk -v last=$((steps - 1)) 'NR == 1 { from = $4; next } /^resumed at step/ { for (s in seen) if (s + 0 >= $4) delete seen[s]; next }
      /^step/ { if ($2 in seen) { print "step " $2 " twice"; bad = 1 } seen[$2] = 1 }
      END { for (s = from; s <= last; s++) if (!(s in seen)) { print "step " s " missing"; bad = 1 }; exit bad }' "$log" ||
      fail "the member that joined ($log) did not train every step from where it joined, once"
    continue
  fi
  [ "$(grep -c '^step' "$log")" -lt $steps ] && lost=$((lost - 1))
done
[ "$lost" = 0 ] || fail "$((nproc - survivors + joined)) member(s) were to be lost mid-run, but the job had finished first"
[ "$joiners" = "$joined" ] || fail "$joiners member(s) joined the running job, expected $joined"
lost=$((nproc - survivors + joined))
# The job's log, and a joining launcher's.
all_logs() { cat "$work/job.log"; [ ! -f "$work/joiner.log" ] || cat "$work/joiner.log"; }
same=$(all_logs | grep -c "parameters after .* the same numbers")
[ "$same" = "$survivors" ] || fail "$same of $survivors surviving ranks ended equal to one device within 1e-5"
recoveries=$(grep -c "^\[rank $watch\] .*recovered: epoch" "$work/job.log")
[ "$mode" = baseline ] || [ "$recoveries" -ge 1 ] || fail "member $watch logged no recovery"
restored=$(all_logs | grep -c "^\[rank .\] restored state at step .* the same numbers")
[ "$restored" -ge "$recoveries" ] || fail "a restored state differed from the one-device run at its step"
all_logs | grep "restored state at step .* DIFFERENT" && fail "a restored state differed from the one-device run"
all_logs | sed -n 's/.*restored state at step [0-9]*, now rank [0-9]* of [0-9]*: largest difference from one device \([0-9.e+-]*\).*/\1/p' |
  awk -v t=$tolerance '$1 > t { print "a restored state is " $1 " from one device"; bad = 1 } END { exit bad }' ||
  fail "a restored state differed from the one-device run by more than $tolerance"
# The samples the final parameters saw, from a survivor's log: a resume drops the steps after it.
awk '/^resumed at step/ { from = $4; for (s in seen) if (s + 0 >= from) delete seen[s]; next }
     /^step/ { if ($2 in seen) { print "step " $2 " twice"; bad = 1 } seen[$2] = $4 }
     END { n = 0; for (s in seen) n++
           for (s = 0; s < n; s++) if (!(s in seen)) { print "step " s " missing"; bad = 1 }
           print n " steps"; exit bad }' "$work/s.member$watch" > "$work/samples.check" ||
  fail "the samples are wrong: $(head -3 "$work/samples.check")"
[ "$(tail -1 "$work/samples.check")" = "$steps steps" ] || fail "expected $steps steps, $(tail -1 "$work/samples.check")"
# Each step's samples are its batch: 64 rows, in order.
awk '/^step/ { split($4, r, "-"); if (r[1] != $2 * 64 || r[2] != $2 * 64 + 63) { print; exit 1 } }' "$work/s.member$watch" ||
  fail "a step trained on other samples than its batch"
if [ "$mode" = intruder ]; then
  grep -q "gate: refused .*: its proof of the job token is wrong" "$work/job.log" || fail "the refusal was not logged"
  echo "refused during the recovery: a wrong token, and a second rank 2"
fi
grep "^\[rank $watch\] .*recovered: epoch" "$work/job.log" | sed 's/^.*recovered: /recovered: /'
grep "^\[rank $watch\] restored state at step" "$work/job.log" | sed 's/^\[rank .\] //'
grep "^\[rank $watch\] parameters after" "$work/job.log" | sed 's/^\[rank .\] //'
if [ $joined -gt 0 ]; then
  # The layouts one after another: $nproc ranks from step 0, then the ranks of each recovery from
  # the step it resumed at (from the watched member's log), each stopped by a checkpoint where the
  # next one resumes. The grown run must end with those parameters.
  segments="$nproc 0"
  while read -r n from; do segments="$segments
$n $from"; done < <(grep "^\[rank $watch\] .*recovered: epoch" "$work/job.log" |
    sed -n 's/.*now rank [0-9]* of \([0-9]*\) over .*, resumed at step \([0-9]*\) .*/\1 \2/p')
  echo "$segments" > "$work/segments"
  count=$(wc -l < "$work/segments")
  plan=""
  for k in $(seq "$count"); do
    read -r n from < <(sed -n "${k}p" "$work/segments")
    to=$steps
    [ "$k" -lt "$count" ] && to=$(sed -n "$((k + 1))p" "$work/segments" | cut -d' ' -f2)
    [ "$from" = "$to" ] && continue
    args=(--steps "$to" --no-check --devices "$n" --checkpoint-dir "$work/ck")
    [ "$from" -gt 0 ] && args+=(--resume)
    if [ "$k" -lt "$count" ]; then args+=(--checkpoint-every "$to"); else args+=(--save-parameters "$work/r"); fi
    timeout 120 "$launch" --nproc-per-node "$n" -- "$example" "$layout" "${args[@]}" >> "$work/ref.log" 2>&1 ||
      fail "the reference's $n ranks from step $from failed: $(tail -3 "$work/ref.log")"
    plan="$plan${plan:+, then }$n ranks from step $from"
  done
  cat "$work"/r.rank* > "$work/ref.txt" && cat "$work"/p.rank* > "$work/grown.txt"
  awk 'FNR == 1 { file++ }
       file == 1 { ref[$1 " " $2] = $3; v = $3 < 0 ? -$3 : $3; if (v > scale[$1]) scale[$1] = v; next }
       { k = $1 " " $2; if (!(k in ref)) { print "no " k " in the reference"; bad = 1; next }
         d = $3 - ref[k]; d = d < 0 ? -d : d; s = scale[$1] < 1e-3 ? 1e-3 : scale[$1]
         if (d / s > worst) { worst = d / s; at = k }; seen[k] = 1 }
       END { for (k in ref) if (!(k in seen)) { print "no " k " in the grown run"; bad = 1 }
             printf "largest difference from %s: %.2e (relative, %s)\n", plan, worst,
               at == "" ? "every element equal, bit for bit" : "at " at
             exit bad || worst > 1e-5 }' plan="$plan" "$work/ref.txt" "$work/grown.txt" > "$work/compare" ||
    fail "the grown run differs from its layouts run one after another: $(tail -2 "$work/compare")"
  cat "$work/compare"
fi
ended="with the one-device parameters"
[ $joined -gt 0 ] && ended="with the parameters of its layouts run in turn, restored states within $tolerance of one device"
echo "PASS: $layout over $nproc ranks, $mode: $lost lost, $joined joined, $survivors finished $ended; every sample once"
