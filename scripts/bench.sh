#!/bin/sh
# The benchmark suite: a release build, every benchmark, one JSON result each under results/,
# then the report (tables and plots in docs/performance.md, docs/plots/).
#
#   scripts/bench.sh                  everything (about 20 minutes on 2 cores)
#   scripts/bench.sh fanout idle      only these: fanout, joins, idle, failover
#   RESULTS=/tmp/r scripts/bench.sh   results elsewhere (the report still goes to docs/)
#   REPORT=0 scripts/bench.sh         results only, no report
#
# Each benchmark starts its own server from the release binary, on loopback, and loads it
# from a second process (`parley bench`), so generator and server share the machine's cores.
set -eu
cd "$(dirname "$0")/.."

RESULTS=${RESULTS:-results}
REPORT=${REPORT:-1}
WHICH=${*:-fanout joins idle failover}

echo "bench: building the release binary" >&2
swift build -c release --product parley >&2
BIN=.build/release/parley
PARLEY_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || PARLEY_COMMIT="$PARLEY_COMMIT+changes"
export PARLEY_COMMIT
mkdir -p "$RESULTS"

# Offered deliveries per second: steps of about 1.5x, so the peak is known within 50%.
LADDER=10000,15000,22500,34000,50000,75000,112000,170000,250000,380000,570000,850000

run() {
    name=$1
    shift
    echo "bench: $name" >&2
    "$BIN" bench "$@" --output "$RESULTS/$name.json"
}

for which in $WHICH; do
    case $which in
    fanout)
        run fanout-1x10 fanout --meetings 1 --participants 10 --deliveries $LADDER
        run fanout-1x100 fanout --meetings 1 --participants 100 --deliveries $LADDER
        run fanout-1x1000 fanout --meetings 1 --participants 1000 --deliveries $LADDER
        run fanout-100x10 fanout --meetings 100 --participants 10 --deliveries $LADDER
        ;;
    joins) run joins joins ;;
    idle) run idle idle --clients 5000 --meetings 50 ;;
    failover) run failover failover --trials 20 ;;
    *)
        echo "bench: unknown benchmark '$which' (fanout, joins, idle, failover)" >&2
        exit 2
        ;;
    esac
done

if [ "$REPORT" = 1 ]; then
    python3 -c "import matplotlib" 2>/dev/null || pip install --quiet matplotlib >&2 || true
    python3 scripts/bench_report.py --results "$RESULTS"
fi
