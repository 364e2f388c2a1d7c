# Shell helpers shared by loadtest/cluster-bench.sh, cluster-faults.sh and edge-bench.sh
# (sourced, not run): the processes a script starts, and loopback ports.
#
# The sourcing script sets START_LIMIT_SECS and STOP_LIMIT_SECS, defines
# `log`, and appends the PID of every process it starts to PIDS.

PIDS=()

# Stop every process in PIDS by its PID: SIGTERM (a broker drains), then
# SIGKILL after STOP_LIMIT_SECS.
stop_all() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        local waited=0
        while kill -0 "$pid" 2>/dev/null && ((waited < STOP_LIMIT_SECS * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# True when something accepts connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Echo the first free port from $1.
free_port() {
    local port=$1
    while port_in_use "$port"; do port=$((port + 1)); done
    echo "$port"
}

# Wait until something listens on $1, at most START_LIMIT_SECS.
wait_port() {
    local port=$1 waited=0
    until port_in_use "$port"; do
        sleep 0.1
        waited=$((waited + 1))
        if ((waited > START_LIMIT_SECS * 10)); then
            log "nothing listens on $port after ${START_LIMIT_SECS}s"
            exit 1
        fi
    done
}
