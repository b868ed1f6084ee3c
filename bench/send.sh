#!/usr/bin/env bash
# Time `rawsend send -f OUT SNAP` against `btrfs send -f OUT SNAP` (root).
#
#   sudo bench/send.sh [CASE...]     default: usr.v2c usr.v1 big.v2c big.v1
#   RUNS=5 WARMUP=1 sudo bench/send.sh
#
# Mounts bench/out/bench.img (kept by make-streams.sh) read-only on a loop
# device in a scratch dir and sends the read-only snapshots usr.snap and
# big.snap with `--compressed-data` (v2c) or `--proto 1` (v1) to a file in
# the scratch dir. Before every run (untimed): remove the previous output
# and `sync`, so one run's writeback does not land in the next one's time.
# The filesystem stays mounted, so its metadata and data are in the page
# cache after the warm-up: this measures the send path (kernel stream
# generation + moving the bytes to the file), not the loop device.
# First checks that both tools produce streams with the same dump text
# (rawsend dump) and reports whether the stream bytes are identical.
# The EXIT trap always unmounts and detaches.
: "${RUNS:=5}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export TZ=UTC

bench_require_root
bench_require_tools btrfs losetup
bench_require_rawsend
IMG=$OUT/bench.img
[[ -f $IMG ]] || die "missing $IMG (run: sudo bench/make-streams.sh --force)"
(($# > 0)) || set -- usr.v2c usr.v1 big.v2c big.v1

bench_tmpdir; TMP=$BENCH_TMP
MNT=$TMP/mnt
bench_loop_mount "$IMG" "$MNT" ro
bench_describe_rawsend
log "btrfs-progs: $(btrfs --version); $(nproc) cores, kernel $(uname -r), runs=$RUNS warmup=$WARMUP"

ok=()
for c in "$@"; do
	snap=$MNT/${c%%.*}.snap
	[[ -d $snap ]] || die "no snapshot $snap in $IMG"
	fl=$(bench_send_flags "$c")
	btrfs -q send $fl -f "$TMP/progs.stream" "$snap"
	if ! "$RAWSEND" send -q $fl -f "$TMP/rawsend.stream" "$snap" 2>"$TMP/err"; then
		printf '%s: rawsend send FAILED: %s\n' "$c" "$(head -c 400 "$TMP/err")"
		rm -f "$TMP/progs.stream" "$TMP/rawsend.stream"
		continue
	fi
	sp=$(stat -c %s "$TMP/progs.stream") sr=$(stat -c %s "$TMP/rawsend.stream")
	if cmp -s "$TMP/progs.stream" "$TMP/rawsend.stream"; then
		same="stream bytes identical"
	elif cmp -s <("$RAWSEND" dump -f "$TMP/progs.stream") <("$RAWSEND" dump -f "$TMP/rawsend.stream"); then
		same="stream bytes differ, dump text identical"
	else
		same="DUMP TEXT DIFFERS"
	fi
	printf '%s: progs %s bytes, rawsend %s bytes, %s\n' "$c" "$sp" "$sr" "$same"
	rm -f "$TMP/progs.stream" "$TMP/rawsend.stream"
	ok+=("$c")
done
((${#ok[@]} > 0)) || die "rawsend send failed on every case; nothing to time"
echo
bench_report_header
for c in "${ok[@]}"; do
	snap=$MNT/${c%%.*}.snap
	fl=$(bench_send_flags "$c")
	o=$TMP/out.stream
	bench_compare "send $c" \
		progs "exec btrfs -q send $fl -f '$o' '$snap'" \
		rawsend "exec '$RAWSEND' send -q $fl -f '$o' '$snap'" \
		"rm -f '$o'; sync"
done
