#!/usr/bin/env bash
# Time rawsend with the stream in object storage (s3s-fs on loopback) against
# the same stream in a local file. Root.
#
#   sudo bench/objstore.sh [CASE...]        default: big.v1 (CASE: NAME.v2c|v1|v2 as send.sh)
#   RUNS=5 WARMUP=1 S3S_FS=PATH sudo bench/objstore.sh
#
# Starts `s3s-fs` ($S3S_FS, else on PATH: `cargo install s3s-fs --version
# 0.14.1 --locked --features binary`) on a free port of 127.0.0.1 over a
# directory in the scratch dir (killed by the EXIT trap), mounts
# bench/out/bench.img read-only (its snapshots usr.snap, big.snap, as
# send.sh) and a fresh btrfs to receive into. For each case, after checking
# that `send -f s3://` stores the bytes `send -f FILE` writes, alternating
# runs of (A = local file, B = object storage):
#   send     `rawsend send FLAGS -f FILE SNAP` vs `-f s3://bench/CASE`
#            (before each run: remove the output, sync)
#   dump     `rawsend dump -f FILE >/dev/null` vs `-f s3://bench/CASE`
#   receive  `rawsend receive -f FILE DEST && sync` vs `-f s3://...`
#            (before each run: delete the received subvolume, wait for the
#            cleaner, sync)
#   get      the server's floor: `curl` (SigV4) of the object to /dev/null
#            vs `rawsend dump -f s3://...` (download + parse)
# The object has its metadata, so every download checks its SHA-256. Page
# cache warm (stream file, server's object file, bench.img): this measures
# the transfer, not the disk. Ratios are file/s3 (< 1: s3 is slower).
: "${RUNS:=5}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export TZ=UTC

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup curl
bench_require_rawsend
S3S_FS=${S3S_FS:-$(command -v s3s-fs || true)}
[[ -x $S3S_FS ]] || die "no s3s-fs (cargo install s3s-fs --version 0.14.1 --locked --features binary, or set S3S_FS)"
IMG=$OUT/bench.img
[[ -f $IMG ]] || die "missing $IMG (run: sudo bench/make-streams.sh)"
(($# > 0)) || set -- big.v1

bench_tmpdir; TMP=$BENCH_TMP
bench_loop_mount "$IMG" "$TMP/snaps" ro
truncate -s 4G "$TMP/recv.img"
mkfs.btrfs -f -q "$TMP/recv.img" >/dev/null
bench_loop_mount "$TMP/recv.img" "$TMP/recv" noatime

mkdir -p "$TMP/s3/bench"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ACCESS_KEY_ID=bench-key AWS_SECRET_ACCESS_KEY=bench-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT
"$S3S_FS" --host 127.0.0.1 --port "$PORT" --access-key "$AWS_ACCESS_KEY_ID" \
	--secret-key "$AWS_SECRET_ACCESS_KEY" "$TMP/s3" >"$TMP/s3s-fs.log" 2>&1 &
bench_track_pid $!
for _ in $(seq 100); do
	curl -s -o /dev/null "$AWS_ENDPOINT_URL/" && break
	sleep 0.1
done
curl -s -o /dev/null "$AWS_ENDPOINT_URL/" || die "s3s-fs did not answer on port $PORT"

bench_describe_rawsend
log "s3s-fs: $S3S_FS ($("$S3S_FS" --version 2>/dev/null || echo '?')) on 127.0.0.1:$PORT"
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS warmup=$WARMUP"

# `curl` of s3://bench/$1, signed with the environment's keys.
CURL="curl -sf -H x-amz-content-sha256:UNSIGNED-PAYLOAD --aws-sigv4 aws:amz:$AWS_REGION:s3 --user $AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"

for c in "$@"; do
	snap=$TMP/snaps/${c%%.*}.snap
	[[ -d $snap ]] || die "no snapshot $snap in $IMG"
	fl=$(bench_send_flags "$c")
	file=$TMP/$c.stream url=s3://bench/$c
	"$RAWSEND" send -q $fl -f "$file" "$snap"
	"$RAWSEND" send -q $fl -f "$url" "$snap"
	cmp -s "$file" "$TMP/s3/bench/$c" || die "$c: the object differs from the local stream"
	$CURL -o "$TMP/got" "$AWS_ENDPOINT_URL/bench/$c" || die "$c: curl did not get the object"
	cmp -s "$file" "$TMP/got" || die "$c: curl got other bytes than the object's"
	rm -f "$TMP/got"
	printf '%s: %s bytes, object byte-identical, metadata %s\n' "$c" "$(stat -c %s "$file")" \
		"$(tr -d ' \n' <"$TMP/s3/bench/$c.rawsend.json" | grep -o '"sha256":"[0-9a-f]*"')"
done
echo
bench_report_header
for c in "$@"; do
	snap=$TMP/snaps/${c%%.*}.snap
	fl=$(bench_send_flags "$c")
	file=$TMP/$c.stream url=s3://bench/$c
	sub=$TMP/recv/${c%%.*}.snap
	bench_compare "send $c" \
		file "exec '$RAWSEND' send -q $fl -f '$TMP/out.stream' '$snap'" \
		s3 "exec '$RAWSEND' send -q $fl -f s3://bench/out '$snap'" \
		"rm -f '$TMP/out.stream' '$TMP/s3/bench/out'; sync"
	bench_compare "dump $c" \
		file "exec '$RAWSEND' dump -f '$file' >/dev/null" \
		s3 "exec '$RAWSEND' dump -f '$url' >/dev/null"
	bench_compare "receive $c" \
		file "'$RAWSEND' receive -q -f '$file' '$TMP/recv' && sync" \
		s3 "'$RAWSEND' receive -q -f '$url' '$TMP/recv' && sync" \
		"if [[ -d '$sub' ]]; then btrfs -q subvolume delete '$sub'; btrfs -q subvolume sync '$TMP/recv'; fi; sync"
	bench_compare "get $c" \
		curl "exec $CURL -o /dev/null '$AWS_ENDPOINT_URL/bench/$c'" \
		s3 "exec '$RAWSEND' dump -f '$url' >/dev/null"
done
