#!/usr/bin/env bash
# Time `rawsend receive -f S DEST` against `btrfs receive -f S DEST`, each
# followed by `sync`, on the streams made by make-streams.sh. Root.
#
#   sudo bench/receive.sh [STREAM...]       default: usr.v2c big.v2c
#   RUNS=3 sudo bench/receive.sh usr.v1     (defaults: RUNS=3)
#   MNTOPTS=noatime IMGSIZE=8G              (defaults shown)
#   RAWSEND_FLAGS=--no-verify-encoded       extra flags for rawsend receive
#
# Every run (verification and timed) gets a FRESH filesystem: a sparse
# IMGSIZE image in the script's scratch dir, `mkfs.btrfs -f -q`, loop-mounted
# with MNTOPTS, identical for both tools; unmounted and detached after the
# run (untimed), image deleted. The lib.sh EXIT trap unmounts/detaches on
# failure too.
#
# 1. Verification (also serves as the warm-up: the stream is read into the
#    page cache): one fresh fs, progs receives into $MNT/p, rawsend into
#    $MNT/r. Compared: `diff -r` (contents, symlinks), and
#    `find -printf '%p %y %m %U %G %s %T@ %l'` (sorted) for path, type, mode,
#    owner, size, mtime, link target; xattrs via os.listxattr (python).
#    Then `compsize` of each received subvolume (disk usage), and
#    `btrfs subvolume show` received UUID/flags are printed.
# 2. RUNS rounds alternating the order (progs,rawsend then rawsend,progs ...)
#    timed with bench_time (lib.sh): `bash -c 'TOOL -f S DEST && sync'`.
#    Prints median wall, median user+sys CPU, median user CPU, median peak
#    RSS (largest process in the tree) and the ratio progs/rawsend
#    (> 1: rawsend is faster); appends to $OUT/results.tsv.
: "${RUNS:=3}"
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MNTOPTS=${MNTOPTS:-noatime}
IMGSIZE=${IMGSIZE:-8G}

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup compsize
bench_require_rawsend
(($# > 0)) && set -- "${@%.stream}" || set -- usr.v2c big.v2c

bench_tmpdir; TMP=$BENCH_TMP
MNT=$TMP/mnt
IMG=$TMP/recv.img
bench_describe_rawsend
log "btrfs-progs: $(btrfs --version)"
log "rawsend receive flags: ${RAWSEND_FLAGS:-(none)}"
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS, fs: $IMGSIZE sparse image, mkfs per run, mount -o $MNTOPTS"

fresh_fs() {
	rm -f "$IMG"
	truncate -s "$IMGSIZE" "$IMG"
	mkfs.btrfs -f -q "$IMG" >/dev/null
	bench_loop_mount "$IMG" "$MNT" "$MNTOPTS"
	mkdir "$MNT/d"
}
drop_fs() {
	sync
	bench_unmount "$MNT"
	rm -f "$IMG"
}

# the subvolume a stream creates (first command: SUBVOL name)
subvol_name() { "$RAWSEND" dump -f "$1" 2>/dev/null | awk 'NR==1 {print $2; exit}'; }

# every xattr (name=value hex) of every entry under DIR, sorted, no symlink follow
dump_xattrs() {
	python3 - "$1" <<'PY'
import os, sys
top = sys.argv[1]
out = []
for d, dirs, files in os.walk(top):
    for n in [d] + [os.path.join(d, x) for x in dirs + files]:
        for a in sorted(os.listxattr(n, follow_symlinks=False)):
            v = os.getxattr(n, a, follow_symlinks=False)
            out.append(f"{os.path.relpath(n, top)} {a}={v.hex()}")
print("\n".join(sorted(set(out))))
PY
}

# The root directory's mtime: rawsend's must be what the stream's last UTIMES
# of the root says (the source's). btrfs-progs' is usually the time of its
# last rename of a new inode out of the root, which the kernel sends after
# that UTIMES; rawsend creates new inodes where they belong, so nothing
# touches the root after its UTIMES.
check_root_mtime() { # STREAM_FILE SUBVOL PROGS_ROOT RAWSEND_ROOT
	local want got
	want=$(TZ=UTC "$RAWSEND" dump -f "$1" | awk -v root="./$2/" '$1 == "utimes" && $2 == root {m = $4} END {print m}')
	got="mtime=$(TZ=UTC date -d "@$(stat -c %Y "$4")" +%FT%T%z)"
	echo "  root mtime: stream $want, rawsend $got, btrfs-progs mtime=$(TZ=UTC date -d "@$(stat -c %Y "$3")" +%FT%T%z)"
	[[ $want == "$got" ]] || { echo "  root mtime: rawsend DIFFERS from the stream"; return 1; }
}

verify() { # STREAM_FILE
	local f=$1 sv p r rc=0
	fresh_fs
	mkdir "$MNT/p" "$MNT/r"
	btrfs receive -f "$f" "$MNT/p" 2>"$TMP/progs.err" || { cat "$TMP/progs.err" >&2; die "btrfs receive failed"; }
	"$RAWSEND" receive ${RAWSEND_FLAGS:-} -f "$f" "$MNT/r" 2>"$TMP/rawsend.err" || { cat "$TMP/rawsend.err" >&2; die "rawsend receive failed"; }
	sync
	if grep -qv '^At subvol' "$TMP/rawsend.err"; then log "rawsend receive stderr:"; head -20 "$TMP/rawsend.err" >&2; fi
	sv=$(ls "$MNT/p"); p=$MNT/p/$sv r=$MNT/r/$sv
	[[ -d $r ]] || die "rawsend did not create $sv"
	if diff -r --no-dereference "$p" "$r" >"$TMP/diff.txt" 2>&1; then
		echo "  diff -r: identical"
	else
		rc=1; echo "  diff -r: DIFFERENT ($(wc -l <"$TMP/diff.txt") lines):"; head -20 "$TMP/diff.txt"
	fi
	# Everything but the root directory, whose mtime differs on purpose (below).
	(cd "$p" && find . -mindepth 1 -printf '%p %y %m %U %G %s %T@ %l\n' | sort) >"$TMP/p.find"
	(cd "$r" && find . -mindepth 1 -printf '%p %y %m %U %G %s %T@ %l\n' | sort) >"$TMP/r.find"
	if cmp -s "$TMP/p.find" "$TMP/r.find"; then
		echo "  find metadata (path type mode uid gid size mtime link): identical, $(wc -l <"$TMP/p.find") entries below the root"
	else
		rc=1; echo "  find metadata: DIFFERENT ($(wc -l <"$TMP/p.find") vs $(wc -l <"$TMP/r.find") entries):"
		diff "$TMP/p.find" "$TMP/r.find" | head -20
	fi
	check_root_mtime "$f" "$sv" "$p" "$r" || rc=1
	dump_xattrs "$p" >"$TMP/p.xattr"
	dump_xattrs "$r" >"$TMP/r.xattr"
	if cmp -s "$TMP/p.xattr" "$TMP/r.xattr"; then
		echo "  xattrs: identical ($(grep -c '=' "$TMP/p.xattr" || true) values)"
	else
		rc=1; echo "  xattrs: DIFFERENT"; diff "$TMP/p.xattr" "$TMP/r.xattr" | head -10
	fi
	echo "  compsize progs:";   compsize "$p" | sed 's/^/    /'
	echo "  compsize rawsend:"; compsize "$r" | sed 's/^/    /'
	for d in "$p" "$r"; do
		printf '  %-8s %s\n' "$( [[ $d == "$p" ]] && echo progs || echo rawsend)" \
			"$(btrfs subvolume show "$d" | awk '/Received UUID|Flags:/ {printf "%s ", $0}' | tr -s ' \t' ' ')"
	done
	drop_fs
	return $rc
}

# one timed run of TOOL (progs|rawsend) on a fresh fs
timed() { # TOOL STREAM_FILE RESULTFILE
	local tool=$1 f=$2 res=$3 cmd
	fresh_fs
	if [[ $tool == progs ]]; then
		cmd="btrfs receive -f '$f' '$MNT/d' 2>/dev/null && sync"
	else
		cmd="'$RAWSEND' receive ${RAWSEND_FLAGS:-} -f '$f' '$MNT/d' 2>/dev/null && sync"
	fi
	bench_time "$cmd" "$res"
	drop_fs
}

bench_report_header
for s in "$@"; do
	f=$OUT/$s.stream
	[[ -s $f ]] || die "missing $f (run: sudo bench/make-streams.sh)"
	echo "$s ($(stat -c %s "$f") bytes): verification"
	verify "$f" || log "WARNING: received trees differ for $s"
	dir=$(mktemp -d "$TMP/cmp.XXXXXX"); ra=$dir/a rb=$dir/b
	: >"$ra"; : >"$rb"
	bench_alternate "timed progs $(printf %q "$f") $(printf %q "$ra")" \
		"timed rawsend $(printf %q "$f") $(printf %q "$rb")"
	bench_report_pair "receive $s" "$dir"
	if awk -v m="$BENCH_RSS_B" 'BEGIN {exit !(m > 64)}'; then
		log "WARNING: rawsend median peak RSS $BENCH_RSS_B MiB > 64 MiB"
	fi
	rm -rf "$dir"
done
