#!/usr/bin/env bash
# Recovery, measured (issue 14's figures): the time to recover, phase by phase, and what the
# snapshots cost a fault-free step.
#
#   bench/recovery_bench.sh [BUILD_DIR] [TRIALS]
#   SECTIONS="4 5" bench/recovery_bench.sh    only some of the sections below
#
# 1. 4 ranks on loopback, each example layout: kill -9 of member 2 at step 200, and of member 0
#    (the coordinator's process). "detect" is from the kill to when the survivors heard; the phases
#    are from hearing; "first step" is the first step after the failure, done, from the kill.
# 2. SIGSTOP of member 2 with a 2 s heartbeat deadline: only the deadline can tell.
# 3. 2 nodes in network namespaces over a veth pair (2 ranks each, UCX over tcp): node 1's
#    processes killed. Needs root and iproute2; skipped otherwise.
# 4. Time per fault-free step: recovery off, and on with snapshots every step, every 10, and at the
#    default pace (as often as costs under 5%).
# 5. Growing back on loopback: member 2 killed and started again by its launcher (--max-restarts 1),
#    and a 4th rank joining 3 (tessel-launch --join). The phases are those of the recovery that took
#    the new rank in; "4 ranks" is when its first step was done, from the kill or the join's launch.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build} trials=${2:-3}
launch=$bin/apps/launch/tessel-launch example=$bin/apps/parallel/tessel-example
work=$(mktemp -d)
trap 'pkill -9 -f "$work" 2>/dev/null; for ns in ${namespaces:-}; do ip netns del $ns 2>/dev/null; done; rm -rf "$work"' EXIT
size=(--hidden 1024 --no-check --every 100000)
now_ms() { date +%s%3N; }
sections=" ${SECTIONS:-1 2 3 4 5} "
wanted() { [[ $sections == *" $1 "* ]]; }
pid_of() {  # the example process of member $1 under session $2
  for _ in $(seq 100); do
    for p in $(pgrep -s "$2" -f "apps/parallel/tessel-example"); do
      tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "TESSEL_RANK=$1" && { echo "$p"; return; }
    done
    sleep 0.02
  done
}
wait_steps() {  # until member $1's sample log has $2 steps
  for _ in $(seq 3000); do
    [ -f "$work/s.member$1" ] && [ "$(grep -c '^step' "$work/s.member$1")" -ge "$2" ] && return
    sleep 0.005
  done
}
# The recovery line of a survivor's log, as "detect abort reform replan restore first_step".
phases() {  # LOG KILLED_AT_MS
  sed -n 's/.*heard at \([0-9]*\) ms (unix); abort \([0-9]*\) ms, re-form \([0-9]*\) ms, re-plan \([0-9]*\) ms, restore \([0-9]*\) ms, first step done \([0-9]*\) ms.*/\1 \2 \3 \4 \5 \6/p' "$1" |
    head -1 | awk -v k="$2" '{ printf "%8d %7d %8d %8d %8d %11d %11d\n", $1 - k, $2, $3, $4, $5, $6, $1 - k + $6 }'
}
header() { printf "%-16s %-12s %8s %7s %8s %8s %8s %11s %11s\n" layout lost "detect" abort re-form re-plan restore "from heard" "from kill"; }
if wanted 1; then
echo "== 1. kill -9 on loopback, 4 ranks (ms; first step: the first step after the failure, done)"
header
for layout in data-parallel tensor-parallel pipeline hybrid; do
  extra=(); [ $layout = hybrid ] && extra=(--devices 8)
  for victim in 2 0; do
    watch=$([ $victim = 0 ] && echo 1 || echo 0)
    for t in $(seq "$trials"); do
      rm -f "$work"/s.member*
      setsid "$launch" --nnodes 1:1 --nproc-per-node 4 -- "$example" $layout "${extra[@]}" "${size[@]}" --steps 600 \
        --sample-log "$work/s" > "$work/job.log" 2>&1 &
      sid=$!
      wait_steps $watch 200
      p=$(pid_of $victim $sid); killed=$(now_ms); kill -9 "$p"
      wait $sid
      line=$(grep "^\[rank $watch\] .*recovered: epoch" "$work/job.log" > "$work/line"; phases "$work/line" "$killed")
      printf "%-16s %-12s %s\n" $layout "member $victim" "${line:-(no recovery line)}"
    done
  done
done
fi
if wanted 2; then
echo
echo "== 2. SIGSTOP of member 2, heartbeat deadline 2 s (tensor-parallel)"
header
for t in $(seq "$trials"); do
  rm -f "$work"/s.member*
  setsid "$launch" --nnodes 1:1 --nproc-per-node 4 --heartbeat-deadline 2 -- "$example" tensor-parallel "${size[@]}" \
    --steps 1500 --sample-log "$work/s" > "$work/job.log" 2>&1 &
  sid=$!
  wait_steps 0 200
  p=$(pid_of 2 $sid); stopped=$(now_ms); kill -STOP "$p"
  for _ in $(seq 600); do [ "$(grep -c 'trained' "$work/job.log")" -ge 1 ] && break; sleep 0.1; done
  kill -9 "$p"; wait $sid
  grep "^\[rank 0\] .*recovered: epoch" "$work/job.log" > "$work/line"
  printf "%-16s %-12s %s\n" tensor-parallel "member 2" "$(phases "$work/line" "$stopped")"
done
fi
if wanted 3; then
echo
echo "== 3. 2 nodes in network namespaces over veth, 2 ranks each, UCX over tcp: node 1 killed"
if ip netns add tessel-probe-$$ 2>/dev/null; then
  ip netns del tessel-probe-$$
  a=tessel-ra-$$ b=tessel-rb-$$ namespaces="$a $b"
  ip netns add $a && ip netns add $b
  ip link add rva-$$ netns $a type veth peer name rvb-$$ netns $b
  ip -n $a addr add 10.78.0.1/24 dev rva-$$ && ip -n $b addr add 10.78.0.2/24 dev rvb-$$
  for ns in $a $b; do ip -n $ns link set lo up; done
  ip -n $a link set rva-$$ up && ip -n $b link set rvb-$$ up
  for _ in $(seq 50); do
    [ "$(ip netns exec $b cat /sys/class/net/rvb-$$/operstate)" = up ] && break; sleep 0.1
  done
  header
  for layout in data-parallel tensor-parallel; do
    for t in $(seq "$trials"); do
      rm -f "$work"/s.member*
      for node in 0 1; do
        ns=$([ $node = 0 ] && echo $a || echo $b) dev=$([ $node = 0 ] && echo rva-$$ || echo rvb-$$)
        ip netns exec $ns env UCX_TLS=tcp UCX_NET_DEVICES=$dev setsid "$launch" --nnodes 1:2 --node-rank $node \
          --nproc-per-node 2 --master-addr 10.78.0.1 --master-port 29600 --token bench -- "$example" $layout \
          "${size[@]}" --steps 600 --sample-log "$work/s" > "$work/node$node.log" 2>&1 &
        eval "sid$node=\$!"
      done
      wait_steps 0 200
      killed=$(now_ms); pkill -9 -s "$sid1"
      wait $sid0
      grep "^\[rank 0\] .*recovered: epoch" "$work/node0.log" > "$work/line"
      printf "%-16s %-12s %s\n" $layout "node 1" "$(phases "$work/line" "$killed")"
    done
  done
else
  echo "skipped: cannot make network namespaces here (needs root and iproute2)"
fi
fi
if wanted 4; then
echo
echo "== 4. Fault-free time per step, ms (4 ranks, hidden 1024, 600 steps; overhead against recovery off)"
printf "%-16s %10s %12s %12s %14s\n" layout "no recovery" "every step" "every 10" "default pace"
for layout in data-parallel tensor-parallel pipeline hybrid; do
  extra=(); [ $layout = hybrid ] && extra=(--devices 8)
  step() { "$launch" "$@" -- "$example" $layout "${extra[@]}" "${size[@]}" --steps 600 2>&1 |
    sed -n 's/.*: \([0-9.]*\) ms per step/\1/p' | head -1; }
  off=$(step --nproc-per-node 4)
  one=$("$launch" --nnodes 1:1 --nproc-per-node 4 -- "$example" $layout "${extra[@]}" "${size[@]}" --steps 600 \
    --snapshot-every 1 2>&1 | sed -n 's/.*: \([0-9.]*\) ms per step/\1/p' | head -1)
  ten=$("$launch" --nnodes 1:1 --nproc-per-node 4 -- "$example" $layout "${extra[@]}" "${size[@]}" --steps 600 \
    --snapshot-every 10 2>&1 | sed -n 's/.*: \([0-9.]*\) ms per step/\1/p' | head -1)
  auto=$(step --nnodes 1:1 --nproc-per-node 4)
  pct() { awk -v a="$1" -v b="$off" 'BEGIN { printf "%.3f (%+.0f%%)", a, 100 * (a - b) / b }'; }
  printf "%-16s %10.3f %12s %12s %14s\n" $layout "$off" "$(pct "$one")" "$(pct "$ten")" "$(pct "$auto")"
done
fi
if wanted 5; then
echo
echo "== 5. Growing back on loopback (ms): member 2 killed and started again (--max-restarts 1); a 4th rank joins 3"
printf "%-16s %-10s %8s %7s %8s %8s %8s %11s %11s\n" layout case "heard" abort re-form re-plan restore "from heard" "4 ranks"
for layout in data-parallel tensor-parallel; do
  for t in $(seq "$trials"); do
    rm -f "$work"/s.member*
    setsid "$launch" --nnodes 1:1 --nproc-per-node 4 --max-restarts 1 -- "$example" $layout "${size[@]}" --steps 600 \
      --sample-log "$work/s" > "$work/job.log" 2>&1 &
    sid=$!
    wait_steps 0 200
    p=$(pid_of 2 $sid); killed=$(now_ms); kill -9 "$p"
    wait $sid
    grep "^\[rank 0\] .*recovered: epoch" "$work/job.log" | tail -1 > "$work/line"
    printf "%-16s %-10s %s\n" $layout restart "$(phases "$work/line" "$killed")"
  done
  for t in $(seq "$trials"); do
    rm -f "$work"/s.member*
    # Longer: on 2 cores, 3 busy ranks slow the joining process's start to seconds at times.
    setsid "$launch" --nnodes 1:1 --nproc-per-node 3 --master-port 29650 --token grow -- "$example" $layout \
      "${size[@]}" --steps 2000 --sample-log "$work/s" > "$work/job.log" 2>&1 &
    sid=$!
    wait_steps 0 200
    started=$(now_ms)
    "$launch" --join --nnodes 1:1 --master-port 29650 --token grow -- "$example" $layout "${size[@]}" --steps 2000 \
      > "$work/joiner.log" 2>&1
    wait $sid
    grep "^\[rank 0\] .*recovered: epoch" "$work/job.log" | tail -1 > "$work/line"
    printf "%-16s %-10s %s\n" $layout grow "$(phases "$work/line" "$started")"
  done
done
fi
