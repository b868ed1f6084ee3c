#!/usr/bin/env bash
# Compression where the kernel did not compress (root): rawsend transcode,
# send --compress and receive --compress against the tools one would use
# otherwise, on the same data, alternating runs, medians (lib.sh).
#
#   sudo bench/transcode.sh [PART...]     parts: transcode send receive (default: all)
#   RUNS=5 LEVEL=3 STREAMS="usr.v1 big.v1" sudo bench/transcode.sh
#
# transcode: `rawsend transcode --compress zstd:LEVEL -f S.v1 -o OUT` against
#   `zstd -T0 -LEVEL -c S.v1 > OUT` (all cores, whole stream), both written to
#   a file in the scratch dir (removed before each run). Then output sizes:
#   rawsend's (extent-wise, 128 KiB extents, ENCODED_WRITE where it saves a
#   sector) beside `zstd -LEVEL` of the whole stream.
# send: on bench/out/bench.img (make-streams.sh; mounted read-only),
#   `rawsend send --compress zstd:LEVEL -f OUT SNAP` against
#   `btrfs send --proto 1 SNAP | zstd -T0 -LEVEL > OUT` (the kernel sends the
#   data decompressed in both), with the output sizes.
# receive: `rawsend receive --compress zstd:LEVEL -f S.v1 DEST` onto a fresh
#   btrfs mounted without compression against `btrfs receive -f S.v1 DEST` onto
#   one mounted compress-force=zstd:LEVEL, each followed by `sync`, a fresh
#   filesystem per run; then compsize of each (disk usage and types).
: "${RUNS:=5}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LEVEL=${LEVEL:-3}
STREAMS=${STREAMS:-usr.v1 big.v1}
IMGSIZE=${IMGSIZE:-8G}

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup compsize zstd
bench_require_rawsend
(($# > 0)) || set -- transcode send receive
bench_tmpdir; TMP=$BENCH_TMP
bench_describe_rawsend
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS, zstd level $LEVEL, $(zstd --version)"

stream_file() {
	local f=$OUT/$1.stream
	[[ -s $f ]] || die "missing $f (run: sudo bench/make-streams.sh)"
	echo "$f"
}

part_transcode() {
	local s f o=$TMP/out
	bench_report_header
	for s in $STREAMS; do
		f=$(stream_file "$s")
		bench_compare "transcode $s" \
			zstd "exec zstd -q -T0 -$LEVEL -c '$f' > '$o'" \
			rawsend "exec '$RAWSEND' transcode --compress zstd:$LEVEL -f '$f' -o '$o'" \
			"rm -f '$o'"
		"$RAWSEND" transcode --compress "zstd:$LEVEL" -f "$f" -o "$o"
		local ours whole
		ours=$(stat -c %s "$o")
		whole=$(zstd -q -"$LEVEL" -c "$f" | wc -c)
		printf '%-22s sizes: input %d, zstd -%s whole stream %d, rawsend transcode %d (%.3fx zstd)\n' \
			"transcode $s" "$(stat -c %s "$f")" "$LEVEL" "$whole" "$ours" "$(echo "$ours / $whole" | bc -l)"
		rm -f "$o"
	done
}

part_send() {
	local img=$OUT/bench.img mnt=$TMP/src o=$TMP/out name snap
	[[ -f $img ]] || die "missing $img (run: sudo bench/make-streams.sh)"
	bench_loop_mount "$img" "$mnt" ro
	bench_report_header
	for name in usr big; do
		snap=$mnt/$name.snap
		bench_compare "send $name" \
			progs+zstd "btrfs -q send --proto 1 '$snap' | zstd -q -T0 -$LEVEL > '$o'" \
			rawsend "exec '$RAWSEND' send -q --compress zstd:$LEVEL -f '$o' '$snap'" \
			"rm -f '$o'; sync"
		btrfs -q send --proto 1 "$snap" | zstd -q -T0 -"$LEVEL" >"$o"
		local theirs ours
		theirs=$(stat -c %s "$o")
		"$RAWSEND" send -q --compress "zstd:$LEVEL" -f "$o" "$snap"
		ours=$(stat -c %s "$o")
		printf '%-22s sizes: btrfs send | zstd -%s %d, rawsend send --compress %d (%.3fx)\n' \
			"send $name" "$LEVEL" "$theirs" "$ours" "$(echo "$ours / $theirs" | bc -l)"
		rm -f "$o"
	done
	bench_unmount "$mnt"
}

# fresh_fs MNT OPTS: a new filesystem in the scratch dir, mounted at MNT.
fresh_fs() {
	rm -f "$TMP/recv.img"
	truncate -s "$IMGSIZE" "$TMP/recv.img"
	mkfs.btrfs -f -q "$TMP/recv.img" >/dev/null
	bench_loop_mount "$TMP/recv.img" "$1" "$2"
}

drop_fs() {
	sync
	bench_unmount "$1"
	rm -f "$TMP/recv.img"
}

# timed_receive TOOL STREAM RESULTFILE [KEEP]: one timed run on a fresh fs;
# with KEEP, prints compsize of what was received.
timed_receive() {
	local tool=$1 f=$2 res=$3 keep=${4:-} mnt=$TMP/mnt cmd
	if [[ $tool == progs ]]; then
		fresh_fs "$mnt" "noatime,compress-force=zstd:$LEVEL"
		cmd="btrfs receive -f '$f' '$mnt' 2>/dev/null && sync"
	else
		fresh_fs "$mnt" noatime
		cmd="'$RAWSEND' receive -q --compress zstd:$LEVEL -f '$f' '$mnt' && sync"
	fi
	if [[ -n $keep ]]; then
		bash -c "$cmd" || die "$tool receive failed"
		echo "  compsize after $tool:"
		compsize "$mnt" | sed 's/^/    /'
	else
		bench_time "$cmd" "$res"
	fi
	drop_fs "$mnt"
}

part_receive() {
	local s f dir
	for s in $STREAMS; do
		f=$(stream_file "$s")
		echo "receive $s ($(stat -c %s "$f") bytes): progs onto compress-force=zstd:$LEVEL, rawsend --compress zstd:$LEVEL onto no compression"
		timed_receive progs "$f" /dev/null keep
		timed_receive rawsend "$f" /dev/null keep
		dir=$(mktemp -d "$TMP/cmp.XXXXXX")
		: >"$dir/a"; : >"$dir/b"
		bench_alternate "timed_receive progs $(printf %q "$f") $(printf %q "$dir/a")" \
			"timed_receive rawsend $(printf %q "$f") $(printf %q "$dir/b")"
		bench_report_header
		bench_report_pair "receive-zstd $s" "$dir"
		rm -rf "$dir"
	done
}

for part in "$@"; do
	case $part in
	transcode | send | receive) "part_$part" ;;
	*) die "unknown part $part (transcode, send, receive)" ;;
	esac
done
