#!/usr/bin/env bash
# Build real kernel-made btrfs send-stream fixtures for rawsend.
#
#   sudo testdata/make-fixtures.sh
#
# Creates sparse loop images in a temp dir, builds snapshot chains on a fresh
# btrfs, writes every stream variant with `btrfs send` into
# testdata/streams/, dumps each with `TZ=UTC btrfs receive --dump`, checks
# that every chain receives with `btrfs receive` (and that file contents match
# the source snapshots), and prints a coverage summary. Everything it mounts
# or attaches is undone by the EXIT trap, also on failure.
set -euo pipefail
export LC_ALL=C TZ=UTC

[[ $(id -u) -eq 0 ]] || { echo "must run as root" >&2; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=$HERE/streams
SAMPLE=$HERE/sample.stream

TMP=$(mktemp -d /tmp/rawsend-fixtures.XXXXXX)
MOUNTS=()   # mount points, in mount order
LOOPS=()    # loop devices we attached

cleanup() {
	local rc=$? i
	set +e
	cd /
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		if mountpoint -q "${MOUNTS[i]}"; then
			umount "${MOUNTS[i]}" 2>/dev/null || { sleep 1; umount "${MOUNTS[i]}" || umount -l "${MOUNTS[i]}"; }
		fi
	done
	for ((i = ${#LOOPS[@]} - 1; i >= 0; i--)); do
		losetup -d "${LOOPS[i]}" 2>/dev/null
	done
	rm -rf "$TMP"
	if ((rc != 0)); then echo "make-fixtures: FAILED (exit $rc)" >&2; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log() { printf '==> %s\n' "$*" >&2; }

# ---------------------------------------------------------------- helpers
cat >"$TMP/fx.py" <<'PY'
import sys, os, random, socket, fcntl, struct

def vocab():
    r = random.Random(20240601)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(r.choice(letters) for _ in range(r.randint(2, 9))) for _ in range(300)]

def pool():
    v = vocab(); r = random.Random(7)
    return [" ".join(r.choice(v) for _ in range(r.randint(3, 12))) + "\n" for _ in range(40)]

def text(seed, size):
    # log-like text: lines picked from a fixed pool of 40, so every
    # algorithm compresses it several times over (btrfs LZO compresses each
    # 4 KiB sector on its own, so repeats must occur within 4 KiB)
    p = pool(); r = random.Random(seed); out = []; n = 0
    while n < size:
        l = r.choice(p); out.append(l); n += len(l)
    return "".join(out).encode()[:size]

def rand(seed, size):
    return random.Random(seed).randbytes(size)

def value(spec):
    # "hex:..." | "text:SEED:SIZE" | "rand:SEED:SIZE" | "str:..."
    kind, _, rest = spec.partition(":")
    if kind == "hex": return bytes.fromhex(rest)
    if kind == "str": return rest.encode()
    a, b = rest.split(":")
    return (text if kind == "text" else rand)(int(a), int(b))

cmd, args = sys.argv[1], sys.argv[2:]
if cmd in ("text", "rand"):
    sys.stdout.buffer.write(value(cmd + ":" + args[0] + ":" + args[1]))
elif cmd == "pwrite":                       # PATH OFFSET SPEC
    fd = os.open(args[0], os.O_WRONLY | os.O_CREAT, 0o644)
    os.pwrite(fd, value(args[2]), int(args[1])); os.close(fd)
elif cmd == "clone":                        # SRC SRCOFF LEN DST DSTOFF
    s = os.open(args[0], os.O_RDONLY); d = os.open(args[3], os.O_WRONLY | os.O_CREAT, 0o644)
    FICLONERANGE = 0x4020940D
    fcntl.ioctl(d, FICLONERANGE, struct.pack("=qQQQ", s, int(args[1]), int(args[2]), int(args[4])))
    os.close(s); os.close(d)
elif cmd == "setx":                         # PATH NAME SPEC [nofollow]
    os.setxattr(args[0], args[1], value(args[2]), follow_symlinks=len(args) < 4)
elif cmd == "rmx":                          # PATH NAME [nofollow]
    os.removexattr(args[0], args[1], follow_symlinks=len(args) < 3)
elif cmd == "sock":                         # PATH (bind relative to its dir)
    d, b = os.path.split(args[0]); os.chdir(d or ".")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(b); s.close()
elif cmd == "acl":                          # PATH: u::rwx u:1000:r-x g::r-x m::r-x o::r--
    ents = [(1, 7, 0xFFFFFFFF), (2, 5, 1000), (4, 5, 0xFFFFFFFF), (0x10, 5, 0xFFFFFFFF), (0x20, 4, 0xFFFFFFFF)]
    v = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in ents)
    os.setxattr(args[0], "system.posix_acl_access", v)
elif cmd == "clones":                       # STREAM: classify CLONE sources
    # prints "same" / "other" per CLONE: is CLONE_UUID the uuid of the
    # subvolume being sent (SUBVOL/SNAPSHOT uuid) or another subvolume?
    b = open(args[0], "rb").read(); pos = 0; cur = None
    while pos < len(b):
        assert b[pos:pos + 13] == b"btrfs-stream\0", "bad magic"
        ver = struct.unpack_from("<I", b, pos + 13)[0]; pos += 17
        while True:
            ln, c, _ = struct.unpack_from("<IHI", b, pos); pos += 10
            end = pos + ln; attrs = {}; q = pos
            while q < end:
                t = struct.unpack_from("<H", b, q)[0]
                if t == 19 and ver >= 2:
                    attrs[t] = b[q + 2:end]; q = end; break
                l = struct.unpack_from("<H", b, q + 2)[0]
                attrs[t] = b[q + 4:q + 4 + l]; q += 4 + l
            pos = end
            if c in (1, 2): cur = attrs[1]
            elif c == 16: print("same" if attrs[20] == cur else "other")
            elif c == 21: break
elif cmd == "cover":                        # V2C_DUMP OTHER_DUMP
    # every ENCODED_WRITE range of the v2c dump must be WRITE-covered (same
    # path, same byte range) in the other (v1/v2) dump of the same send
    def ranges(fn, want):
        out = {}
        for line in open(fn, "rb").read().split(b"\n"):
            f = line.split()
            if len(f) < 4 or f[0] != want: continue
            kv = dict(x.rstrip(b",").split(b"=", 1) for x in f[2:] if b"=" in x)
            n = int(kv[b"unencoded_file_len" if want == b"encoded_write" else b"len"])
            out.setdefault(f[1], []).append((int(kv[b"offset"]), n))
        return out
    enc = ranges(args[0], b"encoded_write"); wr = ranges(args[1], b"write"); bad = 0
    for path, rs in enc.items():
        cov = sorted(wr.get(path, []))
        for off, n in rs:
            pos = off
            for o, l in cov:
                if o <= pos < o + l: pos = o + l
            if pos < off + n:
                print("uncovered %s %d+%d" % (path.decode(errors="replace"), off, n)); bad += 1
    sys.exit(1 if bad else 0)
else:
    sys.exit("bad command " + cmd)
PY
fx() { python3 "$TMP/fx.py" "$@"; }
# text/rand FILE SEED SIZE [compression]: create FILE (setting the per-file
# compression property first, while it is empty) and write the content.
mk() {
	local kind=$1 f=$2 seed=$3 size=$4 comp=${5:-}
	: >"$f"
	[[ -n $comp ]] && btrfs property set "$f" compression "$comp"
	fx "$kind" "$seed" "$size" >"$f"
}
# stamp DATE PATH...: fixed atime/mtime, never following symlinks
stamp() { local d=$1; shift; touch -h -d "$d" -- "$@"; }
# stamp_changed DATE: stamp everything changed since the marker
stamp_changed() { find . -cnewer "$TMP/marker" -exec touch -h -d "$1" -- {} +; }
mark() { touch "$TMP/marker"; sleep 0.05; }
snap() { sync; btrfs subvolume snapshot -r "$1" "$2" >/dev/null; }

T0=@1577934245.123456789   # 2020-01-02 03:04:05.123456789 UTC
T1=@1609556645.5           # 2021-01-02 03:04:05.5
T2=@1641092645.999999999   # 2022-01-02 03:04:05.999999999

dump() {  # STREAM -> STREAM%.stream.dump
	TZ=UTC btrfs receive --dump -f "$1" >"${1%.stream}.dump"
}
# send_all NAME [send args...] SNAPSHOT: write the five variants + dumps
send_all() {
	local name=$1; shift
	local v
	btrfs send -q --proto 1                   -f "$OUT/$name.v1.stream" "$@"
	btrfs send -q --proto 2                   -f "$OUT/$name.v2.stream" "$@"
	btrfs send -q --proto 2 --compressed-data -f "$OUT/$name.v2c.stream" "$@"
	btrfs send -q --proto 1 --no-data         -f "$OUT/$name.v1nodata.stream" "$@"
	btrfs send -q --proto 2 --no-data         -f "$OUT/$name.v2nodata.stream" "$@"
	for v in v1 v2 v2c v1nodata v2nodata; do dump "$OUT/$name.$v.stream"; done
}

# ---------------------------------------------------------------- filesystems
mkfs_mount() {  # NAME SIZE -> mount point on stdout
	local img=$TMP/$1.img mnt=$TMP/$1 dev
	truncate -s "$2" "$img"
	mkfs.btrfs -q -f "$img" >/dev/null
	dev=$(losetup --find --show "$img")
	LOOPS+=("$dev")
	mkdir -p "$mnt"
	mount -o noatime "$dev" "$mnt"
	MOUNTS+=("$mnt")
	echo "$mnt"
}
# (not in a subshell, so MOUNTS/LOOPS stay in this shell)
mkfs_mount src 1G >"$TMP/m"; M=$(<"$TMP/m")
mkfs_mount rcv 1G >"$TMP/m"; R=$(<"$TMP/m")
log "source fs at $M, receive fs at $R"

rm -rf "$OUT"; mkdir -p "$OUT" "$M/snaps"
S=$M/snaps

# ================================================================ basic chain
log "basic: full"
btrfs subvolume create "$M/basic" >/dev/null
cd "$M/basic"
mkdir sizes cmp inline links links/sub specials xattr names deep own reflink holes moves attrs del new

# sizes around sector and 128 KiB boundaries
for n in 0 1 4095 4096 4097; do mk rand sizes/rand-$n $n $n; done
mk text sizes/text-131071 131071 131071 zlib
mk text sizes/text-131072 131072 131072 lzo
mk text sizes/text-131073 131073 131073 zstd

# compressed files (text-like, so they really compress)
mk text cmp/zlib.txt 11 40000 zlib
mk text cmp/lzo.txt 12 40000 lzo
mk rand cmp/zstd-incompressible 14 8192 zstd
# compressed extents (128 KiB, 128 KiB, 8000 bytes), then the middle of the
# first overwritten: the extent's head and tail stay referenced, the tail
# with a non-zero data offset (ENCODED_WRITE unencoded_offset != 0)
mk text cmp/zstd.txt 13 270144 zstd
sync
fx pwrite cmp/zstd.txt 49152 text:16:8192
mk text cmp/zlib-overwritten 17 32768 zlib
sync
fx pwrite cmp/zlib-overwritten 4096 rand:18:4096
mk text cmp/lzo-overwritten 19 49152 lzo
sync
fx pwrite cmp/lzo-overwritten 16384 text:20:12288

# inline extents (compressed and not)
mk text inline/zlib-1500 21 1500 zlib
mk text inline/lzo-1500 22 1500 lzo
mk text inline/zstd-3000 23 3000 zstd
mk text inline/plain-100 24 100
: >inline/empty

# hard links and symlinks
mk text links/a 30 5000
ln links/a links/b
ln links/a links/sub/c
mk text links/victim 31 300
ln links/victim links/victim-2
ln -s ../sizes/rand-4096 links/rel
ln -s /etc/passwd links/abs
ln -s nonexistent/target links/dangling
ln -s ../deep links/dirlink
ln -s "$(printf 'x%.0s' {1..1000})" links/long-target
ln -s $'odd\ntarget \xff' links/odd-target

# special files
mkfifo specials/fifo
fx sock specials/sock
mknod specials/null c 1 3
mknod specials/loop200 b 7 200
mknod specials/bigminor c 259 70000
mknod -m 0600 specials/private c 10 229

# xattrs
mk text xattr/file 40 1000
fx setx xattr/file user.bin hex:00ff0102fe0a5c00
fx setx xattr/file user.big text:41:3000
fx setx xattr/file user.empty hex:
fx setx xattr/file user.text str:hello
fx setx xattr/file user.remove-me str:bye
fx setx xattr user.dirattr str:on-a-directory
fx setx . user.rootattr str:on-the-root
ln -s file xattr/link
fx setx xattr/link trusted.linkattr str:on-a-symlink nofollow
fx setx specials/fifo trusted.fifoattr hex:01
mk text xattr/capfile 42 2000
chown 1000:1000 xattr/capfile
chmod 0750 xattr/capfile
setcap cap_net_raw,cap_net_bind_service+ep xattr/capfile
mk text xattr/acl 43 100
fx acl xattr/acl

# odd names
for n in "with space" $'tab\there' $'new\nline' 'back\slash' "quote'single" 'quote"double' \
	$'\xff\xfe' "$(printf 'n%.0s' {1..255})" "$(printf '日%.0s' {1..85})" 'émoji-😀' \
	'-leading-dash' ' leading space' 'trailing space ' '*glob?[x]' '.hidden' '..dots' $'\x01ctrl'; do
	printf '%s\n' "$n" >"names/$n"
done
mkdir $'names/dir\nwith newline'
printf 'inner\n' >$'names/dir\nwith newline/inner file'

# deep path (30 levels)
p=deep; for i in $(seq -w 1 30); do p=$p/l$i; done
mkdir -p "$p"; printf 'deep\n' >"$p/file"

# ownership and modes
for f in u1000 g100 nobody highid suid sgid suid-owned mode000 mode777; do printf '%s\n' "$f" >own/$f; done
chown 1000:1000 own/u1000
chown 0:100 own/g100
chown 65534:65534 own/nobody
chown 4000000000:4000000001 own/highid
chmod 4755 own/suid
chmod 2755 own/sgid
chown 1000:1000 own/suid-owned; chmod 6755 own/suid-owned
chmod 000 own/mode000
chmod 777 own/mode777
mkdir own/sticky own/sgid-dir own/owned-dir
chmod 1777 own/sticky
chmod 2775 own/sgid-dir
chown 1000:100 own/owned-dir
chown -h 1000:1000 links/rel

# reflinks within the snapshot
mk rand reflink/src 50 32768
cp --reflink=always reflink/src reflink/copy
cp --reflink=always cmp/zstd.txt reflink/zstd-copy
fx clone reflink/src 8192 16384 reflink/partial 0
mk rand reflink/self 51 16384
fx clone reflink/self 0 16384 reflink/self 32768

# holes and preallocation
fx pwrite holes/sparse 0 rand:60:8192
fx pwrite holes/sparse 131072 rand:61:8192
mk rand holes/punch 62 49152
mk rand holes/extend 64 8192
mk rand holes/shrink 65 24576
fallocate -l 65536 holes/prealloc
mk rand holes/punch-full 66 32768
fallocate -p -o 8192 -l 8192 holes/punch-full

# moves/renames targets for the incrementals
printf 'content A\n' >moves/a
printf 'content B\n' >moves/b
mkdir -p moves/dir1/sub moves/dir2 moves/x/y moves/d1 moves/d2
printf 'in dir1\n' >moves/dir1/sub/file
printf 'in x/y\n' >moves/x/y/file
printf 'd1\n' >moves/d1/f; printf 'd2\n' >moves/d2/f
printf 'file then dir\n' >moves/file-then-dir
printf 'over\n' >moves/over-src; printf 'overwritten\n' >moves/over-dst

# inode flags
printf 'x\n' >attrs/noatime-later
mk text attrs/compress-later 70 8192
printf 'x\n' >attrs/already-A; chattr +A attrs/already-A
printf 'x\n' >attrs/nodump; chattr +d attrs/nodump
: >attrs/nocow; chattr +C attrs/nocow
mkdir attrs/dir-later

# things to delete later
printf 'bye\n' >del/file1
mkdir -p del/dir/with/files del/empty
printf '1\n' >del/dir/with/files/one; printf '2\n' >del/dir/with/two
ln -s gone del/symlink
mkfifo del/fifo

chmod 0755 .
find . -exec touch -h -d "$T0" -- {} +
snap "$M/basic" "$S/basic-full"

log "basic: incr1"
mark
fx pwrite cmp/zstd.txt 98304 text:100:8192
fx pwrite cmp/lzo.txt 40000 text:101:10000
truncate -s 20000 cmp/zlib.txt
fallocate -p -o 16384 -l 16384 holes/punch
fallocate -p -o 139264 -l 61440 cmp/zstd.txt
truncate -s 307200 holes/extend
fx pwrite holes/extend 303104 rand:102:4096
truncate -s 10000 holes/shrink
fx pwrite holes/prealloc 0 rand:103:4096
# swap two files, move a directory, invert a parent/child pair
mv moves/a moves/tmp; mv moves/b moves/a; mv moves/tmp moves/b
mv moves/dir1 moves/dir2/dir1-moved
mv moves/x/y moves/y; mv moves/x moves/y/x
rm moves/file-then-dir; mkdir moves/file-then-dir; printf 'now a dir\n' >moves/file-then-dir/f
mv -T moves/over-src moves/over-dst
mv "names/with space" $'names/renamed\twith tab'
mv "names/$(printf 'n%.0s' {1..255})" "names/$(printf 'm%.0s' {1..255})"
# hard links: add, remove, move
ln links/a links/d
rm links/b
mv links/sub/c links/c-moved
rm links/victim
# deletions
rm del/file1 del/symlink del/fifo specials/sock
rm -r del/dir
rmdir del/empty
# xattrs
fx rmx xattr/file user.remove-me
fx setx xattr/file user.big text:104:3000
fx setx xattr/file user.new str:added
fx rmx xattr/link trusted.linkattr nofollow
fx setx xattr user.dirattr str:changed
# ownership / modes
chmod 0755 own/suid
chown 2000:2000 own/u1000
chmod 0640 own/g100
# inode flags (FILEATTR in v2 incrementals)
chattr +A attrs/noatime-later
chattr +c attrs/compress-later
chattr -A attrs/already-A
chattr +A attrs/dir-later
# new content, incl. a reflink of the middle of a compressed extent
mk text new/zstd-new 105 30000 zstd
mk text new/lzo-small 106 1200 lzo
fx clone cmp/zstd.txt 65536 32768 new/clone-middle 0
cp --reflink=always reflink/src new/reflink-of-old
mknod new/dev c 4 64
ln -s ../links/a new/sym
mkdir new/dir; printf 'n\n' >new/dir/f
stamp_changed "$T1"
snap "$M/basic" "$S/basic-incr1"

log "basic: incr2"
mark
# swap two directories, rename over existing, nested moves
mv moves/d1 moves/dtmp; mv moves/d2 moves/d1; mv moves/dtmp moves/d2
mv moves/a moves/b
mv deep/l01 deep-moved
rm cmp/lzo.txt
fx pwrite holes/sparse 65536 rand:110:8192
chattr -c attrs/compress-later
chattr +c attrs/noatime-later
fx setx . user.rootattr str:root-changed
chmod 0700 .
mv new/dir new/dir-renamed
rm -r specials
fx pwrite cmp/zstd.txt 0 text:111:4096
truncate -s 0 inline/plain-100
stamp_changed "$T2"
snap "$M/basic" "$S/basic-incr2"
cd /

send_all basic-full "$S/basic-full"
send_all basic-incr1 -p "$S/basic-full" "$S/basic-incr1"
send_all basic-incr2 -p "$S/basic-incr1" "$S/basic-incr2"

# ================================================================ clone-source chain
# btrfs-progs 6.2 cannot send with -c alone unless it can pick a parent among
# the clone sources (find_good_parent), so a "pure" clone-source stream
# without a parent cannot be made with progs. Instead:
#   clone-src   full send of an independent subvolume
#   clone-base  full send of another independent subvolume
#   clone-dst   -p clone-base -c clone-src: files reflinked from clone-src,
#               so CLONE commands name clone-src (not the parent) as source
#   clone-dst2  -c clone-src -c clone-dst (no -p): progs picks clone-dst as
#               the parent by itself
log "clone: source and destination subvolumes"
btrfs subvolume create "$M/clonesrc" >/dev/null
cd "$M/clonesrc"
mk rand big-rand 200 49152
mk text zstd.txt 201 131072 zstd
mk text zlib.txt 202 65536 zlib
find . -exec touch -h -d "$T0" -- {} +
snap "$M/clonesrc" "$S/clone-src"
btrfs subvolume create "$M/clonedst" >/dev/null
cd "$M/clonedst"
mk text own.txt 203 6000
mkdir d
find . -exec touch -h -d "$T0" -- {} +
snap "$M/clonedst" "$S/clone-base"
mark
cp --reflink=always "$S/clone-src/big-rand" copied
fx clone "$S/clone-src/zstd.txt" 65536 32768 d/partial-zstd 0
fx clone "$S/clone-src/zlib.txt" 0 65536 whole-zlib 0
fx clone "$S/clone-src/big-rand" 16384 16384 two-parts 0
fx clone "$S/clone-src/big-rand" 0 16384 two-parts 16384
stamp_changed "$T1"
snap "$M/clonedst" "$S/clone-dst"
mark
fx clone "$S/clone-src/zstd.txt" 0 131072 later-zstd 0
fx pwrite copied 4096 rand:204:4096
rm whole-zlib
stamp_changed "$T2"
snap "$M/clonedst" "$S/clone-dst2"
cd /
send_all clone-src "$S/clone-src"
send_all clone-base "$S/clone-base"
send_all clone-dst -p "$S/clone-base" -c "$S/clone-src" "$S/clone-dst"
send_all clone-dst2 -c "$S/clone-src" -c "$S/clone-dst" "$S/clone-dst2"

# ================================================================ multi-subvolume streams
log "multi: -e and joined streams"
for x in a b; do
	btrfs subvolume create "$M/multi-$x-live" >/dev/null
	cd "$M/multi-$x-live"
	mkdir dir
	mk text dir/text 300 16000 zstd
	mk rand "file-$x" 301 2000
	ln -s dir "link-$x"
	find . -exec touch -h -d "$T0" -- {} +
	cd /
	snap "$M/multi-$x-live" "$S/multi-$x"
done
for v in v1 v2 v2c; do
	case $v in
	v1) a=(--proto 1) ;;
	v2) a=(--proto 2) ;;
	v2c) a=(--proto 2 --compressed-data) ;;
	esac
	btrfs send -q "${a[@]}" -f "$OUT/multi-a.$v.stream" "$S/multi-a"
	btrfs send -q "${a[@]}" -f "$OUT/multi-b.$v.stream" "$S/multi-b"
	btrfs send -q "${a[@]}" -e -f "$OUT/multi-e.$v.stream" "$S/multi-a" "$S/multi-b"
	btrfs send -q "${a[@]}" -f "$OUT/multi-joined.$v.stream" "$S/multi-a" "$S/multi-b"
	dump "$OUT/multi-a.$v.stream"
	dump "$OUT/multi-b.$v.stream"
	dump "$OUT/multi-e.$v.stream"
	# btrfs-progs --dump stops at the first END: the joined file's expected
	# dump is the concatenation of the dumps of its parts
	cat "$OUT/multi-a.$v.dump" "$OUT/multi-b.$v.dump" >"$OUT/multi-joined.$v.dump"
	if ! cat "$OUT/multi-a.$v.stream" "$OUT/multi-b.$v.stream" | cmp -s - "$OUT/multi-joined.$v.stream"; then
		echo "multi-joined.$v.stream is not the concatenation of its parts" >&2; exit 1
	fi
	TZ=UTC btrfs receive --dump -f "$OUT/multi-joined.$v.stream" | cmp -s - "$OUT/multi-a.$v.dump" || {
		echo "first part of multi-joined.$v dump differs" >&2; exit 1; }
done

# ================================================================ sample stream
log "sample"
btrfs subvolume create "$M/sample-live" >/dev/null
cd "$M/sample-live"
mkdir docs bin empty-dir
mk text docs/readme.txt 400 150000 zstd
mk text docs/notes.txt 401 20000 zlib
mk text docs/small.txt 402 1800 lzo
mk rand bin/blob 403 12000
ln docs/readme.txt docs/readme-hardlink.txt
ln -s docs/readme.txt readme
mkfifo fifo
fx setx docs/readme.txt user.origin str:rawsend-sample
printf 'hello\n' >"with space"
chown 1000:1000 docs/notes.txt
chmod 0600 docs/notes.txt
find . -exec touch -h -d "$T0" -- {} +
cd /
snap "$M/sample-live" "$S/sample"
btrfs send -q --proto 2 --compressed-data -f "$SAMPLE" "$S/sample"
TZ=UTC btrfs receive --dump -f "$SAMPLE" >"$HERE/sample.dump"

# ================================================================ chains.txt
log "chains.txt"
{
	echo "# <chain> <stream>...   receive in this order into one directory (no -e needed)"
	for v in v1 v2 v2c; do
		echo "basic.$v basic-full.$v.stream basic-incr1.$v.stream basic-incr2.$v.stream"
	done
	for v in v1 v2 v2c; do
		echo "clone.$v clone-src.$v.stream clone-base.$v.stream clone-dst.$v.stream clone-dst2.$v.stream"
	done
	for v in v1 v2 v2c; do
		echo "multi-a.$v multi-a.$v.stream"
		echo "multi-b.$v multi-b.$v.stream"
		echo "multi-joined.$v multi-joined.$v.stream"
		echo "multi-e.$v multi-e.$v.stream"
	done
} >"$OUT/chains.txt"

# ================================================================ receive check
# Every chain must receive with btrfs receive; regular-file contents of the
# received subvolumes must match the source snapshots (data variants only).
log "receive check"
sums() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum); }
while read -r chain streams; do
	[[ $chain == \#* ]] && continue
	d=$R/$chain
	mkdir "$d"
	for s in $streams; do
		btrfs receive -q -f "$OUT/$s" "$d" >/dev/null 2>"$TMP/rcv.err" || {
			cat "$TMP/rcv.err" >&2; echo "receive of $s in chain $chain failed" >&2; exit 1; }
	done
	if [[ $chain != *nodata ]]; then
		for sv in "$d"/*; do
			sums "$sv" >"$TMP/a"; sums "$S/$(basename "$sv")" >"$TMP/b"
			cmp -s "$TMP/a" "$TMP/b" || { echo "content mismatch: $chain $(basename "$sv")" >&2; diff "$TMP/a" "$TMP/b" | head >&2; exit 1; }
		done
	fi
	# remove what we received so uuid lookups of later chains find their own parents
	for sv in "$d"/*; do btrfs subvolume delete -c "$sv" >/dev/null; done
	echo "  received OK: $chain" >&2
done <"$OUT/chains.txt"
mkdir "$R/sample"; btrfs receive -q -f "$SAMPLE" "$R/sample" 2>/dev/null
cmp -s <(sums "$R/sample/sample") <(sums "$S/sample") || { echo "sample content mismatch" >&2; exit 1; }

# ================================================================ coverage
log "coverage"
cd "$OUT"
# (set_xattr prints the raw value, which may hold newlines: count only lines
# that start with a command name followed by the padding progs prints)
CMDS="subvol snapshot mkfile mkdir mknod mkfifo mksock symlink rename link unlink rmdir
set_xattr remove_xattr write clone truncate chmod chown utimes update_extent
fallocate fileattr encoded_write"
cat ./*.dump ../sample.dump | LC_ALL=C grep -aoE '^[a-z_]+ +\./' | awk '{print $1}' | sort | uniq -c >"$TMP/cov"
fail=0
echo "coverage (command: count over all dumps):" >&2
for c in $CMDS; do
	n=$(awk -v c="$c" '$2==c{print $1}' "$TMP/cov"); n=${n:-0}
	printf '  %-14s %6d\n' "$c" "$n" >&2
	((n > 0)) || { echo "MISSING command: $c" >&2; fail=1; }
done
# progs 6.2 prints the numeric BTRFS_ENCODED_IO_COMPRESSION_*: 1 zlib, 2 zstd, 3-7 lzo
for z in zlib lzo zstd; do
	case $z in zlib) re='compression=1,' ;; zstd) re='compression=2,' ;; lzo) re='compression=[3-7],' ;; esac
	n=$(cat ./*.v2c.dump | grep -c "^encoded_write .*$re" || true)
	printf '  encoded_write compression=%s: %d\n' "$z" "$n" >&2
	((n > 0)) || { echo "MISSING encoded_write with $z" >&2; fail=1; }
done
n=$(cat ./*.v2c.dump | grep '^encoded_write' | grep -vc 'unencoded_offset=0,' || true)
printf '  encoded_write with unencoded_offset != 0: %d\n' "$n" >&2
((n > 0)) || { echo "MISSING encoded_write with non-zero unencoded_offset" >&2; fail=1; }
# matching v1/v2 WRITEs exist for every v2c ENCODED_WRITE range
for f in *.v2c.dump; do
	for o in v1 v2; do
		fx cover "$f" "${f%.v2c.dump}.$o.dump" || { echo "v2c/$o mismatch for $f" >&2; fail=1; }
	done
done
for f in basic-incr1.v2 basic-incr1.v2c; do
	for c in fallocate fileattr; do
		grep -q "^$c " "$f.dump" || { echo "MISSING $c in $f" >&2; fail=1; }
	done
done
grep -q '^write ' basic-full.v1.dump || { echo "MISSING write in v1" >&2; fail=1; }
grep -q '^clone ' basic-full.v1.dump || { echo "MISSING same-subvolume clone" >&2; fail=1; }
# the dump does not show CLONE_UUID: classify clone sources from the streams
for f in *.stream; do fx clones "$f"; done | sort | uniq -c | awk '{printf "  clone source %-5s subvolume: %d\n", $2, $1}' | tee "$TMP/cl" >&2
grep -q ' other ' "$TMP/cl" || { echo "MISSING clone from another subvolume" >&2; fail=1; }
grep -q ' same ' "$TMP/cl" || { echo "MISSING clone within the same subvolume" >&2; fail=1; }
for f in clone-dst.v1 clone-dst.v2c; do
	fx clones "$f.stream" | grep -q other || { echo "MISSING cross-subvolume clone in $f" >&2; fail=1; }
done
grep -q '^update_extent ' basic-full.v1nodata.dump || { echo "MISSING update_extent" >&2; fail=1; }
((fail == 0)) || exit 1
du -sh "$HERE" >&2
chmod -R a+rX "$OUT" "$SAMPLE" "$HERE/sample.dump"
log "done"
