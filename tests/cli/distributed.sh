#!/usr/bin/env bash
# Data-parallel runs over c10d/Gloo on CPU (float64): `nfk fit --nproc 2` (an MLP classifier by
# every method, a VAE whose score draws noise per batch) and two ranks launched torchrun-style
# (RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT) must give the single-process singular values,
# training embeddings, `nfk transform` embeddings and `nfk fisher` diagonals (the NFK score's and
# the classifier's, every estimator) to 1e-6; a rank that
# dies must make the job fail with a one-line reason within the timeout, not hang; ranks that get
# no batch give the single-process numbers; a killed launcher takes its ranks with it.
# Usage: bash tests/cli/distributed.sh path/to/nfk
set -euo pipefail
nfk=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3  # Debian's python3 with python3-torch and python3-numpy
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tol=1e-6
data="mnist:test[:300]"

"$py" "$here/distributed.py" make "$tmp"
model=(--model "$tmp/mlp.pt" --kind classifier --dtype float64 --batch-size 64)

fit() {  # name, method, extra args...
  local name=$1 method=$2
  shift 2
  "$nfk" fit "${model[@]}" --data "$data" --rank 8 --power-iters "${iters:-4}" --method "$method" \
    --out "$tmp/$name.nfk" --embedding-out "$tmp/${name}_train.npy" --quiet "$@"
  "$nfk" spectrum --projector "$tmp/$name.nfk" --json > "$tmp/$name.json"
}
compare() {  # single-process name, distributed name
  "$py" "$here/distributed.py" spectrum "$tmp/$1.json" "$tmp/$2.json" $tol
  "$py" "$here/distributed.py" close "$tmp/${1}_train.npy" "$tmp/${2}_train.npy" $tol
}

for method in matrix-free exact per-example sketch; do
  echo "== $method: 1 process vs --nproc 2"
  # One process with V resident iterates on Vᵀ (N < P), the sharded V on V: two Krylov spaces,
  # so both run until converged (to 1e-12, the singular vectors too) instead of 4 iterations.
  iters=4 extra=()
  [[ $method == per-example ]] && iters=60 extra=(--tol 1e-12)
  fit "${method}_1" "$method" "${extra[@]}"
  fit "${method}_2" "$method" --nproc 2 "${extra[@]}"
  compare "${method}_1" "${method}_2"
done
iters=4

echo "== vae (noise seeded per batch, reference = model samples): 1 process vs --nproc 2"
for method in matrix-free exact; do
  for np in 1 2; do
    "$nfk" fit --model "$tmp/vae.pt" --kind vae --dtype float64 --batch-size 64 --data "$data" \
      --rank 8 --power-iters 4 --method $method --out "$tmp/vae_${method}_$np.nfk" \
      --embedding-out "$tmp/vae_${method}_${np}_train.npy" --quiet --nproc $np
    "$nfk" spectrum --projector "$tmp/vae_${method}_$np.nfk" --json > "$tmp/vae_${method}_$np.json"
  done
  compare "vae_${method}_1" "vae_${method}_2"
done

echo "== transform: 1 process vs --nproc 2 (same projector)"
"$nfk" transform --projector "$tmp/matrix-free_1.nfk" --data "mnist:train[:200]" \
  --out "$tmp/t1.npy" --batch-size 64 --quiet
"$nfk" transform --projector "$tmp/matrix-free_1.nfk" --data "mnist:train[:200]" \
  --out "$tmp/t2.npy" --batch-size 64 --quiet --nproc 2
"$py" "$here/distributed.py" close "$tmp/t1.npy" "$tmp/t2.npy" $tol
echo "== transform of --nproc 2's projector vs the single-process one"
"$nfk" transform --projector "$tmp/matrix-free_2.nfk" --data "mnist:train[:200]" \
  --out "$tmp/t3.npy" --batch-size 64 --quiet
"$py" "$here/distributed.py" close "$tmp/t1.npy" "$tmp/t3.npy" $tol

echo "== fisher: 1 process vs --nproc 3 (uneven shards)"
"$nfk" fisher "${model[@]}" --data "$data" --out "$tmp/i1.npy" --mean-out "$tmp/z1.npy" --quiet
"$nfk" fisher "${model[@]}" --data "$data" --out "$tmp/i3.npy" --mean-out "$tmp/z3.npy" --quiet \
  --nproc 3
"$py" "$here/distributed.py" close "$tmp/i1.npy" "$tmp/i3.npy" $tol
"$py" "$here/distributed.py" close "$tmp/z1.npy" "$tmp/z3.npy" $tol

echo "== the classifier's Fisher of p(y|x): 1 process vs --nproc 3, every estimator"
for est in true mc empirical batched; do
  "$nfk" fisher "${model[@]}" --conditional --estimator "$est" --mc-samples 2 --data "$data" \
    --out "$tmp/c1_$est.npy" --quiet
  "$nfk" fisher "${model[@]}" --conditional --estimator "$est" --mc-samples 2 --data "$data" \
    --out "$tmp/c3_$est.npy" --quiet --nproc 3
  "$py" "$here/distributed.py" close "$tmp/c1_$est.npy" "$tmp/c3_$est.npy" $tol
done

echo "== ranks without a batch: 240 examples in one batch of 256 on 2 ranks; 3 examples on 4 ranks"
small=(--model "$tmp/mlp.pt" --kind classifier --dtype float64 --rank 3 --quiet)
for method in per-example exact matrix-free sketch; do
  svd=(--power-iters 4)  # per-example: converged, as above (one process iterates on Vᵀ)
  [[ $method == per-example ]] && svd=(--power-iters 60 --tol 1e-12)
  for np in 1 2; do
    "$nfk" fit "${small[@]}" "${svd[@]}" --data "mnist:test[:240]" --batch-size 256 --method $method \
      --out "$tmp/empty_${method}_$np.nfk" --embedding-out "$tmp/empty_${method}_${np}_train.npy" \
      --nproc $np
    "$nfk" spectrum --projector "$tmp/empty_${method}_$np.nfk" --json > "$tmp/empty_${method}_$np.json"
  done
  compare "empty_${method}_1" "empty_${method}_2"
  for np in 1 4; do
    "$nfk" fit "${small[@]}" "${svd[@]}" --data "mnist:test[:3]" --batch-size 1 --method $method \
      --out "$tmp/tiny_${method}_$np.nfk" --embedding-out "$tmp/tiny_${method}_${np}_train.npy" \
      --nproc $np
    "$nfk" spectrum --projector "$tmp/tiny_${method}_$np.nfk" --json > "$tmp/tiny_${method}_$np.json"
  done
  compare "tiny_${method}_1" "tiny_${method}_4"
done
for np in 1 4; do
  "$nfk" transform --projector "$tmp/tiny_exact_1.nfk" --data "mnist:test[:3]" --batch-size 2 \
    --out "$tmp/tiny_t$np.npy" --quiet --nproc $np
  "$nfk" fisher --model "$tmp/mlp.pt" --kind classifier --dtype float64 --data "mnist:test[:3]" \
    --batch-size 1 --out "$tmp/tiny_i$np.npy" --quiet --nproc $np
done
"$py" "$here/distributed.py" close "$tmp/tiny_t1.npy" "$tmp/tiny_t4.npy" $tol
"$py" "$here/distributed.py" close "$tmp/tiny_i1.npy" "$tmp/tiny_i4.npy" $tol

echo "== a bad input under --nproc 3: one line, the failing rank's own reason"
rc=0
"$nfk" fit --model "$tmp/mlp.pt" --kind classifier --data "mnist:test[:10]" --rank 20 --method exact --nproc 3 \
  --out "$tmp/bad.nfk" 2> "$tmp/bad.err" || rc=$?
((rc != 0)) || { echo "FAIL: exit status 0"; exit 1; }
[[ $(grep -c . "$tmp/bad.err") == 1 ]] && grep -Eq '^nfk: rank [0-2] of 3: .*rank must be' "$tmp/bad.err" ||
  { echo "FAIL: expected one line naming a rank and the reason, got:"; cat "$tmp/bad.err"; exit 1; }
echo "  $(cat "$tmp/bad.err")"

port=$(( 20000 + RANDOM % 20000 ))
echo "== torchrun-style: two ranks from the environment (MASTER_PORT=$port)"
for r in 0 1; do
  RANK=$r LOCAL_RANK=$r WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    "$nfk" fit "${model[@]}" --data "$data" --rank 8 --power-iters 4 --method matrix-free \
    --out "$tmp/env.nfk" --embedding-out "$tmp/env_train.npy" --quiet --dist-timeout 60 &
done
wait
"$nfk" spectrum --projector "$tmp/env.nfk" --json > "$tmp/env.json"
compare matrix-free_1 env

expect_fail() {  # what, regex, log file, rc, since (s: the kill, or the start)
  local rc=$4 elapsed=$((SECONDS - $5))
  if [[ $rc -eq 0 ]]; then echo "FAIL: $1: exit status 0"; exit 1; fi
  if ! grep -Eq "$2" "$3"; then echo "FAIL: $1: no message matching /$2/ in:"; cat "$3"; exit 1; fi
  if [[ $elapsed -gt 40 ]]; then echo "FAIL: $1: took ${elapsed}s"; exit 1; fi
  echo "  $1: exit $rc, ${elapsed}s: $(grep -Eo "$2.*" "$3" | head -1)"
}
in_power_iterations() {  # log file of rank 0, pid that must still run: wait for the 2nd pass
  for _ in $(seq 1200); do
    grep -Eaq ' pass ([2-9]|[1-9][0-9]+)/' "$1" && return 0
    kill -0 "$2" 2> /dev/null || { echo "FAIL: the job ended before its second pass:"; cat "$1"; exit 1; }
    sleep 0.1
  done
  echo "FAIL: no second power-iteration pass within 120 s:"; cat "$1"; exit 1
}
# Far more iterations than can finish: the job only ends because a rank is killed. Not --quiet:
# rank 0's progress line tells when both ranks are inside the power iterations (past rendezvous).
big=(--data "mnist:test[:4000]" --rank 8 --method matrix-free --power-iters 100000
     --dist-timeout 20)

echo "== dead rank under --nproc 2: the launcher names it and stops the other"
"$nfk" fit "${model[@]}" "${big[@]}" --out "$tmp/dead.nfk" --nproc 2 2> "$tmp/dead.err" &
launcher=$!
in_power_iterations "$tmp/dead.err" $launcher
child=$(pgrep -P $launcher | sort -n | tail -1 || true)  # rank 1: the younger child
[[ -n $child ]] || { echo "FAIL: no rank processes under the launcher"; exit 1; }
kill -9 "$child"
killed=$SECONDS
rc=0; wait $launcher || rc=$?
expect_fail "--nproc 2, rank 1 killed" "rank 1 of 2 was killed by signal 9" "$tmp/dead.err" $rc $killed
[[ ! -e "$tmp/dead.nfk" ]] || { echo "FAIL: a failed job wrote its output"; exit 1; }

ranks_gone() {  # launcher pid, ranks' pids...: every rank gone within 10 s
  local launcher=$1
  shift
  for _ in $(seq 100); do
    local alive=0 pid
    for pid in "$@"; do  # a zombie (not yet reaped by init) has stopped
      [[ $(ps -o stat= -p "$pid" 2> /dev/null || true) == [!Z]* ]] && alive=1
    done
    if ((alive == 0)); then return 0; fi
    sleep 0.1
  done
  echo "FAIL: ranks $* still run 10 s after their launcher $launcher was killed"; exit 1
}
for sig in TERM INT KILL; do
  echo "== the --nproc 2 launcher killed by SIG$sig: its ranks stop, nothing is written"
  "$nfk" fit "${model[@]}" "${big[@]}" --out "$tmp/killed.nfk" --nproc 2 2> "$tmp/killed.err" &
  launcher=$!
  in_power_iterations "$tmp/killed.err" $launcher
  ranks=$(pgrep -P $launcher | tr '\n' ' ')
  [[ -n $ranks ]] || { echo "FAIL: no rank processes under the launcher"; exit 1; }
  kill -$sig $launcher
  rc=0; wait $launcher 2> /dev/null || rc=$?
  ((rc != 0)) || { echo "FAIL: the killed launcher exited 0"; exit 1; }
  # shellcheck disable=SC2086
  ranks_gone $launcher $ranks
  sleep 1
  [[ ! -e "$tmp/killed.nfk" ]] || { echo "FAIL: ranks of a killed launcher wrote the output"; exit 1; }
  echo "  ranks $ranks gone"
done

echo "== dead rank, torchrun-style: the survivor fails with a clear message"
port=$(( 20000 + RANDOM % 20000 ))
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
  "$nfk" fit "${model[@]}" "${big[@]}" --out "$tmp/dead0.nfk" 2> "$tmp/dead0.err" &
rank0=$!
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
  "$nfk" fit "${model[@]}" "${big[@]}" --out "$tmp/dead0.nfk" 2> /dev/null &
rank1=$!
in_power_iterations "$tmp/dead0.err" $rank0
kill -9 $rank1
killed=$SECONDS
wait $rank1 2> /dev/null || true
rc=0; wait $rank0 || rc=$?
expect_fail "rank 1 killed" "\[rank 0/2\]: distributed .* failed on rank 0 of 2" "$tmp/dead0.err" $rc $killed
[[ ! -e "$tmp/dead0.nfk" ]] || { echo "FAIL: a failed job wrote its output"; exit 1; }

echo "== missing rank, torchrun-style: rendezvous gives up after --dist-timeout"
port=$(( 20000 + RANDOM % 20000 ))
start=$SECONDS
rc=0
RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
  "$nfk" fit "${model[@]}" --data "$data" --rank 8 --out "$tmp/alone.nfk" --quiet \
  --dist-timeout 3 2> "$tmp/alone.err" || rc=$?
expect_fail "rank 1 never started" "rank 0 of 2 could not join" "$tmp/alone.err" $rc $start
[[ $(grep -c . "$tmp/alone.err") == 1 ]] || { echo "FAIL: more than one line (LibTorch's log?):"; cat "$tmp/alone.err"; exit 1; }
echo "== a rank that cannot reach the store: one line (no glog lines from c10d)"
rc=0
RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1 \
  "$nfk" fit "${model[@]}" --data "$data" --rank 8 --out "$tmp/alone.nfk" --quiet \
  --dist-timeout 3 2> "$tmp/client.err" || rc=$?
expect_fail "rank 1 cannot connect" "rank 1 of 2 could not join" "$tmp/client.err" $rc $start
[[ $(grep -c . "$tmp/client.err") == 1 ]] || { echo "FAIL: more than one line:"; cat "$tmp/client.err"; exit 1; }
echo "distributed: all checks passed"
