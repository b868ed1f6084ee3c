#!/usr/bin/env bash
# Codec throughput: rawsend-codec (128 KiB extents, one thread) against the
# reference CLI tools on the same corpus (the first MIB MiB of /usr/share).
#
#   bench/codec.sh [MIB]          (default 32; installs zstd, pigz, lzop if missing)
#
# The CLI numbers include process start-up and file I/O (page cache) and use
# their own framing: `zstd -b -B131072` compresses independent 128 KiB
# blocks in memory (closest to ours); `pigz -z -p1 -i -b128` writes zlib
# with independent 128 KiB blocks; `lzop` uses LZO1X-1 with 256 KiB blocks.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mib=${1:-32}

for tool in zstd pigz lzop; do
	command -v "$tool" >/dev/null || {
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q zstd pigz lzop
		break
	}
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=$work/corpus

echo "== rawsend-codec"
cargo run -q --release -p rawsend-codec --example codec_bench -- "$mib" "$corpus"
size=$(stat -c %s "$corpus")

# Prints "MB/s" for running "$@" with the corpus size as the byte count.
rate() {
	local start end
	start=$(date +%s.%N)
	"$@"
	end=$(date +%s.%N)
	awk -v b="$size" -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", b / 1e6 / (e - s) }'
}

row() { # name level compressed-file encode-rate decode-rate
	awk -v n="$1" -v l="$2" -v b="$size" -v c="$(stat -c %s "$3")" -v e="$4" -v d="$5" \
		'BEGIN { printf "%-8s %6s %7.3f %12s %12s\n", n, l, b / c, e, d }'
}

echo
echo "== reference tools on the same $size bytes"
printf "%-8s %6s %7s %12s %12s\n" tool level ratio "encode MB/s" "decode MB/s"
for level in 1 3 6 9; do
	enc=$(rate sh -c "pigz -z -p1 -i -b128 -$level -c '$corpus' > '$work/z'")
	dec=$(rate sh -c "pigz -d -z -p1 -c '$work/z' > /dev/null")
	row pigz "$level" "$work/z" "$enc" "$dec"
done
enc=$(rate sh -c "lzop -c '$corpus' > '$work/l'")
dec=$(rate sh -c "lzop -d -c '$work/l' > /dev/null")
row lzop 3 "$work/l" "$enc" "$dec"
echo
echo "== zstd -b (in-memory benchmark, independent 128 KiB blocks, one thread)"
for level in --fast=15 --fast=5 --fast=1 -b1 -b3 -b9 -b15; do
	if [[ $level == --fast=* ]]; then args=(-b "$level"); else args=("$level"); fi
	zstd -q "${args[@]}" -B131072 -T1 -i2 "$corpus" 2>&1 | tr '\r' '\n' | grep -v '^ *$' | tail -1
done
