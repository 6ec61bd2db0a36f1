# Shell helpers the bench scripts source: the processes a script starts are
# stopped on exit, a bounded wait for a loopback port, a process's CPU time.
#   . "$ROOT/bench/lib.sh"    (after `set -euo pipefail`)

# Every pid a script appends to PIDS is killed and reaped on exit.
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

wait_port() { # port: until something listens on 127.0.0.1:port, at most 30 s
    for _ in $(seq 1 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

cpu_ticks() { # pid: utime + stime in clock ticks
    awk '{print $14 + $15}' "/proc/$1/stat"
}
