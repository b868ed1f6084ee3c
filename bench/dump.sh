#!/usr/bin/env bash
# Time `rawsend dump -f S` against `btrfs receive --dump -f S` (TZ=UTC,
# stdout to /dev/null) on the streams made by make-streams.sh.
#
#   bench/dump.sh [STREAM...]        default: usr.v2c usr.v1 big.v2c big.v1
#   RUNS=9 WARMUP=1 bench/dump.sh    (defaults: RUNS=9, WARMUP=1)
#
# First checks that both tools print the same text (line count and sha256;
# `btrfs receive --dump` stops at the first END, these are single-stream
# files so both read everything). Then WARMUP untimed runs of each and RUNS
# alternating timed runs (A,B / B,A ...), see bench_time in lib.sh; prints median wall,
# median user+sys CPU, median user CPU, median peak RSS and the ratio
# btrfs-progs / rawsend (> 1: rawsend is faster). Page cache is warm: the
# stream is read once in the verification and warm-up runs, so this measures
# parsing and formatting, not the disk. No root needed.
: "${RUNS:=9}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export TZ=UTC

bench_require_tools btrfs
bench_require_rawsend
(($# > 0)) && set -- "${@%.stream}" || set -- usr.v2c usr.v1 big.v2c big.v1

bench_tmpdir; TMP=$BENCH_TMP
bench_describe_rawsend
log "btrfs-progs: $(btrfs --version)"
log "$(nproc) cores, kernel $(uname -r), runs=$RUNS warmup=$WARMUP"

for s in "$@"; do
	f=$OUT/$s.stream
	[[ -s $f ]] || die "missing $f (run: sudo bench/make-streams.sh)"
	btrfs receive --dump -f "$f" >"$TMP/progs.txt"
	"$RAWSEND" dump -f "$f" >"$TMP/rawsend.txt"
	lp=$(wc -l <"$TMP/progs.txt") lr=$(wc -l <"$TMP/rawsend.txt")
	if cmp -s "$TMP/progs.txt" "$TMP/rawsend.txt"; then same="byte-identical"; else same="DIFFERENT"; fi
	printf '%s: %s bytes, dump lines progs=%s rawsend=%s, output %s\n' \
		"$s" "$(stat -c %s "$f")" "$lp" "$lr" "$same"
	((lp == lr)) || log "WARNING: line counts differ for $s"
	rm -f "$TMP/progs.txt" "$TMP/rawsend.txt"
done
echo
bench_report_header
for s in "$@"; do
	f=$OUT/$s.stream
	bench_compare "dump $s" \
		progs "exec btrfs receive --dump -f '$f' >/dev/null" \
		rawsend "exec '$RAWSEND' dump -f '$f' >/dev/null"
done
