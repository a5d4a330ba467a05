# Shared by scripts/test and bench/: installs and runs the S3 servers used for testing.
# Source it; expects CACHE and GARAGE_VERSION. Exports LAKEPIPE_TEST_MOTO, LAKEPIPE_TEST_GARAGE,
# LAKEPIPE_TEST_GARAGE_KEY_ID and LAKEPIPE_TEST_GARAGE_SECRET once the servers are up.

VENV=${VENV:-$CACHE/venv}

ensure_venv() {
    local req="$ROOT/scripts/requirements-test.txt"
    local stamp="$VENV/.requirements"
    if [ -x "$VENV/bin/python" ] && cmp -s "$req" "$stamp"; then
        return
    fi
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$req"
    cp "$req" "$stamp"
}
# The venv's Python, for tests that check lakepipe's output with independent tools.
export LAKEPIPE_TEST_PYTHON="$VENV/bin/python"

# Apache Airflow 3 in its own venv (its pins must not fight moto's): the export test runs the
# exported DAGs in it. Exports LAKEPIPE_TEST_AIRFLOW (the venv's bin directory).
ensure_airflow() {
    local venv=${AIRFLOW_VENV:-$CACHE/airflow-venv}
    local req="$ROOT/scripts/requirements-airflow.txt"
    local stamp="$venv/.requirements"
    if ! { [ -x "$venv/bin/airflow" ] && cmp -s "$req" "$stamp"; }; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
        cp "$req" "$stamp"
    fi
    export LAKEPIPE_TEST_AIRFLOW="$venv/bin"
}

ensure_garage() {
    GARAGE=$(command -v garage || true)
    if [ -n "$GARAGE" ]; then
        echo "using $GARAGE" >&2
        return
    fi
    GARAGE="$CACHE/garage/bin/garage"
    if [ ! -x "$GARAGE" ]; then
        # Only what the tests use (the S3 API on SQLite metadata: no LMDB, K2V or Prometheus
        # exporter), at opt-level 1: about 6 min on 2 cores instead of 13 for the default build.
        echo "installing garage $GARAGE_VERSION into $CACHE/garage (once; ~6 min on 2 cores)" >&2
        env -u CARGO_TARGET_DIR -u RUSTC_WORKSPACE_WRAPPER CARGO_PROFILE_RELEASE_OPT_LEVEL=1 \
            cargo install garage --version "$GARAGE_VERSION" --locked \
            --no-default-features --features bundled-libs,sqlite \
            --root "$CACHE/garage" --quiet
    fi
}

# Headless Chromium for the web UI's browser tests, from the distribution's packages.
# Exports LAKEPIPE_TEST_CHROMIUM.
ensure_chromium() {
    local bin
    bin=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$bin" ]; then
        echo "installing chromium from the distribution's packages (once)" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get install -y --no-install-recommends chromium >/dev/null \
            || { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends chromium >/dev/null; }
        bin=$(command -v chromium)
    fi
    echo "using $bin" >&2
    export LAKEPIPE_TEST_CHROMIUM="$bin"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_http() { # url seconds
    local url=$1 secs=$2
    for _ in $(seq 1 $((secs * 10))); do
        if python3 -c "import urllib.request,sys
try: urllib.request.urlopen('$url', timeout=1)
except urllib.error.HTTPError: pass
except Exception: sys.exit(1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "server at $url did not come up in ${secs}s" >&2
    return 1
}

start_s3_servers() {
    start_moto
    start_garage
    echo "moto at $LAKEPIPE_TEST_MOTO, garage at $LAKEPIPE_TEST_GARAGE" >&2
}

s3_tmp() {
    if [ -z "${S3_TMP:-}" ]; then
        S3_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lakepipe-s3.XXXXXX")
        SERVER_PIDS=()
    fi
}

start_moto() {
    s3_tmp
    local moto_port
    moto_port=$(free_port)
    "$VENV/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$S3_TMP/moto.log" 2>&1 &
    SERVER_PIDS+=($!)
    export LAKEPIPE_TEST_MOTO="http://127.0.0.1:$moto_port"
    wait_http "$LAKEPIPE_TEST_MOTO" 30 || { cat "$S3_TMP/moto.log" >&2; return 1; }
}

start_garage() {
    s3_tmp
    local s3_port rpc_port admin_port cfg
    s3_port=$(free_port); rpc_port=$(free_port); admin_port=$(free_port)
    cfg="$S3_TMP/garage.toml"
    mkdir -p "$S3_TMP/garage/meta" "$S3_TMP/garage/data"
    cat >"$cfg" <<TOML
metadata_dir = "$S3_TMP/garage/meta"
data_dir = "$S3_TMP/garage/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
    GARAGE_CFG=$cfg
    "$GARAGE" -c "$cfg" server >"$S3_TMP/garage.log" 2>&1 &
    SERVER_PIDS+=($!)
    local ok=
    for _ in $(seq 1 100); do
        if "$GARAGE" -c "$cfg" status >/dev/null 2>&1; then ok=1; break; fi
        sleep 0.2
    done
    [ -n "$ok" ] || { cat "$S3_TMP/garage.log" >&2; return 1; }
    local node
    node=$("$GARAGE" -c "$cfg" node id -q 2>/dev/null | cut -d@ -f1)
    "$GARAGE" -c "$cfg" layout assign -z dc1 -c 1G "$node" >/dev/null
    "$GARAGE" -c "$cfg" layout apply --version 1 >/dev/null
    local key_out
    key_out=$("$GARAGE" -c "$cfg" key create lakepipe-test)
    LAKEPIPE_TEST_GARAGE_KEY_ID=$(printf '%s\n' "$key_out" | sed -n 's/^Key ID: *//p' | head -1)
    LAKEPIPE_TEST_GARAGE_SECRET=$(printf '%s\n' "$key_out" | sed -n 's/^Secret key: *//p' | head -1)
    if [ -z "$LAKEPIPE_TEST_GARAGE_KEY_ID" ] || [ -z "$LAKEPIPE_TEST_GARAGE_SECRET" ]; then
        echo "could not read the garage key from:" >&2; echo "$key_out" >&2; return 1
    fi
    "$GARAGE" -c "$cfg" key allow --create-bucket lakepipe-test >/dev/null
    export LAKEPIPE_TEST_GARAGE="http://127.0.0.1:$s3_port"
    export LAKEPIPE_TEST_GARAGE_KEY_ID LAKEPIPE_TEST_GARAGE_SECRET
    wait_http "$LAKEPIPE_TEST_GARAGE" 30
}

stop_s3_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVER_PIDS[@]:-}"; do
        [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    done
    [ -n "${S3_TMP:-}" ] && rm -rf "$S3_TMP"
}
