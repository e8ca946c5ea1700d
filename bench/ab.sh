#!/bin/bash
# bench/ab.sh OLD NEW [ROUNDS]: runs the fleet scenarios against two sphere
# binaries in turn, each on a fresh `sphere serve` (SQLite, in a temporary
# directory), ROUNDS times (default 2), so that a change is compared side
# by side on a shared machine. Prints one line per scenario and binary.
# Loopback only; every run is bounded by the scenario's count or duration.
set -euo pipefail
old=$1 new=$2 rounds=${3:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# run BIN NAME sim-args...: a fresh service, the scenario, the service stopped.
run() {
	local bin=$1 name=$2 d
	shift 2
	d=$(mktemp -d "$work/srv-XXXX")
	"$bin" serve --log-level warn --addr 127.0.0.1:0 --data-dir "$d/data" >"$d/out" 2>&1 &
	local pid=$!
	for _ in $(seq 150); do grep -q -- '--token' "$d/out" && grep -q 'listening on' "$d/out" && break; sleep 0.2; done
	local url tok
	url=$(grep -o 'listening on https://[^ ]*' "$d/out" | head -1 | awk '{print $3}')
	tok=$(grep -o -- '--token sph_[^ ]*' "$d/out" | head -1 | awk '{print $2}')
	SPHERE_CONFIG=$d/config.json "$bin" login --server "$url" --ca-file "$d/data/tls/server.crt" --token "$tok" >/dev/null
	# The fleet's state in /dev/shm for both binaries (older ones kept it
	# in $TMPDIR by default).
	local fleet
	fleet=$(mktemp -d /dev/shm/sphere-ab-XXXX 2>/dev/null || mktemp -d "$work/fleet-XXXX")
	SPHERE_CONFIG=$d/config.json "$bin" sim --server-pid "$pid" --dir "$fleet" "$@" >"$work/$name.out" 2>/dev/null || true
	rm -rf "$fleet"
	kill -INT "$pid"; wait "$pid" || true
}

# perop FILE: the service's and the simulator's CPU per operation.
perop() { grep -o '[0-9.]*[mµ]s per operation' "$1" | awk '{print $1}' | paste -sd' ' - ; }

for r in $(seq "$rounds"); do
	for side in old new; do
		bin=$old; [ "$side" = new ] && bin=$new
		run "$bin" storm --devices 2000 --scenario storm --concurrency 64
		run "$bin" uc --devices 500 --scenario update-check --concurrency 32 --reuse-connections --duration 10s
		run "$bin" ren --devices 300 --scenario renewal --concurrency 32 --reuse-connections --duration 10s
		run "$bin" idle --devices 3000 --scenario idle --concurrency 64 --duration 5s
		run "$bin" rep --devices 100 --scenario reports --report-events 1000 --concurrency 16
		echo "== $side ($bin), round $r, load $(cut -d' ' -f1-3 /proc/loadavg)"
		echo "storm:   $(grep '^attest' "$work/storm.out" | awk '{print $4 "/s p50 " $5 " p99 " $7}'); CPU per op (service, simulator): $(perop "$work/storm.out")"
		echo "checks:  $(grep '^update-check' "$work/uc.out" | awk '{print $4 "/s p50 " $5 " p99 " $7}'); CPU per op: $(perop "$work/uc.out")"
		echo "renewal: $(grep '^renewal' "$work/ren.out" | awk '{print $4 "/s p50 " $5 " p99 " $7}'); CPU per op: $(perop "$work/ren.out")"
		echo "idle:    $(grep -o '[0-9.]* KiB per connection' "$work/idle.out")"
		echo "reports: $(grep -o '[0-9]* events/s' "$work/rep.out"); service $(grep -o 'CPU [0-9.]*s' "$work/rep.out" | head -1) for 100,000 events"
	done
done
