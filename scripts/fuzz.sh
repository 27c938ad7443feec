#!/usr/bin/env bash
# Fuzzes ClientFrameDecoder with libFuzzer and AddressSanitizer.
#
#   scripts/fuzz.sh [seconds]      (default 300)
#
# Fuzz/FrameDecoder/main.swift checks both ClientFrameDecoder.decode (one WebSocket message)
# and decodeBatch (a long-poll send body), including that every decoded frame round-trips.
#
# Builds the sources of ParleyCore and ParleyProtocol plus Fuzz/FrameDecoder/main.swift as
# one module (the `import ParleyCore` lines are stripped from a copy under .build-fuzz/), runs
# libFuzzer for at most [seconds], and copies any crashing input into
# Tests/ParleyProtocolTests/Crashers/, where the regression test replays it on every
# `swift test`. Exits non-zero if libFuzzer found a crash.
set -euo pipefail

seconds="${1:-300}"
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/.build-fuzz"
src="$work/src"
corpus="$work/corpus"
artifacts="$work/artifacts"
crashers="$root/Tests/ParleyProtocolTests/Crashers"
binary="$work/frame-decoder-fuzzer"

rm -rf "$src" "$artifacts"
mkdir -p "$src" "$corpus" "$artifacts"

for file in "$root"/parley-sdk/Sources/ParleyCore/*.swift "$root"/parley-sdk/Sources/ParleyProtocol/*.swift; do
    sed -E '/^import (ParleyCore|ParleyProtocol)$/d' "$file" > "$src/$(basename "$(dirname "$file")")-$(basename "$file")"
done
cp "$root/Fuzz/FrameDecoder/main.swift" "$src/main.swift"

echo "fuzz.sh: building $binary"
swiftc -sanitize=fuzzer,address -parse-as-library -module-name ParleyFuzz -O -g \
    "$src"/*.swift -o "$binary"

# Seed the corpus with every past crasher, the regression seeds and one sample of every frame
# (Fuzz/FrameDecoder/seeds). The corpus itself is kept between runs.
find "$crashers" "$root/Fuzz/FrameDecoder/seeds" -maxdepth 1 -type f ! -name '.keep' -exec cp {} "$corpus/" \;

echo "fuzz.sh: fuzzing for ${seconds}s; corpus $corpus"
export SWIFT_BACKTRACE=enable=no
status=0
"$binary" "$corpus" \
    -dict="$root/Fuzz/FrameDecoder/frames.dict" \
    -max_total_time="$seconds" \
    -max_len=65600 \
    -timeout=10 \
    -rss_limit_mb=4096 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts/" \
    || status=$?

found=0
for crash in "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-*; do
    [ -e "$crash" ] || continue
    cp "$crash" "$crashers/"
    echo "fuzz.sh: saved $(basename "$crash") to Tests/ParleyProtocolTests/Crashers/"
    found=$((found + 1))
done

if [ "$status" -ne 0 ] || [ "$found" -ne 0 ]; then
    echo "fuzz.sh: libFuzzer exited with $status; $found crashing input(s) saved" >&2
    exit 1
fi
echo "fuzz.sh: no crashes in ${seconds}s"
