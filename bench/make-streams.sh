#!/usr/bin/env bash
# Make real kernel send streams for the benchmarks (root).
#
#   sudo bench/make-streams.sh [--force]
#
# Builds a sparse btrfs image in a mktemp dir, mounts it with compress=zstd,
# and fills two subvolumes:
#   usr  cp -a /usr/share /usr/include        (many small files)
#   big  ~200 MiB of real binaries (/usr/bin, /usr/lib/**/*.so*) concatenated
#        into 4 files of 50 MiB, plus 100 MiB from /dev/urandom
# then sync, read-only snapshots, and writes to bench/out/:
#   usr.v2c.stream  btrfs send --compressed-data   usr.v1.stream  --proto 1
#   big.v2c.stream  btrfs send --compressed-data   big.v1.stream  --proto 1
# The image is kept as bench/out/bench.img (sparse, with the read-only
# snapshots usr.snap and big.snap) for send.sh. Existing outputs are reused
# unless --force. Mounts and loop devices are always undone (EXIT trap).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FORCE=0
for a in "$@"; do
	case $a in
	--force) FORCE=1 ;;
	-h | --help) sed -n '2,17p' "$0"; exit 0 ;;
	*) die "unknown argument: $a" ;;
	esac
done

STREAMS=(usr.v2c.stream usr.v1.stream big.v2c.stream big.v1.stream)
IMG=$OUT/bench.img

print_sizes() {
	local s
	for s in "${STREAMS[@]}"; do
		printf '%-16s %12d bytes  %s\n' "$s" "$(stat -c %s "$OUT/$s")" "$(human "$(stat -c %s "$OUT/$s")")"
	done
	[[ -f $IMG ]] && printf '%-16s %12d bytes apparent, %s allocated\n' bench.img \
		"$(stat -c %s "$IMG")" "$(du -h "$IMG" | cut -f1)"
	return 0
}

mkdir -p "$OUT"
have=1
for s in "${STREAMS[@]}"; do [[ -s $OUT/$s ]] || have=0; done
[[ -f $IMG ]] || have=0
if ((have && !FORCE)); then
	log "reusing existing streams in $OUT (use --force to remake)"
	print_sizes
	exit 0
fi

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup
bench_tmpdir; TMP=$BENCH_TMP
MNT=$TMP/mnt
rm -f "${STREAMS[@]/#/$OUT/}" "$IMG"

log "creating sparse 6 GiB image"
truncate -s 6G "$TMP/bench.img"
mkfs.btrfs -q -f "$TMP/bench.img"
bench_loop_mount "$TMP/bench.img" "$MNT" compress=zstd

log "usr: cp -a /usr/share /usr/include"
btrfs -q subvolume create "$MNT/usr"
cp -a /usr/share /usr/include "$MNT/usr/"

log "big: real binaries (4 x 50 MiB) + 100 MiB random"
btrfs -q subvolume create "$MNT/big"
{ find /usr/bin -xdev -type f -size +16k -print0
  find /usr/lib -xdev -type f -name '*.so*' -size +16k -print0; } |
	sort -z | xargs -0 cat 2>/dev/null | head -c $((200 << 20)) >"$TMP/bins" || true
(($(stat -c %s "$TMP/bins") == 200 << 20)) || die "could not gather 200 MiB of binaries"
split -b 50M -d "$TMP/bins" "$MNT/big/bin."
rm -f "$TMP/bins"
head -c $((100 << 20)) /dev/urandom >"$MNT/big/random.bin"

sync
btrfs -q subvolume snapshot -r "$MNT/usr" "$MNT/usr.snap"
btrfs -q subvolume snapshot -r "$MNT/big" "$MNT/big.snap"
sync
if command -v compsize >/dev/null; then
	for s in usr.snap big.snap; do log "compsize $s"; compsize "$MNT/$s" >&2 || true; done
fi

for n in usr big; do
	log "btrfs send $n.snap (--compressed-data, --proto 1)"
	btrfs -q send --compressed-data -f "$OUT/$n.v2c.stream" "$MNT/$n.snap"
	btrfs -q send --proto 1 -f "$OUT/$n.v1.stream" "$MNT/$n.snap"
done

bench_unmount "$MNT"
mv "$TMP/bench.img" "$IMG"   # same filesystem: a rename, stays sparse
print_sizes
