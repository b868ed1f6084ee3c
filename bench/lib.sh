# Shared helpers for the rawsend benchmarks. Source it, do not run it:
#
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Provides
#   - paths: BENCH (this dir), OUT (bench/out), ROOT (repo), RAWSEND (binary)
#   - scratch + loop-mount helpers with one EXIT trap that always unmounts
#     and detaches what *this* script mounted/attached (also on failure):
#       bench_tmpdir (sets BENCH_TMP), bench_loop_mount IMG MNT [mount opts], bench_track_mount,
#       bench_track_pid PID (a background server, killed on exit)
#   - bench_send_flags CASE: send flags of NAME.v2c|v1|v2
#   - timing: bench_time (one run, wall + rusage), bench_compare
#     (warm-up + alternating runs of two commands, medians, ratio), and
#     bench_report_header / bench_summary for the tables.
#
# Conventions for later scripts (receive.sh, send.sh, ...): define the two
# commands as strings (run through `bash -c`, so redirections and `; sync`
# work), optional PREP hooks that run untimed before each timed run (e.g.
# deleting the previous receive), and call bench_compare. Results are
# appended as TSV to $OUT/results.tsv so README tables can be rebuilt.

set -euo pipefail
export LC_ALL=C

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
OUT=$BENCH/out
RAWSEND=${RAWSEND:-$ROOT/target/release/rawsend}
RUNS=${RUNS:-5}          # timed runs per command (alternating)
WARMUP=${WARMUP:-1}      # untimed runs per command first

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

bench_require_root() { [[ $(id -u) -eq 0 ]] || die "must run as root"; }

bench_require_tools() {
	local t
	for t in "$@"; do command -v "$t" >/dev/null || die "missing tool: $t"; done
	command -v python3 >/dev/null || die "missing tool: python3 (used for timing)"
	[[ -x /usr/bin/time ]] || die "need GNU time at /usr/bin/time (apt-get install time)"
}

bench_require_rawsend() {
	[[ -x $RAWSEND ]] || die "no rawsend binary at $RAWSEND (cargo build --release -p rawsend)"
}

# bench_describe_rawsend: one log line naming the binary, its build time and
# the tree it was (probably) built from; the tree may have moved on since.
bench_describe_rawsend() {
	log "rawsend: $RAWSEND ($("$RAWSEND" --version 2>/dev/null || echo '?'), built $(date -u -r "$RAWSEND" +%FT%TZ), tree HEAD $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
}

# ------------------------------------------------------------ scratch + mounts
_BENCH_TMP=""
_BENCH_MOUNTS=()   # in mount order
_BENCH_LOOPS=()    # loop devices we attached
_BENCH_PIDS=()     # background processes we started (servers)

_bench_cleanup() {
	local rc=$? i
	set +e
	cd /
	for i in "${_BENCH_PIDS[@]}"; do kill "$i" 2>/dev/null && wait "$i" 2>/dev/null; done
	for ((i = ${#_BENCH_MOUNTS[@]} - 1; i >= 0; i--)); do
		if mountpoint -q "${_BENCH_MOUNTS[i]}"; then
			umount "${_BENCH_MOUNTS[i]}" 2>/dev/null ||
				{ sleep 1; umount "${_BENCH_MOUNTS[i]}" || umount -l "${_BENCH_MOUNTS[i]}"; }
		fi
	done
	for ((i = ${#_BENCH_LOOPS[@]} - 1; i >= 0; i--)); do
		losetup -d "${_BENCH_LOOPS[i]}" 2>/dev/null
	done
	[[ -n $_BENCH_TMP ]] && rm -rf "$_BENCH_TMP"
	((rc == 0)) || echo "$(basename "$0"): FAILED (exit $rc)" >&2
	exit $rc
}
trap _bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bench_tmpdir: create (once) this script's scratch dir and set BENCH_TMP.
# Call it in the main shell, not in $(...), so cleanup knows the path:
#   bench_tmpdir; TMP=$BENCH_TMP
bench_tmpdir() {
	if [[ -z $_BENCH_TMP ]]; then
		_BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rawsend-bench.XXXXXX")
	fi
	BENCH_TMP=$_BENCH_TMP
}

bench_track_mount() { _BENCH_MOUNTS+=("$1"); }

# bench_track_pid PID: kill PID (a background server of this shell) on exit.
bench_track_pid() { _BENCH_PIDS+=("$1"); }

# bench_send_flags CASE: the send flags of a case NAME.v2c|v1|v2.
bench_send_flags() {
	case ${1#*.} in
	v2c) echo --compressed-data ;;
	v1) echo "--proto 1" ;;
	v2) echo "--proto 2" ;;
	*) die "unknown variant in case $1 (want NAME.v2c|v1|v2)" ;;
	esac
}

# bench_loop_mount IMG MNT [OPTS]: attach IMG, mount it at MNT (created),
# record both for cleanup. Sets BENCH_LOOPDEV. Must run in the main shell.
bench_loop_mount() {
	local img=$1 mnt=$2 opts=${3:-}
	mkdir -p "$mnt"
	BENCH_LOOPDEV=$(losetup --find --show "$img")
	_BENCH_LOOPS+=("$BENCH_LOOPDEV")
	mount ${opts:+-o "$opts"} "$BENCH_LOOPDEV" "$mnt"
	_BENCH_MOUNTS+=("$mnt")
}

# bench_unmount MNT: unmount early (and detach its loop device if ours).
bench_unmount() {
	local mnt=$1 dev i
	dev=$(findmnt -no SOURCE "$mnt" 2>/dev/null || true)
	umount "$mnt"
	for i in "${!_BENCH_LOOPS[@]}"; do
		if [[ ${_BENCH_LOOPS[i]} == "$dev" ]]; then
			losetup -d "$dev"
			unset '_BENCH_LOOPS[i]'
			_BENCH_LOOPS=("${_BENCH_LOOPS[@]}")
			break
		fi
	done
	for i in "${!_BENCH_MOUNTS[@]}"; do
		[[ ${_BENCH_MOUNTS[i]} == "$mnt" ]] && unset '_BENCH_MOUNTS[i]'
	done
	_BENCH_MOUNTS=("${_BENCH_MOUNTS[@]}")
}

human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }

# ------------------------------------------------------------------- timing
# bench_time CMD RESULTFILE: run `bash -c CMD` once, append
# "wall user sys maxrss_kib" to RESULTFILE. A small Python wrapper takes
# wall = perf_counter around fork..wait4 and user/sys from the child's
# rusage (microsecond resolution; GNU time prints only 10 ms). Peak RSS comes
# from GNU time (%M) run in between, because a child forked from Python
# inherits Python's RSS high-water mark across exec. %M is the largest
# process in the tree, with a floor of ~3 MiB (bash before it execs); the
# command should `exec` the measured program. Non-zero exit aborts.
bench_time() {
	python3 - "$1" "$2" <<'PY' || die "command failed: $1"
import os, sys, time
cmd, res = sys.argv[1], sys.argv[2]
rssf = res + ".rss"
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv("/usr/bin/time", ["time", "-f", "%M", "-o", rssf, "bash", "-c", cmd])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(rssf) as f:
    rss = f.read().split()[-1]
os.unlink(rssf)
with open(res, "a") as f:
    f.write(f"{wall:.6f} {ru.ru_utime:.6f} {ru.ru_stime:.6f} {rss}\n")
sys.exit(0 if os.waitstatus_to_exitcode(status) == 0 else 1)
PY
}

# median of numbers on stdin (one per line)
median() {
	sort -g | awk '{a[NR] = $1} END {
		if (NR == 0) { print "nan"; exit }
		if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# _col RESULTFILE EXPR: awk expression over $1=wall $2=user $3=sys $4=rss
_col() { awk "{ printf \"%.4f\\n\", $2 }" "$1"; }

bench_report_header() {
	printf '%-22s %-8s %9s %9s %9s %9s   %s\n' \
		"case" "tool" "wall(s)" "cpu(s)" "usr(s)" "rss(MiB)" "runs(wall)"
}

# bench_compare CASE NAME_A CMD_A NAME_B CMD_B [PREP]
# A is the reference (btrfs-progs), B is rawsend. WARMUP untimed runs of each,
# then RUNS rounds alternating the order (A,B then B,A, ...), PREP (a shell
# string, untimed) before every run. Prints one line per tool and the ratio
# A/B of the medians (>1 means B is faster). Appends to $OUT/results.tsv:
#   date case tool runs med_wall med_cpu med_user med_rss_mib
bench_compare() {
	local case=$1 na=$2 ca=$3 nb=$4 cb=$5 prep=${6:-:}
	local dir i ra rb
	bench_tmpdir
	dir=$(mktemp -d "$BENCH_TMP/cmp.XXXXXX")
	ra=$dir/a rb=$dir/b
	: >"$ra"; : >"$rb"
	for ((i = 0; i < WARMUP; i++)); do
		bash -c "$prep"; bash -c "$ca" || die "warm-up failed: $ca"
		bash -c "$prep"; bash -c "$cb" || die "warm-up failed: $cb"
	done
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2 == 0)); then
			bash -c "$prep"; bench_time "$ca" "$ra"
			bash -c "$prep"; bench_time "$cb" "$rb"
		else
			bash -c "$prep"; bench_time "$cb" "$rb"
			bash -c "$prep"; bench_time "$ca" "$ra"
		fi
	done
	bench_report_pair "$case" "$dir" "$na" "$nb"
	rm -rf "$dir"
}

# bench_report_pair CASE DIR [NAME_A NAME_B]: for the runs in DIR/a (the
# reference, default "progs") and DIR/b (default "rawsend"), prints one line
# per tool (median wall, cpu, user and peak RSS; each run's wall and cpu),
# appends them to $OUT/results.tsv, then the ratio A/B of the medians (> 1:
# B is faster). Sets BENCH_RSS_B to B's median peak RSS in MiB.
bench_report_pair() {
	local case=$1 dir=$2 na=${3:-progs} nb=${4:-rawsend}
	local name f w c u m runs cpus wa wb caa cbb tool
	for name in a b; do
		f=$dir/$name
		w=$(_col "$f" '$1' | median)
		c=$(_col "$f" '$2 + $3' | median)
		u=$(_col "$f" '$2' | median)
		m=$(_col "$f" '$4 / 1024' | median)
		runs=$(awk '{printf "%s%.3f", sep, $1; sep=","}' "$f")
		cpus=$(awk '{printf "%s%.3f", sep, $2 + $3; sep=","}' "$f")
		if [[ $name == a ]]; then tool=$na wa=$w caa=$c; else tool=$nb wb=$w cbb=$c BENCH_RSS_B=$m; fi
		printf '%-22s %-8s %9.3f %9.3f %9.3f %9.1f   %s  (cpu %s)\n' "$case" "$tool" "$w" "$c" "$u" "$m" "$runs" "$cpus"
		mkdir -p "$OUT"
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$case" "$tool" "$RUNS" \
			"$w" "$c" "$u" "$m" >>"$OUT/results.tsv"
	done
	awk -v a="$wa" -v b="$wb" -v ca="$caa" -v cb="$cbb" -v na="$na" -v nb="$nb" -v c="$case" 'BEGIN {
		printf "%-22s ratio %s/%s: wall %.2fx, cpu %.2fx\n", c, na, nb,
			(b > 0 ? a / b : 0), (cb > 0 ? ca / cb : 0) }'
}

# bench_alternate CMD_A CMD_B: RUNS rounds of two shell commands (strings, run
# with eval), alternating their order (A,B then B,A, ...) so that drift in
# machine load hits both alike.
bench_alternate() {
	local i
	for ((i = 0; i < RUNS; i++)); do
		if ((i % 2 == 0)); then eval "$1"; eval "$2"; else eval "$2"; eval "$1"; fi
	done
}
