#!/usr/bin/env bash
# Time from `cutover abort` to the rollback being live and INSYNC, mid-rollout,
# on the demo sandbox with short waits: through a running rollout, and alone.
# Run: benches/abort.sh   (needs what ./scripts/test needs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_deps
cargo build --locked --bin cutover
B=./target/debug/cutover
work=$(mktemp -d)
sed -e 's/^soak = "30s"/soak = "8s"/; s/^gate_interval = "5s"/gate_interval = "2s"/; s/^ttl = 10$/ttl = 1/' runbooks/demo.toml > "$work/fast.toml"
$B --log-file "$work/log" sandbox up "$work/fast.toml" --env-file "$work/env" > "$work/sandbox.out" 2>&1 & sb=$!
trap 'kill -INT $sb 2>/dev/null; wait $sb 2>/dev/null; rm -rf "$work"' EXIT
while [ ! -f "$work/env" ]; do sleep 0.2; done
source "$work/env"
export XDG_STATE_HOME="$work/state"
L=(--log-file "$work/log")
$B "${L[@]}" run "$work/fast.toml" validate/redis-ingress --yes > /dev/null; sleep 3
soaking() { python3 -c "import json,sys; s=json.load(open('$XDG_STATE_HOME/cutover/demo.rollout.json')); sys.exit(0 if s['engine']['step']==$1 and s['engine']['phase']['phase']=='soaking' else 1)" 2>/dev/null; }
for i in 1 2 3; do
  $B "${L[@]}" rollout "$work/fast.toml" --yes --restart > "$work/roll.out" 2>&1 & rp=$!
  until soaking 2; do sleep 0.1; done
  t0=$(date +%s.%N); $B "${L[@]}" abort "$work/fast.toml" --yes > /dev/null; wait $rp || true; t1=$(date +%s.%N)
  echo "running rollout: abort to rolled back and INSYNC $(python3 -c "print(round($t1-$t0,2))") s"
  $B "${L[@]}" shift "$work/fast.toml" --to 0 --yes > /dev/null
  $B "${L[@]}" rollout "$work/fast.toml" --yes --restart > "$work/roll.out" 2>&1 & rp=$!
  until soaking 2; do sleep 0.1; done
  kill -9 $rp; wait $rp 2>/dev/null || true
  t0=$(date +%s.%N); out=$($B "${L[@]}" abort "$work/fast.toml" --yes | tail -1); t1=$(date +%s.%N)
  echo "no rollout running: abort command to INSYNC $(python3 -c "print(round($t1-$t0,2))") s ($out)"
  $B "${L[@]}" shift "$work/fast.toml" --to 0 --yes > /dev/null
done
