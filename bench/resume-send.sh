#!/usr/bin/env bash
# Bytes sent again to continue an interrupted receive through a pipe, versus
# the whole stream. For each benchmark snapshot (usr.snap and big.snap of
# bench/out/bench.img, mounted read-only) and each cut (10%, 50%, 90% of
# the stream): `head -c CUT STREAM | rawsend receive DEST` stops part-way;
# `rawsend receive --resume-token DEST/NAME` gives the token; `rawsend send
# --resume TOKEN --compressed-data SNAP` writes the continuation, and
# `rawsend receive` of it finishes the subvolume.
# Prints the bytes applied before the cut, the continuation's size and the
# stream's size, and checks that the subvolume ends up received. Root.
#
#   sudo bench/resume-send.sh [usr|big ...]   default: usr big
#   IMGSIZE=8G                                 (destination size)
#
# Byte counts are exact (no timing): they do not depend on machine load.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IMGSIZE=${IMGSIZE:-8G}
CUTS=(10 50 90)

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup head
bench_require_rawsend
(($# > 0)) || set -- usr big
[[ -f $OUT/bench.img ]] || die "missing $OUT/bench.img (run bench/make-streams.sh)"
bench_tmpdir
SRC=$BENCH_TMP/src MNT=$BENCH_TMP/mnt IMG=$BENCH_TMP/recv.img
bench_loop_mount "$OUT/bench.img" "$SRC" ro
bench_describe_rawsend

for s in "$@"; do
	f=$OUT/$s.v2c.stream
	[[ -f $f ]] || die "missing $f (run bench/make-streams.sh)"
	total=$(stat -c %s "$f")
	for pct in "${CUTS[@]}"; do
		rm -f "$IMG"; truncate -s "$IMGSIZE" "$IMG"; mkfs.btrfs -f -q "$IMG" >/dev/null
		bench_loop_mount "$IMG" "$MNT" noatime
		cut=$((total * pct / 100))
		head -c "$cut" "$f" | "$RAWSEND" receive -q "$MNT" 2>/dev/null && die "the cut receive succeeded"
		token=$("$RAWSEND" receive --resume-token "$MNT/$s.snap")
		applied=$(cut -d. -f8 <<<"$token")
		"$RAWSEND" send -q --resume "$token" --compressed-data "$SRC/$s.snap" >"$BENCH_TMP/continuation"
		written=$(stat -c %s "$BENCH_TMP/continuation")
		"$RAWSEND" receive -q -f "$BENCH_TMP/continuation" "$MNT"
		btrfs subvolume show "$MNT/$s.snap" | grep -q 'Received UUID:.*-' || die "$s not received after resuming"
		printf '%-4s cut %3d%%: applied %11d, continuation %11d, stream %11d; continuation - (stream - applied) = %d bytes\n' \
			"$s" "$pct" "$applied" "$written" "$total" $((written - (total - applied)))
		printf 'resume-send\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$s" "$pct" "$applied" "$written" "$total" >>"$OUT/results.tsv"
		bench_unmount "$MNT"
	done
done
