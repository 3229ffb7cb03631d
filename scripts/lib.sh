# shellcheck shell=bash
# Shared helpers for the project's scripts. Source it, do not run it:
#   . "$(dirname "$0")/lib.sh"
# Everything here works on a fresh Debian 12 machine with only package registries reachable.

set -euo pipefail

FUNDUS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Kept outside the clone so a fresh checkout (or `git clean`) does not rebuild Garage or torch.
FUNDUS_CACHE="${FUNDUS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fundus}"
# Runtime state of the local stack (git-ignored); absolute so it survives `cd`.
# shellcheck disable=SC2034 # used by the scripts that source this file
STACK_DIR="$(realpath -m "${FUNDUS_STACK_DIR:-$FUNDUS_ROOT/.stack}")"

GARAGE_VERSION=2.5.0
# Debian 12's `postgresql` package is Postgres 15.
FUNDUS_PG_BIN="${FUNDUS_PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# timed NAME CMD... : run CMD, then report its wall time (CI stage timings).
timed() {
    local name=$1; shift
    local start=$SECONDS rc=0
    "$@" || rc=$?
    printf '[time] %s: %d s\n' "$name" "$((SECONDS - start))" >&2
    return "$rc"
}

# as_root CMD... : run CMD as root, through sudo when we are not root already.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "need root (or sudo) to run: $*"
    fi
}

# random_hex NBYTES : NBYTES random bytes as lowercase hex.
random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# ---------------------------------------------------------------------------
# Ports

# free_ports N : print N distinct free TCP ports on 127.0.0.1, one per line.
# All sockets are held open together so the kernel cannot hand out one port twice.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

free_port() { free_ports 1; }

# port_free PORT : succeed when a server could bind 127.0.0.1:PORT now.
# SO_REUSEADDR as servers use it, so a TIME_WAIT left by our own stopped server does not count.
port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}

# port_answers PORT : succeed when something accepts TCP connections on 127.0.0.1:PORT.
port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---------------------------------------------------------------------------
# System packages

# ensure_apt PKG... : install the Debian packages that are not installed yet.
ensure_apt() {
    local missing=() pkg
    for pkg in "$@"; do
        # dpkg-query rather than `dpkg -s`: a removed package whose config remains still "exists" for dpkg -s.
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# ensure_system_packages : everything the project needs from apt.
ensure_system_packages() {
    command -v python3 >/dev/null || ensure_apt python3
    # cmake and nasm build the bundled libjpeg-turbo 3 (Debian 12 ships 2.1, without the TurboJPEG 3 API);
    # libjpeg-turbo-progs gives djpeg, the floor of the preprocessing benchmark.
    ensure_apt postgresql cmake nasm pkg-config libjpeg-turbo-progs curl jq
    # The review UI's browser tests drive a real headless Chromium over WebDriver.
    ensure_apt chromium chromium-driver
    # Debian strips ensurepip out of python3 into python3-venv; a pyenv/other python may have it already.
    python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_apt python3-venv
}

# ---------------------------------------------------------------------------
# Garage (the S3 server)

# ensure_garage : build the slim Garage into the cache unless it is there; exports GARAGE_BIN.
ensure_garage() {
    GARAGE_BIN="$FUNDUS_CACHE/garage/bin/garage"
    if [ ! -x "$GARAGE_BIN" ]; then
        command -v cargo >/dev/null || die "cargo is needed to build Garage (install Rust via rustup)"
        log "building Garage $GARAGE_VERSION into $FUNDUS_CACHE/garage (one time, about 12 minutes cold)"
        # No default features: drops lmdb/k2v/telemetry etc., which saves about a quarter of the build.
        CARGO_TARGET_DIR="$FUNDUS_CACHE/garage-target" cargo install garage \
            --version "$GARAGE_VERSION" --no-default-features --features bundled-libs,sqlite \
            --root "$FUNDUS_CACHE/garage" --locked
    fi
    export GARAGE_BIN
}

# garage_write_config DIR RPC_PORT S3_PORT ADMIN_PORT RPC_SECRET ADMIN_TOKEN METRICS_TOKEN
# The whole single-node configuration, in one place. DIR must be absolute.
garage_write_config() {
    local dir=$1 rpc=$2 s3=$3 admin=$4 rpc_secret=$5 admin_token=$6 metrics_token=$7
    # shellcheck disable=SC1003 # a literal backslash, not an escape
    case $dir in *'"'* | *'\'*) die "Garage dir must not contain quotes or backslashes: $dir" ;; esac
    mkdir -p "$dir/meta" "$dir/data"
    (
        umask 077 # holds the rpc secret and tokens
        cat >"$dir/garage.toml" <<EOF
# Written by scripts/lib.sh (garage_write_config); rewritten on every start.
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$rpc_secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$admin_token"
metrics_token = "$metrics_token"
EOF
    )
}

# garage_pid DIR : print the pid of the Garage started in DIR, if it is still that Garage.
garage_pid() {
    local pid
    pid=$(cat "$1/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must still be a garage binary.
    [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)")" = garage ] || return 1
    echo "$pid"
}

# garage_start DIR ACCESS_KEY SECRET_KEY BUCKET : start Garage in the background on DIR/garage.toml.
# --single-node lays out a one-node cluster by itself; --default-bucket creates the key and the
# bucket from the GARAGE_DEFAULT_* variables (idempotent on restart), so no admin calls are needed.
garage_start() {
    local dir=$1 key=$2 secret=$3 bucket=$4
    # setsid: its own session, so a Ctrl-C in the calling terminal does not stop it. The ( ) keeps
    # job control off even when sourced interactively, so setsid does not fork and $! is garage.
    (
        GARAGE_DEFAULT_ACCESS_KEY=$key GARAGE_DEFAULT_SECRET_KEY=$secret GARAGE_DEFAULT_BUCKET=$bucket \
            RUST_LOG="${RUST_LOG:-garage=info}" \
            setsid nohup "$GARAGE_BIN" -c "$dir/garage.toml" server --single-node --default-bucket \
            >>"$dir/log" 2>&1 </dev/null &
        echo $! >"$dir/pid"
    )
}

# garage_wait DIR S3_PORT ADMIN_PORT : wait (30 s at most) until S3 answers and /health is OK.
garage_wait() {
    local dir=$1 s3=$2 admin=$3
    for _ in $(seq 150); do
        if port_answers "$s3" && curl -fsS -o /dev/null "http://127.0.0.1:$admin/health" 2>/dev/null; then
            return 0
        fi
        # It exited: no point waiting. (Not garage_pid: right after the start the pid may still
        # be setsid/nohup about to exec garage.)
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
        sleep 0.2
    done
    log "Garage in $dir did not become healthy; last lines of $dir/log:"
    tail -n 30 "$dir/log" >&2 || true
    garage_stop "$dir" # do not leave a half-started server behind
    die "Garage failed to start"
}

# garage_stop DIR : stop the Garage started in DIR (TERM, then KILL after 15 s).
garage_stop() {
    local dir=$1 pid
    pid=$(garage_pid "$dir") || { rm -f "$dir/pid"; return 0; }
    kill "$pid"
    for _ in $(seq 75); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -0 "$pid" 2>/dev/null && { log "Garage $pid ignored TERM; killing"; kill -9 "$pid"; }
    rm -f "$dir/pid"
}

# Key rules (Garage 2.5, Key::import): access key id >= 8 chars of [A-Za-z0-9._-], secret >= 16
# printable ASCII chars. We use Garage's own format anyway (GK + 24 hex; 64 hex), as its CLI makes.
garage_new_access_key() { echo "GK$(random_hex 12)"; }
garage_new_secret_key() { random_hex 32; }

# garage_single_node DIR : an independent throw-away Garage in DIR on fresh ports and keys;
# prints its settings as `export` lines. Stop it with `garage_stop DIR`.
garage_single_node() {
    local dir ports rpc s3 admin key secret admin_token
    dir=$(realpath -m "$1")
    ensure_garage
    ports=$(free_ports 3)
    { read -r rpc; read -r s3; read -r admin; } <<<"$ports"
    key=$(garage_new_access_key)
    secret=$(garage_new_secret_key)
    admin_token=$(random_hex 32)
    garage_write_config "$dir" "$rpc" "$s3" "$admin" "$(random_hex 32)" "$admin_token" "$(random_hex 32)"
    garage_start "$dir" "$key" "$secret" fundus
    garage_wait "$dir" "$s3" "$admin"
    cat <<EOF
export FUNDUS_STORE_URL='s3://fundus'
export FUNDUS_S3_ENDPOINT='http://127.0.0.1:$s3'
export FUNDUS_S3_REGION='garage'
export FUNDUS_S3_ACCESS_KEY='$key'
export FUNDUS_S3_SECRET_KEY='$secret'
export FUNDUS_GARAGE_ADMIN='http://127.0.0.1:$admin'
export FUNDUS_GARAGE_ADMIN_TOKEN='$admin_token'
export FUNDUS_GARAGE_PID='$(cat "$dir/pid")'
EOF
}

# ---------------------------------------------------------------------------
# Python venv (torch for tch, scikit-image for the test photograph, the MLflow tracking server)

# ensure_venv : create the venv and pip-install requirements.txt when it changed; exports FUNDUS_VENV.
ensure_venv() {
    FUNDUS_VENV="$FUNDUS_CACHE/venv"
    local req="${FUNDUS_REQUIREMENTS:-$FUNDUS_ROOT/scripts/requirements.txt}"
    local stamp="$FUNDUS_VENV/.requirements.sha256" want
    if [ ! -x "$FUNDUS_VENV/bin/python" ]; then
        log "creating Python venv in $FUNDUS_VENV"
        python3 -m venv "$FUNDUS_VENV"
    fi
    want=$(sha256sum <"$req" | cut -d' ' -f1)
    # The stamp is written only after pip succeeded, so a failed install is retried next time.
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python packages from $req (torch with CUDA libraries is several GB)"
        "$FUNDUS_VENV/bin/python" -m pip install -q --upgrade pip
        "$FUNDUS_VENV/bin/python" -m pip install -q -r "$req"
        echo "$want" >"$stamp"
    fi
    export FUNDUS_VENV
}

# libtorch comes from the venv's torch wheel: tch's build finds it through
# `python` (LIBTORCH_USE_PYTORCH), and binaries find it on LD_LIBRARY_PATH.
torch_env() {
    [ -n "${FUNDUS_VENV:-}" ] || ensure_venv
    export PATH="$FUNDUS_VENV/bin:$PATH" LIBTORCH_USE_PYTORCH=1
    local lib
    lib=$("$FUNDUS_VENV/bin/python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))') ||
        die "torch is not importable from $FUNDUS_VENV (scripts/requirements.txt pins torch==2.13.0)"
    export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
