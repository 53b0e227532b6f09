# Sourced by .ci/run: a throwaway PostgreSQL cluster for the alert store's tests.
#
# Best effort, like chromium for the report: when it cannot start a server the
# PostgreSQL half of tests/test_store*.py skips and says why; nothing else
# needs it. As root with apt-get it installs Debian's `postgresql` package if
# missing, then runs initdb + pg_ctl as the `postgres` user in a temporary
# directory on a free localhost port (trust auth, fsync off: it lives for one
# CI run), exports SURV_TEST_POSTGRES_URL and stops the cluster on exit.
# A URL already in SURV_TEST_POSTGRES_URL (a developer's own server) is kept.
# Run by hand:  source .ci/postgres.sh && make test

surv_pg_bindir() {
    # (|| true: .ci/run runs under set -euo pipefail, and "none" is an answer)
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true
}

surv_pg_start() {
    if [ -n "${SURV_TEST_POSTGRES_URL:-}" ]; then
        return 0
    fi
    local bindir dir port as_pg
    bindir=$(surv_pg_bindir)
    if [ -z "$bindir" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing postgresql for the alert store's tests"
        if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null); then
            echo "postgresql could not be installed; the store's PostgreSQL tests will skip"
            return 0
        fi
        bindir=$(surv_pg_bindir)
    fi
    if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
        echo "no PostgreSQL server binaries; the store's PostgreSQL tests will skip"
        return 0
    fi
    dir=$(mktemp -d /tmp/surv-pg.XXXXXX)
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg=()
    if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
        chown postgres "$dir"
        as_pg=(runuser -u postgres --)
    fi
    if "${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U surv --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        && "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null \
        && "${as_pg[@]}" "$bindir/createdb" -h 127.0.0.1 -p "$port" -U surv surv_test; then
        export SURV_TEST_POSTGRES_URL="postgresql://surv@127.0.0.1:$port/surv_test"
        SURV_PG_STOP=("${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m fast stop)
        trap 'surv_pg_stop' EXIT
        echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') for the store tests at $SURV_TEST_POSTGRES_URL"
    else
        echo "PostgreSQL could not be started (see $dir/*.log); the store's PostgreSQL tests will skip"
        tail -n 5 "$dir"/*.log 2>/dev/null || true
    fi
}

surv_pg_stop() {
    "${SURV_PG_STOP[@]}" >/dev/null 2>&1 || true
}

surv_pg_start
