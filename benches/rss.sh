#!/usr/bin/env bash
# Resident memory of the cockpit on the demo sandbox over 10 minutes (release).
# Run: benches/rss.sh   (needs what ./scripts/demo needs, and tmux)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_deps
cargo build --locked --release --bin cutover
st=$(mktemp -d); sock="cutover-rss-$$"
trap 'tmux -L "$sock" kill-server 2>/dev/null; rm -rf "$st"' EXIT
tmux -L "$sock" new-session -d -s r -x 160 -y 48 "XDG_STATE_HOME=$st ./target/release/cutover --log-file $st/log demo"
sleep 5
pid=$(pgrep -x -n cutover)
for t in 10 60 300 600; do
  now=$(ps -o etimes= -p "$pid" | tr -d ' ')
  [ "$now" -lt "$t" ] && sleep $((t - now))
  echo "t=${t}s $(grep VmRSS /proc/"$pid"/status | tr -s ' \t' ' ') $(grep VmHWM /proc/"$pid"/status | tr -s ' \t' ' ')"
done
tmux -L "$sock" send-keys -t r q
sleep 3
