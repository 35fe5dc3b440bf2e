#!/usr/bin/env bash
# Starts or stops the peer servers of the network benchmarks, on loopback:
#   nats-server -js on 127.0.0.1:14222 (store in a temporary directory),
#   redis-server     on 127.0.0.1:16379 (no persistence).
#
#   benches/scripts/servers.sh start    install if missing (apt), start, wait until they answer
#   benches/scripts/servers.sh stop     stop what `start` started, remove the store
#   benches/scripts/servers.sh status   print which servers answer
#
# `start` exits 0 even if a server cannot be had: it prints
# "nats: up|down (why)" and "redis: up|down (why)" lines, and the benchmark
# skips a contender whose server does not answer. Ports can be moved with
# RINGCAST_BENCH_NATS_PORT / RINGCAST_BENCH_REDIS_PORT, the state directory
# with RINGCAST_BENCH_SERVERS_DIR.
set -u

NATS_PORT="${RINGCAST_BENCH_NATS_PORT:-14222}"
REDIS_PORT="${RINGCAST_BENCH_REDIS_PORT:-16379}"
DIR="${RINGCAST_BENCH_SERVERS_DIR:-${TMPDIR:-/tmp}/ringcast-bench-servers}"

log() { echo "servers.sh: $*" >&2; }

# Is something accepting TCP connections on 127.0.0.1:$1?
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() {
    local port="$1" i
    for i in $(seq 1 50); do
        port_open "$port" && return 0
        sleep 0.1
    done
    return 1
}

install_missing() {
    local missing=()
    command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        log "missing ${missing[*]} and no apt-get"
        return 0
    fi
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else
            log "missing ${missing[*]}; not root, cannot install"
            return 0
        fi
    fi
    log "installing ${missing[*]}"
    # The package lists may be absent on a fresh machine: update once if the
    # install cannot find the packages.
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$DIR/apt.log" 2>&1; then
        $sudo apt-get update -q >>"$DIR/apt.log" 2>&1
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$DIR/apt.log" 2>&1 \
            || log "apt-get install failed (see $DIR/apt.log)"
    fi
}

start_nats() {
    if port_open "$NATS_PORT"; then
        echo "nats: up (already listening on 127.0.0.1:$NATS_PORT)"
        return
    fi
    if ! command -v nats-server >/dev/null 2>&1; then
        echo "nats: down (nats-server not installed)"
        return
    fi
    rm -rf "$DIR/nats-store"
    mkdir -p "$DIR/nats-store"
    nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DIR/nats-store" \
        >"$DIR/nats.log" 2>&1 &
    echo $! >"$DIR/nats.pid"
    if wait_port "$NATS_PORT"; then
        echo "nats: up (127.0.0.1:$NATS_PORT, pid $(cat "$DIR/nats.pid"))"
    else
        echo "nats: down (did not start; see $DIR/nats.log)"
    fi
}

start_redis() {
    if port_open "$REDIS_PORT"; then
        echo "redis: up (already listening on 127.0.0.1:$REDIS_PORT)"
        return
    fi
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "redis: down (redis-server not installed)"
        return
    fi
    mkdir -p "$DIR/redis"
    # No RDB snapshots, no AOF: an in-memory stream, like ringcast's ring.
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --dir "$DIR/redis" --daemonize no --protected-mode no \
        >"$DIR/redis.log" 2>&1 &
    echo $! >"$DIR/redis.pid"
    if wait_port "$REDIS_PORT"; then
        echo "redis: up (127.0.0.1:$REDIS_PORT, pid $(cat "$DIR/redis.pid"))"
    else
        echo "redis: down (did not start; see $DIR/redis.log)"
    fi
}

stop_one() {
    local name="$1" pidfile="$DIR/$1.pid" pid i
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
    echo "$name: stopped"
}

case "${1:-}" in
start)
    mkdir -p "$DIR"
    install_missing
    start_nats
    start_redis
    ;;
stop)
    stop_one nats
    stop_one redis
    rm -rf "$DIR/nats-store" "$DIR/redis"
    ;;
status)
    if port_open "$NATS_PORT"; then echo "nats: up"; else echo "nats: down"; fi
    if port_open "$REDIS_PORT"; then echo "redis: up"; else echo "redis: down"; fi
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
exit 0
