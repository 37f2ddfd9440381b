#!/usr/bin/env bash
# What the release profile's overrides for the AWS SDK crates buy: a cold
# release build of `cutover` with them (ours) against the same build without
# them (the baseline: Cargo's release defaults), one after the other in the
# same run, each in a fresh target folder. Reports each build's wall time and
# CPU time (user + system, which the machine's other load does not inflate),
# aws-sdk-ec2's own time from `cargo build --timings`, and the ratios.
#
# Run: benches/build_profile.sh   (about 30 minutes on 2 cores)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
cleanup() {
  git -C "$ROOT" worktree remove --force "$work/tree" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
git -C "$ROOT" worktree add --quiet --detach "$work/tree" HEAD
cp "$work/tree/Cargo.toml" "$work/ours.toml"
# The baseline: every `[profile.release.package.*]` table removed.
python3 - "$work/ours.toml" "$work/baseline.toml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
base = re.sub(r"\n\[profile\.release\.package\.[^\]]+\]\n(?:[^\[\n][^\n]*\n)*", "\n", text)
assert "profile.release.package" not in base
open(sys.argv[2], "w").write(base)
EOF

declare -A wall cpu ec2
for which in ours baseline; do
  cp "$work/$which.toml" "$work/tree/Cargo.toml"
  target="$work/target-$which"
  /usr/bin/time -f "%e %U %S" -o "$work/$which.time" \
    env CARGO_TARGET_DIR="$target" cargo build --manifest-path "$work/tree/Cargo.toml" \
    --locked --release --bin cutover --timings >"$work/$which.log" 2>&1
  read -r w u s <"$work/$which.time"
  wall[$which]=$w
  cpu[$which]=$(python3 -c "print(round($u + $s, 1))")
  # The per-crate durations cargo writes into its timings page.
  ec2[$which]=$(python3 - "$target/cargo-timings/cargo-timing.html" <<'EOF'
import json, re, sys
html = open(sys.argv[1]).read()
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);", html, re.S).group(1))
print(round(sum(u["duration"] for u in units if u["name"] == "aws-sdk-ec2"), 1))
EOF
)
  git -C "$work/tree" checkout --quiet -- Cargo.toml
  rm -rf "$target"
done

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
printf '%-9s %10s %10s %16s\n' build "wall (s)" "CPU (s)" "aws-sdk-ec2 (s)"
for which in baseline ours; do
  printf '%-9s %10s %10s %16s\n' "$which" "${wall[$which]}" "${cpu[$which]}" "${ec2[$which]}"
done
echo "ours / baseline: wall $(ratio "${wall[ours]}" "${wall[baseline]}"), CPU $(ratio "${cpu[ours]}" "${cpu[baseline]}"), aws-sdk-ec2 $(ratio "${ec2[ours]}" "${ec2[baseline]}")"
