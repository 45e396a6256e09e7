# shellcheck shell=bash
# lib.sh holds the helpers that the scripts in scripts/ share. Each script sources it first
# thing, after `set -euo pipefail` and before any cd:
#
#   # shellcheck source-path=SCRIPTDIR
#   . "$(dirname "$0")/lib.sh"
#
# Sourcing it sets three things and runs nothing else (no trap, no tool beyond bash: scripts/go,
# the bootstrap, sources it on a bare machine):
#   root    the repository's top directory;
#   cache   the one directory where every tool the project builds is kept (the Go toolchain,
#           staticcheck, govulncheck, actionlint, the compose CLI, the Kubernetes binaries and
#           Traefik), each under a name that carries its version: $VOTING_CACHE, or
#           ~/.cache/voting ($XDG_CACHE_HOME honoured); runs write their outputs there too
#           (prebuild/, bench/);
#   the pinned versions of tools/versions.env (STATICCHECK_VERSION, KUBERNETES_VERSION, ...).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck disable=SC2034 # for the scripts that source this
cache=${VOTING_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/voting}
# shellcheck source=../tools/versions.env
. "$root/tools/versions.env"

# need_postgres: sets PG_BIN to the PostgreSQL server's bin directory: $PG_BIN when set, else
# the newest installed the Debian way, after installing Debian's postgresql as need_packages
# does when there is none.
need_postgres() {
  PG_BIN=${PG_BIN:-$(lib_newest_postgres)}
  [ -x "$PG_BIN/initdb" ] && return 0
  need_packages "$PG_BIN/initdb:postgresql"
  PG_BIN=$(lib_newest_postgres)
}
lib_newest_postgres() {
  find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -1
}

# files_key FILE...: 16 hex digits that change when any FILE does: the part of a cached build's
# directory name that says which sources it was built from.
files_key() { cat "$@" | sha256sum | cut -c1-16; }

# log MESSAGE...: one line to stderr, named after the script ($log_name when it sets one), so
# that a script run by another says whose it is.
log() { printf '%s: %s\n' "${log_name:-${0##*/}}" "$*" >&2; }

# fail MESSAGE...: log, then exit 1: the one way a script gives up.
fail() { log "$@"; exit 1; }

# port_free PORT: true when nothing listens on 127.0.0.1:PORT (bash's /dev/tcp, no python3).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port VAR...: sets each VAR to a free loopback port below the kernel's ephemeral range
# (so no outgoing connection takes it before the server binds it), never the same one twice in
# one run (a port handed out may not be bound yet); VARs, not output, so that it remembers.
free_port() {
  local lo=10000 hi v p
  read -r hi _ 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range || hi=32768
  [ "$hi" -gt $((lo + 1000)) ] || hi=32768
  for v in "$@"; do
    while :; do
      p=$((lo + RANDOM % (hi - lo)))
      [[ ${lib_ports_used:-} != *" $p "* ]] && port_free "$p" && break
    done
    lib_ports_used="${lib_ports_used:- }$p "
    printf -v "$v" %s "$p"
  done
}

# need_packages [--or ALTERNATIVE] [CHECK:]PACKAGE...: installs each Debian PACKAGE whose CHECK
# (a command, or an absolute path; the package's name when none) is missing, with one apt-get,
# as root; otherwise fails, saying the apt-get command to run. Package lists: updated once a run.
need_packages() {
  local or='' spec check missing=()
  if [ "${1:-}" = --or ]; then or=$2; shift 2; fi
  for spec in "$@"; do
    check=${spec%:*}
    if [[ $check == /* ]]; then
      [ -x "$check" ] || missing+=("${spec##*:}")
    else
      command -v "$check" >/dev/null 2>&1 || missing+=("${spec##*:}")
    fi
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "missing ${missing[*]}: apt-get install -y ${missing[*]}${or:+ (or $or)};" \
      "as root on Debian or Ubuntu, this script runs it itself"
  fi
  log "installing ${missing[*]} with apt-get"
  if [ -z "${lib_apt_updated:-}" ]; then apt-get update -qq >/dev/null; lib_apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# on_exit COMMAND [ARG...]: runs the command (its arguments expanded now; a function sees the
# script's status in $exit_status) at exit, the last added first, and keeps the exit status;
# INT and TERM exit 130, through them too. One trap for all, so no script writes its own.
on_exit() {
  lib_on_exit=("$(printf '%q ' "$@")" ${lib_on_exit[@]+"${lib_on_exit[@]}"})
  trap lib_run_on_exit EXIT
  trap 'exit 130' INT TERM
}
# lib_run_on_exit: on_exit's trap. The commands run as under set +e: a failure stops neither the
# rest of the command nor the others nor the exit status.
lib_run_on_exit() {
  exit_status=$?
  local cmd
  for cmd in "${lib_on_exit[@]}"; do eval "$cmd" || true; done
  exit "$exit_status"
}
