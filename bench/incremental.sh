#!/usr/bin/env bash
# An incremental stream with many renames, unlinks and small writes, received
# by btrfs-progs and by rawsend. Root.
#
#   sudo bench/incremental.sh            RUNS=5 (alternating), IMGSIZE=4G
#
# Makes (once, kept in bench/out/) a source tree of /usr/share/doc and
# /usr/include on a loop-mounted btrfs with compress=zstd, snapshot `base`,
# then a change like a package upgrade: every third directory under doc
# renamed, every fifth file under include deleted, a line appended to every
# seventh file, 2,000 new small files, 500 files moved between directories;
# snapshot `next`; `btrfs send --compressed-data` of base (incr.base.stream)
# and `-p base next` (incr.next.stream). Each timed run gets a fresh btrfs
# with base received by btrfs-progs (untimed), then times receiving the
# incremental + `sync` with one tool; first both trees are compared.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IMGSIZE=${IMGSIZE:-4G}

bench_require_root
bench_require_tools btrfs mkfs.btrfs losetup
bench_require_rawsend
bench_tmpdir; TMP=$BENCH_TMP
MNT=$TMP/mnt IMG=$TMP/recv.img
BASE=$OUT/incr.base.stream NEXT=$OUT/incr.next.stream

make_streams() {
	local src=$TMP/src i
	truncate -s 4G "$TMP/src.img"
	mkfs.btrfs -f -q "$TMP/src.img" >/dev/null
	bench_loop_mount "$TMP/src.img" "$src" compress=zstd,noatime
	btrfs -q subvolume create "$src/vol"
	cp -a /usr/share/doc /usr/include "$src/vol/"
	sync
	btrfs -q subvolume snapshot -r "$src/vol" "$src/base"
	(
		cd "$src/vol"
		every() { # N: print every Nth line of stdin
			awk -v n="$1" '(NR - 1) % n == 0'
		}
		find doc -mindepth 1 -maxdepth 1 -type d | sort | every 3 | while read -r d; do mv "$d" "$d.renamed"; done
		find include -type f | sort | every 5 | xargs -d '\n' rm -f
		find doc include -type f | sort | every 7 | while read -r f; do echo upgraded >>"$f"; done
		mkdir -p new
		for ((i = 0; i < 2000; i++)); do echo "new file $i" >"new/f$i"; done
		find include -type f | sort | sed -n 1,1000p | every 2 | while read -r f; do mv "$f" "new/moved-$(basename "$f")-$RANDOM"; done
	)
	sync
	btrfs -q subvolume snapshot -r "$src/vol" "$src/next"
	btrfs -q send --compressed-data -f "$BASE" "$src/base"
	btrfs -q send --compressed-data -f "$NEXT" -p "$src/base" "$src/next"
	bench_unmount "$src"
}

# A fresh btrfs with base received by btrfs-progs.
fresh_fs() {
	rm -f "$IMG"; truncate -s "$IMGSIZE" "$IMG"; mkfs.btrfs -f -q "$IMG" >/dev/null
	bench_loop_mount "$IMG" "$MNT" noatime
	btrfs -q receive -f "$BASE" "$MNT"
	sync
}

# timed TOOL RESULTFILE: receive the incremental onto a fresh fs.
timed() {
	local cmd
	fresh_fs
	case $1 in
	progs) cmd="btrfs -q receive -f '$NEXT' '$MNT' && sync" ;;
	rawsend) cmd="'$RAWSEND' receive -q -f '$NEXT' '$MNT' && sync" ;;
	esac
	bench_time "$cmd" "$2"
	bench_unmount "$MNT"
}

# Both tools' trees must be equal (content, metadata below the root).
verify() {
	local tool listing
	for tool in progs rawsend; do
		fresh_fs
		if [[ $tool == progs ]]; then btrfs -q receive -f "$NEXT" "$MNT"; else "$RAWSEND" receive -q -f "$NEXT" "$MNT"; fi
		listing=$TMP/$tool.find
		(cd "$MNT/next" && find . -mindepth 1 -printf '%p %y %m %U %G %s %T@ %l\n' | sort) >"$listing"
		(cd "$MNT/next" && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum) >>"$listing"
		bench_unmount "$MNT"
	done
	if cmp -s "$TMP/progs.find" "$TMP/rawsend.find"; then
		echo "  trees: identical ($(wc -l <"$TMP/progs.find") entries below the root, content hashed)"
	else
		echo "  trees: DIFFERENT"; diff "$TMP/progs.find" "$TMP/rawsend.find" | head -10; return 1
	fi
}

[[ -s $BASE && -s $NEXT ]] || make_streams
bench_describe_rawsend
log "$(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg), runs=$RUNS"
echo "incremental: $(stat -c %s "$NEXT") bytes, $("$RAWSEND" stats -f "$NEXT" --json | python3 -c 'import json,sys; c=json.load(sys.stdin)["commands"]; print(", ".join(f"{k} {c[k]}" for k in ("rename","unlink","mkfile","write","encoded_write") ))')"
verify || log "WARNING: received trees differ"
dir=$(mktemp -d "$TMP/cmp.XXXXXX")
: >"$dir/a"; : >"$dir/b"
bench_alternate "timed progs $(printf %q "$dir/a")" "timed rawsend $(printf %q "$dir/b")"
bench_report_header
bench_report_pair "receive incremental" "$dir"
