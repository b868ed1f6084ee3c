#!/usr/bin/env bash
# What progress costs (root): rawsend against itself, in one run.
#
#   sudo bench/progress.sh [STREAM...]      default: usr.v2c big.v2c (make-streams.sh)
#   RUNS=5 (default)
#
# receive: `rawsend receive -q -f S DEST && sync` with --progress=never (A)
# and --progress=always (B: stderr is not a terminal, so a line a second, to
# /dev/null; the counters are published and read as for the bar), on one
# loop-mounted btrfs, the received subvolume deleted (untimed) before each
# run. send: on the received subvolume, `rawsend send --compressed-data
# SNAP > /dev/null` without (A) and with --progress=always (B: the estimate
# pass, then the watched relay). bench_compare (lib.sh) alternates the two,
# prints medians and the ratio A/B (< 1: progress costs).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
: "${RUNS:=5}"

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup
bench_require_rawsend
(($# > 0)) && set -- "${@%.stream}" || set -- usr.v2c big.v2c

bench_tmpdir; TMP=$BENCH_TMP
MNT=$TMP/mnt
bench_describe_rawsend
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS"
truncate -s 8G "$TMP/fs.img"
mkfs.btrfs -q -f "$TMP/fs.img"
bench_loop_mount "$TMP/fs.img" "$MNT" noatime
mkdir "$MNT/recv" "$MNT/keep"

bench_report_header
for s in "$@"; do
	f=$OUT/$s.stream
	[[ -s $f ]] || die "missing $f (run: sudo bench/make-streams.sh)"
	prep="btrfs -q subvolume delete $MNT/recv/* >/dev/null 2>&1; rm -rf $MNT/recv/.rawsend-received; sync"
	bench_compare "receive $s progress" \
		never "'$RAWSEND' receive -q --progress=never -f '$f' '$MNT/recv' && sync" \
		always "'$RAWSEND' receive -q --progress=always -f '$f' '$MNT/recv' 2>/dev/null && sync" \
		"$prep"
	"$RAWSEND" receive -q -f "$f" "$MNT/keep"
	snap=$(ls "$MNT/keep")
	bench_compare "send $s progress" \
		plain "cd '$MNT/keep' && '$RAWSEND' send -q --compressed-data '$snap' >/dev/null" \
		progress "cd '$MNT/keep' && '$RAWSEND' send -q --progress=always --compressed-data '$snap' >/dev/null 2>&1"
	btrfs -q subvolume delete "$MNT/keep/$snap"
done
