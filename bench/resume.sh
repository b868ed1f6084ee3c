#!/usr/bin/env bash
# The cost of keeping resume state: `rawsend receive -f S DEST && sync` with
# --no-resume (no state, as btrfs-progs), with the defaults (checkpoints every
# 256 MiB or 30 s, a progress record before each namespace command) and with
# --checkpoint-every 64. Root.
#
#   sudo bench/resume.sh [STREAM...]        default: usr.v2c big.v2c
#   RUNS=5 IMGSIZE=8G MNTOPTS=noatime        (defaults shown)
#
# Each run gets a fresh btrfs (sparse image, mkfs, loop mount: untimed); the
# flag sets alternate within each round so that drift in machine load hits
# them alike. Prints the median wall time of each and its ratio to
# --no-resume (> 1: keeping state costs), and appends them to results.tsv.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MNTOPTS=${MNTOPTS:-noatime}
IMGSIZE=${IMGSIZE:-8G}
FLAGSETS=("--no-resume" "" "--checkpoint-every 64")

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup
bench_require_rawsend
(($# > 0)) && set -- "${@%.stream}" || set -- usr.v2c big.v2c
bench_tmpdir
MNT=$BENCH_TMP/mnt IMG=$BENCH_TMP/recv.img
bench_describe_rawsend
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS"

for s in "$@"; do
	f=$OUT/$s.stream
	[[ -f $f ]] || die "missing $f (run bench/make-streams.sh)"
	for i in "${!FLAGSETS[@]}"; do : >"$BENCH_TMP/res.$i"; done
	for ((run = 0; run < RUNS; run++)); do
		for i in "${!FLAGSETS[@]}"; do
			rm -f "$IMG"; truncate -s "$IMGSIZE" "$IMG"; mkfs.btrfs -f -q "$IMG" >/dev/null
			bench_loop_mount "$IMG" "$MNT" "$MNTOPTS"
			bench_time "'$RAWSEND' receive -q ${FLAGSETS[i]} -f '$f' '$MNT' && sync" "$BENCH_TMP/res.$i"
			bench_unmount "$MNT"
		done
	done
	base=$(_col "$BENCH_TMP/res.0" '$1' | median)
	for i in "${!FLAGSETS[@]}"; do
		wall=$(_col "$BENCH_TMP/res.$i" '$1' | median)
		ratio=$(awk -v a="$wall" -v b="$base" 'BEGIN { printf "%.3f", a / b }')
		printf '%-10s %-24s median wall %7.3f s  ratio to --no-resume %s  (%s)\n' "$s" "${FLAGSETS[i]:-defaults}" \
			"$wall" "$ratio" "$(_col "$BENCH_TMP/res.$i" '$1' | paste -sd,)"
		printf 'resume\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$s" "${FLAGSETS[i]:-defaults}" "$wall" "$ratio" >>"$OUT/results.tsv"
	done
done
