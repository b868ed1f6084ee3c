#!/usr/bin/env bash
# How close `rawsend send --estimate` comes to the real stream (root).
#
#   sudo bench/estimate.sh            needs bench/out/{usr,big}.v2c.stream (make-streams.sh)
#
# On a fresh sparse btrfs mounted compress=zstd, rawsend receives usr.v2c
# and big.v2c (compressed extents stay compressed), then makes an
# incremental: a snapshot of usr, changed (share/doc removed, /usr/include
# copied in again under a new name, 1000 files appended to, a directory
# renamed), read-only as usr2. For each send (usr, big, usr -> usr2; v1, v2
# and v2 --compressed-data) it prints the estimate, the real size
# (`rawsend send | wc -c`), the error, and the seconds each took.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup
bench_require_rawsend
for s in usr big; do [[ -f $OUT/$s.v2c.stream ]] || die "no $OUT/$s.v2c.stream (run bench/make-streams.sh)"; done

bench_tmpdir; TMP=$BENCH_TMP
MNT=$TMP/mnt
bench_describe_rawsend
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

truncate -s 8G "$TMP/fs.img"
mkfs.btrfs -q -f "$TMP/fs.img"
bench_loop_mount "$TMP/fs.img" "$MNT" compress=zstd
for s in usr big; do
	log "receive $s.v2c"
	"$RAWSEND" receive -q -f "$OUT/$s.v2c.stream" "$MNT"
done

log "incremental: usr -> usr2"
btrfs -q subvolume snapshot "$MNT/usr.snap" "$MNT/work"
rm -rf "$MNT/work/share/doc"
cp -a /usr/include "$MNT/work/include-again"
find "$MNT/work/share" -type f -size +1k | awk "NR <= 1000" | while read -r f; do echo appended >>"$f"; done
mv "$MNT/work/share/man" "$MNT/work/share/man-renamed"
sync
btrfs -q subvolume snapshot -r "$MNT/work" "$MNT/usr2"

seconds() { local start=$EPOCHREALTIME; "$@" >"$TMP/out"; python3 -c "print(f'{$EPOCHREALTIME - $start:.2f}')"; }

printf '%-28s %-22s %14s %14s %9s %8s %8s\n' send flags estimate real error est_s send_s
for what in "usr.snap" "big.snap" "-p usr.snap usr2"; do
	for flags in "--proto 1" "--proto 2" "--compressed-data"; do
		# shellcheck disable=SC2086
		est_s=$(cd "$MNT" && seconds "$RAWSEND" send --estimate -q $flags $what)
		estimate=$(tail -n 1 "$TMP/out")
		# shellcheck disable=SC2086
		send_s=$(cd "$MNT" && seconds bash -c "'$RAWSEND' send -q $flags $what | wc -c")
		real=$(cat "$TMP/out")
		error=$(python3 -c "print(f'{($estimate - $real) * 100 / $real:+.3f}%')")
		printf '%-28s %-22s %14d %14d %9s %8s %8s\n' "$what" "$flags" "$estimate" "$real" "$error" "$est_s" "$send_s"
	done
done
