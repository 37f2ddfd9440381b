# Shared by scripts/demo and scripts/test: installs what is missing.
# moto goes into a project-local venv (.venv); redis-server comes from apt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOTO_SPEC='moto[server]>=5.2,<5.3'

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "need root to run: $* (install it yourself or run as root)" >&2; return 1; fi
}

apt_install() {
  echo "installing with apt: $*" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

ensure_redis() {
  if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
}

# The cockpit's real-terminal test drives the binary inside tmux.
ensure_tmux() {
  if ! command -v tmux >/dev/null; then apt_install tmux; fi
}

ensure_python() {
  if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt_install python3 python3-venv
  fi
}

ensure_moto() {
  if [ -x "$ROOT/.venv/bin/moto_server" ]; then return; fi
  ensure_python
  echo "installing $MOTO_SPEC into $ROOT/.venv" >&2
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install --quiet --disable-pip-version-check "$MOTO_SPEC"
}

# The Redis TLS test makes its certificates with the openssl CLI.
ensure_openssl() {
  if ! command -v openssl >/dev/null; then apt_install openssl; fi
}

# The man page test renders `cutover man` with `man -l -`.
ensure_man() {
  if ! command -v man >/dev/null; then apt_install man-db; fi
}

# What apt installs (it may ask for a password, so never in the background).
ensure_system_deps() {
  ensure_redis
  ensure_openssl
  ensure_tmux
  ensure_man
  ensure_python
}

ensure_deps() {
  ensure_system_deps
  ensure_moto
  export CUTOVER_MOTO_SERVER="$ROOT/.venv/bin/moto_server"
}
