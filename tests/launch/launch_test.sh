#!/usr/bin/env bash
# Multi-process tests of tessel-launch with real processes (ctest runs each mode):
#   launch_test.sh BIN examples NAME N     N ranks on loopback equal the one-device run
#   launch_test.sh BIN wrong-token         a join with the wrong token is refused; the job goes on
#   launch_test.sh BIN late-rank           a node that starts after the heartbeat deadline still joins
#   launch_test.sh BIN missing-rank        a node that never starts: the join timeout names its ranks
#   launch_test.sh BIN killed-rank         a rank killed mid-run ends the job within the deadline
#   launch_test.sh BIN hostile-port        garbage and idle connections on rank 0's port during a run change nothing
#   launch_test.sh BIN loopback-only       a job whose ranks are all here listens on loopback only
#   launch_test.sh BIN two-jobs            a second job with the same token on the same port is turned away
#   launch_test.sh BIN killed-launcher     kill -9 of tessel-launch: nothing the ranks started lives on
#   launch_test.sh BIN uneven-steps        rank 1 runs fewer steps than rank 0: named at once, with its steps
#   launch_test.sh BIN quiet-rank          a rank fails while another prints nothing and runs a child
#   launch_test.sh BIN frozen-rank         a rank stopped (SIGSTOP) mid-run: only heartbeats can tell
#   launch_test.sh BIN frozen-coordinator  rank 0, which hosts the coordinator, stopped: the others' heartbeats go unanswered
#   launch_test.sh BIN killed-coordinator  rank 0 killed: the others see its control connection close, within the deadline
#   launch_test.sh BIN namespaces          two "nodes" in network namespaces joined by a veth pair
#   launch_test.sh BIN slurm               srun -n 2 under slurmctld, slurmd and munged started here
# BIN is the build folder. Every wait is bounded; processes started here are killed on exit.
set -uo pipefail
bin=$1 mode=$2
launch=$bin/apps/launch/tessel-launch
example=$bin/apps/parallel/tessel-example
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  [ -n "${namespaces:-}" ] && for ns in $namespaces; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f"; }; done; exit 1; }
# Waits up to $2 seconds for pid $1 to end; returns its status (124: still running).
wait_for() {
  local pid=$1 seconds=$2
  for _ in $(seq $((seconds * 10))); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
    sleep 0.1
  done
  return 124
}
# A free port below the ephemeral range, which connecting sockets (UCX's) could take meanwhile.
free_port() {
  /usr/bin/python3 -c '
import random, socket
for _ in range(200):
    port = random.randrange(20000, 32768)
    s = socket.socket()
    try:
        s.bind(("0.0.0.0", port)); print(port); break
    except OSError:
        pass
    finally:
        s.close()'
}

case $mode in
examples)
  name=$3 n=$4
  timeout 120 "$launch" --nproc-per-node "$n" -- "$example" "$name" --steps 10 --every 3 > "$work/job.log" 2>&1 ||
    fail "the launcher exited $?"
  cat "$work/job.log"
  [ "$(grep -c 'the same numbers' "$work/job.log")" = "$n" ] || fail "not every one of $n ranks matched one device"
  grep -q "all $n ranks exited 0" "$work/job.log" || fail "the launcher did not report success"
  # The rank holding the loss prints it beside the one-device loss: every line must agree
  # (within float tolerance: the shards sum in another order).
  awk '/^\[rank [0-9]+\] +[0-9]+ +[0-9.]+ +[0-9.]+$/ { d = $4 - $5; if (d < 0) d = -d; if (d > 1e-5 * $5) bad = 1; rows++ }
       END { exit !(rows >= 3 && !bad) }' \
    "$work/job.log" || fail "the multi-process losses differ from the one-process losses"
  echo "PASS: $name over $n processes equals one device"
  ;;
late-rank)
  # Node 1 starts 3 s after node 0, beyond the 1.5 s heartbeat deadline: deadlines count only
  # once the roster is whole, so the job runs (it used to fail, blaming rank 0).
  port=$(free_port)
  "$launch" --nnodes 2 --node-rank 0 --master-port "$port" --token late --heartbeat-deadline 1.5 -- \
    "$example" data-parallel --steps 10 > "$work/node0.log" 2>&1 &
  node0=$!; pids+=($node0)
  sleep 3
  timeout 60 "$launch" --nnodes 2 --node-rank 1 --master-port "$port" --token late --heartbeat-deadline 1.5 -- \
    "$example" data-parallel --steps 10 > "$work/node1.log" 2>&1 || fail "node 1 exited $?"
  wait_for $node0 60 || fail "node 0 exited $?"
  grep -q "the same numbers" "$work/node0.log" && grep -q "the same numbers" "$work/node1.log" ||
    fail "a rank did not train to the one-device numbers"
  echo "PASS: a node started after the heartbeat deadline joins and the job equals one device"
  ;;
missing-rank)
  # Node 1 never starts: node 0 fails at the join timeout, naming rank 1, not at a heartbeat.
  port=$(free_port)
  start=$(date +%s)
  TESSEL_JOIN_TIMEOUT=3 timeout 60 "$launch" --nnodes 2 --node-rank 0 --master-port "$port" --token lone \
    --heartbeat-deadline 1 -- "$example" data-parallel --steps 10 > "$work/node0.log" 2>&1
  status=$?
  elapsed=$(( $(date +%s) - start ))
  cat "$work/node0.log"
  [ $status = 1 ] || fail "the launcher exited $status, expected 1"
  grep -q "rank(s) 1 did not join within 3 s" "$work/node0.log" || fail "the failure does not name the missing rank"
  [ $elapsed -lt 30 ] || fail "the job took $elapsed s to fail"
  echo "PASS: a rank that never joins fails the job at the join timeout, named, in $elapsed s"
  ;;
wrong-token)
  port=$(free_port)
  "$launch" --nnodes 2 --node-rank 0 --master-port "$port" --token right-token -- \
    "$example" data-parallel --steps 20 > "$work/node0.log" 2>&1 &
  node0=$!; pids+=($node0)
  timeout 60 "$launch" --nnodes 2 --node-rank 1 --master-port "$port" --token wrong-token -- \
    "$example" data-parallel --steps 20 > "$work/intruder.log" 2>&1
  status=$?
  cat "$work/intruder.log"
  [ $status = 1 ] || fail "the intruder's launcher exited $status, expected 1"
  grep -q "refused rank 1: wrong job token" "$work/intruder.log" || fail "the refusal does not say why"
  timeout 60 "$launch" --nnodes 2 --node-rank 1 --master-port "$port" --token right-token -- \
    "$example" data-parallel --steps 20 > "$work/node1.log" 2>&1 || fail "the real rank 1 failed"
  wait_for $node0 60 || fail "node 0 exited $?"
  cat "$work/node0.log"
  grep -q "gate: refused .*: its proof of the job token is wrong" "$work/node0.log" || fail "the refusal was not logged"
  grep -q "the same numbers" "$work/node0.log" || fail "the job did not go on to the right result"
  echo "PASS: a wrong token is refused and logged, and the job goes on"
  ;;
hostile-port)
  # During a run, rank 0's coordinator port gets random bytes, a header shaped like CAF's BASP with
  # absurd sizes (32 such bytes crashed rank 0 before the gate), an HTTP request and 200 idle
  # connections. The job finishes with the one-device numbers, and the gate logs its refusals.
  port=$(free_port)
  "$launch" --nproc-per-node 2 --master-port "$port" -- "$example" tensor-parallel --steps 1500 --every 1000 \
    > "$work/job.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
  /usr/bin/python3 - "$port" <<'PY' || fail "the attack could not run"
import random, socket, sys, time
port = int(sys.argv[1])
random.seed(5)
def attack(payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(payload)
    try:
        s.shutdown(socket.SHUT_WR)
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
for _ in range(50):
    attack(bytes(random.randrange(256) for _ in range(random.randrange(1, 300))))
attack(bytes(8) + b"\xff" + bytes(23))                      # the 32 bytes that crashed rank 0
attack(b"\x00" * 8 + b"\xff" * 8 + b"\x00" * 16)
attack(b"GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n")
idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
time.sleep(1)
for s in idle:
    s.close()
print("sent 53 attacks and held 200 idle connections for 1 s")
PY
  wait_for "${pids[0]}" 120; status=$?
  grep -v "^\[rank [0-9]\] *[0-9]" "$work/job.log" | grep -E "gate:|same numbers|DIFFERENT" | head -6
  [ $status = 0 ] || fail "the job exited $status under the attack"
  [ "$(grep -c 'the same numbers' "$work/job.log")" = 2 ] || fail "the ranks did not end with the one-device numbers"
  grep -q "gate: refused 127.0.0.1:[0-9]*: " "$work/job.log" || fail "the refusals were not logged"
  echo "PASS: garbage, a BASP header, HTTP and 200 idle connections on the coordinator port change nothing"
  ;;
loopback-only)
  # A job whose ranks are all here listens on loopback only: its coordinator port is not open on the
  # machine's other interfaces (it listened on 0.0.0.0 before).
  port=$(free_port)
  "$launch" --nproc-per-node 2 --master-port "$port" -- "$example" tensor-parallel --steps 400 --every 1000 \
    > "$work/job.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do ss -ltn "sport = :$port" | grep -q LISTEN && break; sleep 0.1; done
  listening=$(ss -ltn "sport = :$port" | awk 'NR > 1 { print $4 }')
  # Every socket the job's processes listen on (CAF's, the gate's, UCX's tcp transport's), once
  # both ranks train: UCX listened on every interface before.
  for _ in $(seq 100); do grep -q "step" "$work/job.log" && break; sleep 0.1; done
  descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
  job_pids=$(descendants "${pids[0]}" | paste -sd'|')
  sockets=$(ss -ltnpH | grep -E "pid=($job_pids)," | awk '{ print $4 }' | sort -u | paste -sd' ')
  wait_for "${pids[0]}" 60 || fail "the job failed"
  echo "the coordinator listened on: $listening; the job's processes on: $sockets"
  [ "$listening" = "127.0.0.1:$port" ] || fail "the coordinator of a local job listened on '$listening'"
  [ -n "$sockets" ] || fail "found no socket of the job's processes ($job_pids)"
  outside=$(echo "$sockets" | tr ' ' '\n' | grep -v "^127\.0\.0\.1:")
  [ -z "$outside" ] || fail "a local job's processes listened on $outside"
  echo "PASS: a local job's coordinator, gate and data plane listen on loopback only"
  ;;
two-jobs)
  # Two jobs with one token on one port: the second one's rank 0 cannot listen and says so, its
  # other ranks reach the first job's coordinator and are refused (their job's size differs), and
  # the first job trains on undisturbed.
  port=$(free_port)
  for node in 0 1; do
    "$launch" --nnodes 2 --node-rank $node --master-port "$port" --token same -- "$example" tensor-parallel \
      --steps 400 --every 500 > "$work/node$node.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 300); do grep -q "joined the job" "$work/node1.log" 2>/dev/null && break; sleep 0.1; done
  # The second job's node 1 (its ranks 3 to 5 of 6) reaches the first job's coordinator; its node 0
  # cannot listen on the port.
  timeout 60 "$launch" --nnodes 2 --node-rank 1 --nproc-per-node 3 --master-port "$port" --token same -- \
    "$example" data-parallel --steps 10 > "$work/other1.log" 2>&1
  status=$?
  timeout 60 "$launch" --nnodes 2 --node-rank 0 --nproc-per-node 3 --master-port "$port" --token same -- \
    "$example" data-parallel --steps 10 > "$work/other0.log" 2>&1
  status_0=$?
  wait_for "${pids[0]}" 120; status0=$?
  wait_for "${pids[1]}" 30; status1=$?
  cat "$work/other1.log" "$work/other0.log" | grep -v "^\[rank [0-9]\] *[0-9]" | grep -v "\] [IW]2026" | tail -6
  [ $status = 1 ] && [ $status_0 = 1 ] || fail "the second job's launchers exited $status and $status_0, expected 1"
  grep -q "this job has 2 ranks, and the joining rank's has 6: another job with this token on this port?" \
    "$work/other1.log" || fail "the second job's ranks were not refused by the first job's coordinator"
  # Its node 0: rank 0 cannot listen, or its other ranks are refused first and the launcher stops it.
  grep -q -e "cannot listen on [0-9.]*:$port: .*(is another job using the port?)" \
    -e "this job has 2 ranks, and the joining rank's has 6" "$work/other0.log" ||
    fail "the second job's node 0 does not say why it stops"
  [ $status0 = 0 ] && [ $status1 = 0 ] || fail "the first job's launchers exited $status0 and $status1"
  [ "$(cat "$work/node0.log" "$work/node1.log" | grep -c 'the same numbers')" = 2 ] ||
    fail "the first job's ranks did not end with the one-device numbers"
  echo "PASS: a second job on the same port and token is turned away, and the first one trains on"
  ;;
killed-launcher)
  # kill -9 of the launcher: its ranks die with it (PR_SET_PDEATHSIG), and so do the processes the
  # ranks started, in their process groups (the keeper). Before the keeper, the children lived on.
  marker="sleep 53.$$"
  "$launch" --nproc-per-node 2 -- bash -c "$marker & echo started; wait" > "$work/job.log" 2>&1 &
  launcher=$!
  # "^sleep": the sleeps themselves, not the ranks' shells whose command lines name them too.
  for _ in $(seq 100); do [ "$(pgrep -fc "^$marker")" -ge 2 ] && break; sleep 0.1; done
  [ "$(pgrep -fc "^$marker")" -ge 2 ] || fail "the ranks did not start their processes"
  kill -9 $launcher
  for _ in $(seq 30); do pgrep -f "^$marker" > /dev/null || break; sleep 0.1; done
  left=$(pgrep -fc "^$marker")
  pkill -9 -f "^$marker"
  [ "$left" = 0 ] || fail "$left process(es) the ranks started outlived the killed launcher"
  echo "PASS: kill -9 of the launcher leaves none of the job's processes behind"
  ;;
uneven-steps)
  # Rank 1 runs 30 steps and rank 0 a hundred thousand: rank 0 would wait for rank 1's part of step
  # 30 forever. The job fails at once, naming who finished early, at which step, and who runs on.
  start=$(date +%s.%N)
  timeout 60 "$launch" --nproc-per-node 2 -- bash -c "exec $example data-parallel --every 1000 --steps \
    \$([ \$TESSEL_RANK = 1 ] && echo 30 || echo 100000)" > "$work/job.log" 2>&1
  status=$?
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  grep -v "^\[rank [0-9]\] *[0-9]" "$work/job.log" | grep -v "\] [IW]2026" | tail -8
  [ $status = 1 ] || fail "the launcher exited $status, expected 1 (124: it hung)"
  grep -q "the job failed: rank 1 finished after 30 steps, but rank 0 runs to step 100000" "$work/job.log" ||
    fail "no rank says which one finished early, and where"
  [ "$(echo "$seconds < 15" | bc)" = 1 ] || fail "the job took $seconds s to end"
  echo "PASS: a rank that finished early is named, with its steps, $seconds s after the start"
  ;;
quiet-rank)
  # Rank 0 fails while rank 1 prints nothing and has started a process of its own: the launcher
  # must not wait on rank 1's silent output, and stopping rank 1 stops what it started.
  marker="sleep 47.$$"
  start=$(date +%s.%N)
  timeout 30 "$launch" --nproc-per-node 2 -- bash -c \
    "if [ \$TESSEL_RANK = 0 ]; then echo ready; sleep 1; exit 4; else $marker; fi" > "$work/job.log" 2>&1
  status=$?
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  cat "$work/job.log"
  [ $status = 1 ] || fail "the launcher exited $status, expected 1 (124: it hung)"
  grep -q "rank 0 (pid [0-9]*) exited with status 4; stopped the other ranks" "$work/job.log" ||
    fail "the launcher does not name rank 0 and its status"
  [ "$(echo "$seconds < 5" | bc)" = 1 ] || fail "the launcher took $seconds s to end the job"
  sleep 0.2
  ! pgrep -f "$marker" > /dev/null || fail "rank 1's own process was left behind"
  echo "PASS: a failed rank ends the job in $seconds s while another stays silent; nothing left behind"
  ;;
killed-rank | frozen-rank | frozen-coordinator | killed-coordinator)
  # Two launchers stand for nodes 0 and 1, one rank each. The victim is rank 1, or rank 0 (and
  # the coordinator in it) for the *-coordinator modes; the survivor is the other one.
  port=$(free_port) deadline=2
  for node in 0 1; do
    "$launch" --nnodes 2 --node-rank $node --master-port "$port" --token t --heartbeat-deadline $deadline -- \
      "$example" data-parallel --steps 100000000 --every 1000 > "$work/node$node.log" 2>&1 &
    pids+=($!)
  done
  for _ in $(seq 300); do grep -q "joined the job" "$work/node1.log" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  case $mode in *-coordinator) v=0 ;; *) v=1 ;; esac
  s=$((1 - v))
  killed_mode=$(case $mode in killed-*) echo yes ;; *) echo no ;; esac)
  survivor=$(pgrep -P "${pids[$s]}" | head -1) victim=$(pgrep -P "${pids[$v]}" | head -1)
  [ -n "$survivor" ] && [ -n "$victim" ] || fail "the ranks' processes were not found"
  if [ $killed_mode = yes ]; then
    kill -9 "$victim"
  else
    kill -STOP "$victim"  # alive, its sockets open: nothing but the missing heartbeats shows it
  fi
  killed=$(date +%s.%N)
  wait_for "${pids[$s]}" $((deadline + 8)); status_s=$?
  ended=$(date +%s.%N)
  # A frozen rank's launcher is stopped by hand; it stops its rank (SIGKILL reaches a stopped process).
  [ $killed_mode = yes ] || kill "${pids[$v]}"
  wait_for "${pids[$v]}" 10; status_v=$?
  cat "$work/node0.log" "$work/node1.log" | grep -v "^\[rank [0-9]\] *[0-9]"
  [ $status_v = 1 ] || fail "node $v's launcher exited $status_v, expected 1"
  [ $status_s = 1 ] || fail "node $s's launcher exited $status_s, expected 1 (124: it hung)"
  case $mode in
  killed-rank)
    grep -q "rank 1 (pid $victim) was killed by signal 9" "$work/node1.log" || fail "node 1 does not name the killed rank"
    why="rank 1's control connection closed before it finished" ;;
  killed-coordinator)
    grep -q "rank 0 (pid $victim) was killed by signal 9" "$work/node0.log" || fail "node 0 does not name the killed rank"
    why="lost the coordinator (rank 0): its control connection closed" ;;
  frozen-rank) why="rank 1 sent no heartbeat for" ;;
  frozen-coordinator) why="lost the coordinator (rank 0)" ;;
  esac
  grep -q "tessel rank $s: the job failed: $why" "$work/node$s.log" || fail "rank $s does not say why it stopped"
  grep -q "tessel-launch: rank $s (pid [0-9]*) exited with status 3" "$work/node$s.log" ||
    fail "node $s does not name rank $s"
  seconds=$(echo "$ended - $killed" | bc)
  echo "the job ended $seconds s after the kill (heartbeat deadline $deadline s)"
  # A killed rank's control connection closes, which ends the job within the deadline; a frozen
  # one keeps its connections, so only the deadline itself can end the job.
  limit=$([ $killed_mode = yes ] && echo "$deadline" || echo "$deadline + 3")
  [ "$(echo "$seconds < $limit" | bc)" = 1 ] || fail "ending took $seconds s, more than $limit s"
  # Only this job's ranks: another test may run its own job beside this one.
  for pid in $survivor $victim; do
    ! kill -0 "$pid" 2>/dev/null || fail "process $pid was left behind"
  done
  echo "PASS: a $mode ends the job in $seconds s, nothing left behind"
  ;;
namespaces)
  if ! ip netns add tessel-probe-$$ 2>/dev/null; then
    echo "SKIP: cannot make network namespaces here (needs root and iproute2)"; exit 0
  fi
  ip netns del tessel-probe-$$
  a=tessel-a-$$ b=tessel-b-$$ namespaces="$a $b"
  ip netns add $a && ip netns add $b || fail "ip netns add"
  ip link add veth-a-$$ netns $a type veth peer name veth-b-$$ netns $b || fail "ip link add veth"
  ip -n $a addr add 10.77.0.1/24 dev veth-a-$$ && ip -n $b addr add 10.77.0.2/24 dev veth-b-$$
  for ns in $a $b; do ip -n $ns link set lo up; done
  ip -n $a link set veth-a-$$ up && ip -n $b link set veth-b-$$ up
  # UCX lists only running devices: wait for both ends to report a carrier.
  for _ in $(seq 50); do
    [ "$(ip netns exec $a cat /sys/class/net/veth-a-$$/operstate)" = up ] &&
      [ "$(ip netns exec $b cat /sys/class/net/veth-b-$$/operstate)" = up ] && break
    sleep 0.1
  done
  bytes() { ip netns exec $a cat /sys/class/net/veth-a-$$/statistics/$1_bytes; }
  tx0=$(bytes tx) rx0=$(bytes rx)
  # Both namespaces share this machine's memory, but a rank in another network namespace counts
  # as another machine (comm/transport.cc), so UCX takes tcp as between two hosts, on the device
  # that leads to the master (each namespace has its own lo, which Tessel does not give UCX).
  for node in 0 1; do
    ns=$([ $node = 0 ] && echo $a || echo $b)
    ip netns exec $ns timeout 120 "$launch" --nnodes 2 --node-rank $node \
      --nproc-per-node 1 --master-addr 10.77.0.1 --master-port 29500 --token netns -- \
      "$example" data-parallel --steps 300 --every 100 > "$work/node$node.log" 2>&1 &
    pids+=($!)
  done
  # While they train, each node listens on its veth address and, behind the gate, on loopback:
  # nowhere else (UCX's tcp transport listened on every device before).
  for ns in $a $b; do
    sockets=
    for _ in $(seq 100); do
      sockets=$(ip netns exec $ns ss -ltnH | awk '{ print $4 }' | sort -u | paste -sd' ')
      [[ "$sockets" == *10.77.0.* ]] && break
      sleep 0.1
    done
    echo "listening in $ns: $sockets"
    [[ "$sockets" == *10.77.0.* ]] || fail "nothing listened on the veth address in $ns"
    outside=$(echo "$sockets" | tr ' ' '\n' | grep -v -E "^(127\.0\.0\.1|10\.77\.0\.[12]):")
    [ -z "$outside" ] || fail "node $ns listened on $outside"
  done
  wait_for "${pids[0]}" 120 || fail "node 0 exited $?"
  wait_for "${pids[1]}" 120 || fail "node 1 exited $?"
  cat "$work/node0.log" "$work/node1.log"
  tx=$(( $(bytes tx) - tx0 )) rx=$(( $(bytes rx) - rx0 ))
  echo "veth-a counters over the job: $tx bytes sent, $rx bytes received"
  [ "$(grep -c 'the same numbers' "$work"/node*.log | awk -F: '{s+=$2} END {print s}')" = 2 ] || fail "a rank differs"
  # 300 steps of data parallelism all-reduce about 150 kB of gradients per step between the nodes.
  [ $tx -gt 1000000 ] && [ $rx -gt 1000000 ] || fail "too few bytes crossed the veth pair"
  echo "PASS: two nodes in namespaces over tcp, $tx + $rx bytes over the veth pair"
  ;;
slurm)
  for tool in munged mungekey slurmctld slurmd srun; do
    command -v $tool > /dev/null || [ -x /usr/sbin/$tool ] ||
      { echo "SKIP: Slurm is not installed ($tool is missing; scripts/setup.sh installs it)"; exit 0; }
  done
  [ "$(id -u)" = 0 ] || { echo "SKIP: the Slurm daemons need root"; exit 0; }
  export PATH=$PATH:/usr/sbin
  # munged refuses a key or socket in a folder others may write to: keep them under $work (0700).
  chmod 700 "$work"; mkdir -p "$work"/{munge,spool,state}; chmod 700 "$work/munge"
  mungekey --create --keyfile "$work/munge/munge.key" > /dev/null 2>&1 ||
    dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 2> /dev/null
  chmod 400 "$work/munge/munge.key"
  munged --force --key-file "$work/munge/munge.key" --socket "$work/munge/socket" \
    --pid-file "$work/munge/pid" --log-file "$work/munge/log" --seed-file "$work/munge/seed" ||
    fail "munged did not start"
  pids+=($(cat "$work/munge/pid"))
  host=$(hostname -s) ctld_port=$(free_port) slurmd_port=$(free_port)
  cat > "$work/slurm.conf" <<CONF
ClusterName=tessel-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/socket
CredType=cred/munge
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=10 State=UP OverSubscribe=YES
CONF
  export SLURM_CONF=$work/slurm.conf
  slurmctld -D -i > "$work/slurmctld.out" 2>&1 & pids+=($!)
  slurmd -D -N "$host" > "$work/slurmd.out" 2>&1 & pids+=($!)
  for _ in $(seq 150); do sinfo -h -o %T 2> /dev/null | grep -q idle && break; sleep 0.2; done
  sinfo -h -o %T | grep -q idle || fail "the Slurm node did not become idle: $(sinfo 2>&1)"
  # srun starts two tasks; tessel-launch reads SLURM_PROCID, SLURM_NTASKS, SLURM_STEP_NODELIST...
  # and runs one rank in each. No flag tells it the job's shape.
  timeout 120 srun -n 2 --time 5 --kill-on-bad-exit=1 "$launch" -- "$example" data-parallel --steps 20 --every 5 \
    > "$work/job.log" 2>&1; status=$?
  cat "$work/job.log"
  [ $status = 0 ] || fail "srun exited $status"
  grep -q "ranks 0..0 of 2 on node 0 (from slurm)" "$work/job.log" && grep -q "ranks 1..1 of 2 on node 0 (from slurm)" "$work/job.log" ||
    fail "tessel-launch did not take its rank from Slurm"
  [ "$(grep -c 'the same numbers' "$work/job.log")" = 2 ] || fail "a rank differs from one device"
  echo "PASS: srun -n 2 under a real slurmctld and slurmd runs a 2-rank job equal to one device"
  ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
