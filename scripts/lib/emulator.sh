# shellcheck shell=bash
# What the emulator scripts share: one emulator per port with its PID, log and lock files under .emulators/,
# started in its own session and waited for until it answers, stopped by its PID, and their command line.
#
# Sourced (not run) as `source scripts/lib/emulator.sh NAME [KIND]`:
#   NAME           prefix of every message, e.g. bigquery_emulator
#   KIND           prefix of the files: .emulators/KIND-PORT.pid, .log and .lock
# by scripts/bigquery_emulator.sh and scripts/pubsub_emulator.sh, which then set:
#   PORT           the port the emulator listens on
#   ADDRESS        how messages name it, e.g. http://127.0.0.1:9050
#   TIMEOUT        seconds `start` waits for it to answer
#   PROCESS_MATCH  (optional) a word its command line holds: a PID file whose process does not hold it is
#                  a stale one (the PID was reused)
#   READY_DETAILS  (optional) more for the "ready" line, e.g. ", grpc 127.0.0.1:9060"
# define two functions:
#   probe          one cheap call; sets CODE: 200 ready, 000 nothing answers, anything else an error (BODY)
#   prepare        whatever comes before a start (install, folders); sets the array SERVER to the command
#                  that runs the emulator in the foreground
# and end with `emulator_main "$@"`.
# scripts/setup_bigquery_emulator.sh uses only die and hold_lock.

NAME=$1
KIND=${2:-}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="$ROOT/.emulators"
mkdir -p "$STATE"
# EMULATOR_RUN_DIR: where an instance's PID, log and lock files go (default .emulators/); the tests give
# each emulator of theirs a folder of its own, so that the ports they pick leave nothing behind here
RUN_DIR="${EMULATOR_RUN_DIR:-$STATE}"

die() { echo "$NAME: ERROR: $*" >&2; exit 1; }

hold_lock() {  # hold_lock FILE SECONDS WHAT: hold FILE's lock on fd 9 until the script ends, or die
    exec 9> "$1"
    flock -w "$2" 9 || die "another $3 holds $1"
}

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

alive() {  # alive PID: the process exists and has not exited. A server that exited stays a zombie until
    # whoever adopted it (PID 1, once the start script is gone) reaps it, which some inits do only every
    # second or two; kill -0 still succeeds on a zombie, so /proc's state says (no /proc: kill -0 alone)
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null)"
    [[ "${state:0:1}" != Z ]]
}

running_pid() {  # prints the PID if our emulator process is alive
    local pid
    [[ -f "$PID_FILE" ]] || return 1
    pid="$(cat "$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    if [[ -n "${PROCESS_MATCH:-}" ]]; then
        tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$PROCESS_MATCH" || return 1
    fi
    echo "$pid"
}

terminate() {  # SIGTERM, wait up to 10 s, then SIGKILL; removes the pid file
    local pid=$1
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 200); do alive "$pid" || break; sleep 0.05; done
    if alive "$pid"; then
        echo "$NAME: pid $pid ignored SIGTERM for 10 s, sending SIGKILL" >&2
        kill -9 "$pid" 2>/dev/null || true
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.05; done
    fi
    rm -f "$PID_FILE"
}

show_log() { echo "--- last lines of $LOG:" >&2; tail -n 20 "$LOG" >&2; }

emulator_start() {
    local pid t0 deadline ms
    if pid="$(running_pid)"; then
        echo "$NAME: already running (pid $pid, $ADDRESS)"; return 0
    fi
    rm -f "$PID_FILE"
    probe
    [[ "$CODE" == 000 ]] || die "port $PORT already answers, but not an emulator this script started"
    prepare
    # setsid: own session, so a Ctrl-C in the caller's terminal does not reach the server;
    # 9>&-: the server must not inherit (and so keep) this script's lock.
    setsid "${SERVER[@]}" >> "$LOG" 2>&1 < /dev/null 9>&- &
    pid=$!
    t0=$(now_ms); deadline=$((t0 + TIMEOUT * 1000))
    echo "$pid" > "$PID_FILE"
    while probe; [[ "$CODE" != 200 ]]; do
        if [[ "$CODE" != 000 ]]; then
            show_log; terminate "$pid"
            die "emulator answered HTTP $CODE: ${BODY:0:500} (stopped it)"
        fi
        if ! alive "$pid"; then
            rm -f "$PID_FILE"; show_log
            die "emulator exited during startup"
        fi
        if (( $(now_ms) >= deadline )); then
            show_log; terminate "$pid"
            die "emulator did not answer on $ADDRESS within ${TIMEOUT}s (stopped it)"
        fi
        sleep 0.2
    done
    ms=$(( $(now_ms) - t0 ))
    echo "$NAME: ready in $(( ms / 1000 )).$(( ms % 1000 / 100 )) s (pid $pid, $ADDRESS${READY_DETAILS:-}, log $LOG)"
}

emulator_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"; echo "$NAME: not running (port $PORT)"; return 0
    fi
    terminate "$pid"
    echo "$NAME: stopped (pid $pid)"
}

emulator_status() {  # exits 0 if it runs and answers, 3 if not
    local pid
    if pid="$(running_pid)"; then
        probe; if [[ "$CODE" == 200 ]]; then echo "$NAME: running (pid $pid, $ADDRESS)"; return 0; fi
        echo "$NAME: pid $pid alive but $ADDRESS does not answer"; return 3
    fi
    echo "$NAME: not running (port $PORT)"; return 3
}

emulator_main() {  # emulator_main start|stop|status|restart
    mkdir -p "$RUN_DIR"
    PID_FILE="$RUN_DIR/$KIND-$PORT.pid"
    LOG="$RUN_DIR/$KIND-$PORT.log"
    # One start/stop at a time per port (parallel test runs calling `start` at once).
    hold_lock "$RUN_DIR/$KIND-$PORT.lock" 60 "start/stop for port $PORT"
    case "${1:-}" in
        start) emulator_start ;;
        stop) emulator_stop ;;
        status) emulator_status ;;
        restart) emulator_stop; emulator_start ;;
        *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
    esac
}
