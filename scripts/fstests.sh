#!/usr/bin/env bash
# Runs the "send" group of fstests (the kernel's own file-system test suite)
# with rawsend standing in for `btrfs send` / `btrfs receive`, or with plain
# btrfs-progs for comparison, and checks the outcome against
# scripts/fstests-expected.txt (the tests that fail or do not run on this
# kernel with btrfs-progs too, and why).
#
#   sudo scripts/fstests.sh [--progs] [TEST...]     e.g. btrfs/110 btrfs/191
#
# fstests calls whatever `btrfs` is first in PATH (common/config:
# BTRFS_UTIL_PROG=$(type -P btrfs)); in rawsend mode that is a symlink named
# `btrfs` to the rawsend binary, which runs the real btrfs for every
# subcommand but send and receive (README: "As btrfs").
#
# It builds fstests from the tarball in shared/third-party (beside the
# project's clone, or RAWSEND_SHARED) into RAWSEND_FSTESTS_DIR
# (/var/tmp/rawsend-fstests; rebuilt only when the tarball changes),
# installs its build dependencies with apt-get, creates the users fstests
# wants, makes sparse loop devices for TEST_DEV and SCRATCH_DEV_POOL (two
# devices: btrfs/314 needs them), and removes every mount and loop device it
# made on every exit path. Results stay in the printed directory.
#
# Prints one line per test and "N passed, M failed, K notrun"; exits non-zero
# if a test fails or does not run and is not listed in the expectations file.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

SHARED=${RAWSEND_SHARED:-$(dirname "$repo")/shared}
TARBALL=$SHARED/third-party/fstests-63a29724.tar.gz
BUILD=${RAWSEND_FSTESTS_DIR:-/var/tmp/rawsend-fstests}
EXPECTED=$repo/scripts/fstests-expected.txt
# Build dependencies of fstests (autotools, headers of libuuid, libxfs,
# libattr, libacl) and the tools the send group calls: xfs_io, getfattr and
# setfattr, setfacl, setcap, fsverity, killall, bc, gawk, btrfs and mkfs.btrfs.
PACKAGES=(make gcc autoconf automake libtool libtool-bin pkg-config uuid-dev uuid-runtime
	xfslibs-dev xfsprogs libattr1-dev libacl1-dev attr acl gawk bc psmisc libcap2-bin
	fsverity btrfs-progs)
IMAGE_SIZE=10G

usage() {
	echo "usage: $0 [--progs] [TEST...]" >&2
	exit 2
}

main() {
	local mode=rawsend tests=()
	while (($#)); do
		case $1 in
		--progs) mode=progs ;;
		-h | --help) usage ;;
		-*) usage ;;
		*) tests+=("$1") ;;
		esac
		shift
	done
	((${#tests[@]})) || tests=(-g send)
	if [[ $(id -u) -ne 0 ]]; then
		echo "$0: run as root: fstests mounts loop devices and creates users" >&2
		exit 1
	fi
	[[ -f $TARBALL ]] || {
		echo "$0: no fstests tarball at $TARBALL (set RAWSEND_SHARED)" >&2
		exit 1
	}

	install_packages
	build_fstests
	create_users

	WORK=$(mktemp -d /var/tmp/rawsend-fstests-run.XXXXXX)
	chmod 755 "$WORK"
	LOOPS=()
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	local bindir=$WORK/bin
	[[ $mode == rawsend ]] && link_rawsend "$bindir"
	make_devices
	local results
	mkdir -p /var/tmp/rawsend-fstests-results
	results=$(mktemp -d "/var/tmp/rawsend-fstests-results/$mode-$(date -u +%Y%m%dT%H%M%SZ).XXXX")
	chmod 755 "$results"
	write_config "$results"

	echo "==> ./check ${tests[*]} with $(PATH="$bindir:$PATH" type -P btrfs) ($mode)"
	local start=$SECONDS
	# check runs in a process group of its own, which cleanup stops on a signal;
	# in the background, so that this shell takes the signal while it waits.
	# shellcheck disable=SC2016 # $$ and $@ are the inner shell's
	(cd "$BUILD" && PATH="$bindir:$PATH" HOST_OPTIONS="$WORK/local.config" \
		setsid bash -c 'echo $$ >"$0"; exec ./check "$@"' "$WORK/check.pid" "${tests[@]}") 2>&1 |
		tee "$results/check.out" | sed -u 's/^/  | /' &
	wait $! || true
	rm "$WORK/check.pid"
	echo "==> ran in $((SECONDS - start)) s; results in $results"
	report "$results" "$mode"
}

install_packages() {
	local missing=() pkg
	for pkg in "${PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	((${#missing[@]})) || return 0
	echo "==> installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# Unpacks and builds fstests unless a build of this very tarball is there.
build_fstests() {
	local sum stamp=$BUILD/.rawsend-built
	sum=$(sha256sum "$TARBALL" | cut -d' ' -f1)
	[[ -f $stamp && $(cat "$stamp") == "$sum" ]] && return 0
	echo "==> building fstests in $BUILD"
	rm -rf "$BUILD"
	mkdir -p "$BUILD"
	tar -xzf "$TARBALL" -C "$BUILD"
	make -C "$BUILD" -j"$(nproc)" >"$BUILD/make.log" 2>&1 || {
		tail -n 30 "$BUILD/make.log" >&2
		exit 1
	}
	echo "$sum" >"$stamp"
}

create_users() {
	local user
	getent group fsgqa >/dev/null || groupadd fsgqa
	for user in fsgqa fsgqa2 123456-fsgqa; do
		getent passwd "$user" >/dev/null && continue
		# A name that starts with a digit needs --badname.
		useradd -m -g fsgqa "$user" 2>/dev/null || useradd --badname -m -g fsgqa "$user"
	done
}

# Builds rawsend, copies it into DIR and makes DIR/btrfs a symlink to it. The
# copy is for the tests that run btrfs as another user (btrfs/339), who may
# not reach the target directory.
link_rawsend() {
	local dir=$1
	(cd "$repo" && cargo build --release -p rawsend)
	install -D -m 755 "${CARGO_TARGET_DIR:-$repo/target}/release/rawsend" "$dir/rawsend"
	ln -s rawsend "$dir/btrfs"
}

make_devices() {
	local name dev
	mkdir "$WORK/test" "$WORK/scratch"
	for name in test scratch1 scratch2; do
		truncate -s "$IMAGE_SIZE" "$WORK/$name.img"
		dev=$(losetup --find --show "$WORK/$name.img")
		LOOPS+=("$dev")
	done
	mkfs.btrfs -q -f "${LOOPS[0]}"
}

write_config() {
	cat >"$WORK/local.config" <<EOF
export FSTYP=btrfs
export TEST_DEV=${LOOPS[0]}
export TEST_DIR=$WORK/test
export SCRATCH_DEV_POOL="${LOOPS[1]} ${LOOPS[2]}"
export SCRATCH_MNT=$WORK/scratch
export RESULT_BASE=$1
EOF
}

# Unmounts everything on our devices or under WORK, forgets and detaches the
# devices, removes the images. Goes on past errors: it runs on every exit.
cleanup() {
	local dev target
	set +e
	[[ -n ${WORK:-} ]] || return 0
	stop_check
	for dev in "${LOOPS[@]}"; do
		while target=$(findmnt -rn -S "$dev" -o TARGET | head -n 1) && [[ -n $target ]]; do
			umount "$target" || umount -l "$target"
		done
	done
	findmnt -rn -o TARGET | grep "^$WORK/" | sort -r | while read -r target; do
		umount "$target" || umount -l "$target"
	done
	for dev in "${LOOPS[@]}"; do
		btrfs device scan --forget "$dev" 2>/dev/null
		losetup -d "$dev"
	done
	rm -rf "$WORK"
}

# Stops check and its tests (its process group) if it still runs: TERM, then
# KILL after 30 s.
stop_check() {
	local pid i
	pid=$(cat "$WORK/check.pid" 2>/dev/null) || return 0
	kill -TERM -- "-$pid" 2>/dev/null || return 0
	echo "==> stopping ./check (process group $pid)" >&2
	for ((i = 0; i < 30; i++)); do
		kill -0 -- "-$pid" 2>/dev/null || return 0
		sleep 1
	done
	kill -KILL -- "-$pid" 2>/dev/null
	sleep 1
}

# Reads check's log, prints one line per test and the summary, compares with
# the expectations file's lines for MODE.
report() {
	local results=$1 mode=$2 log ran=() notrun=() failed=() t status which reason
	log=$results/check.log
	read -ra ran <<<"$(sed -n 's/^Ran: //p' "$log" | tail -n 1)"
	read -ra notrun <<<"$(sed -n 's/^Not run: //p' "$log" | tail -n 1)"
	read -ra failed <<<"$(sed -n 's/^Failures: //p' "$log" | tail -n 1)"
	local -A expected=() why=()
	while read -r t status which reason; do
		[[ -z $t || $t == \#* ]] && continue
		[[ $which == all || $which == "$mode" ]] || continue
		expected[$t]=$status
		why[$t]=$reason
	done <"$EXPECTED"
	local passed=0 nfailed=0 nnotrun=0 unexpected=() interrupted=
	# check lists the test it was interrupted in as run, and not as failed.
	((${#ran[@]})) && grep -q "^Interrupted!" "$log" && interrupted=${ran[-1]}
	for t in "${ran[@]}"; do
		if [[ $t == "$interrupted" ]]; then
			status=fail reason=interrupted
			nfailed=$((nfailed + 1))
		elif in_list "$t" "${failed[@]}"; then
			status=fail reason=$(fail_reason "$results" "$t")
			nfailed=$((nfailed + 1))
		elif in_list "$t" "${notrun[@]}"; then
			status=notrun reason=$(cat "$results/$t.notrun" 2>/dev/null || true)
			nnotrun=$((nnotrun + 1))
		else
			status=pass reason=
			passed=$((passed + 1))
		fi
		echo "$t $status${reason:+ $reason}"
		if [[ $status != pass && ${expected[$t]:-} != "$status" ]]; then
			unexpected+=("$t")
		elif [[ $status != "${expected[$t]:-pass}" ]]; then
			echo "  note: $t is listed as '${expected[$t]}' (${why[$t]}) in $EXPECTED but passed"
		fi
	done
	echo "results: $results"
	echo "$passed passed, $nfailed failed, $nnotrun notrun"
	if ((${#ran[@]} == 0)); then
		echo "no test ran: see $results/check.out" >&2
		return 1
	fi
	if ((${#unexpected[@]})); then
		echo "not in $EXPECTED: ${unexpected[*]}" >&2
		return 1
	fi
}

in_list() {
	local x=$1
	shift
	local y
	for y; do [[ $x == "$y" ]] && return 0; done
	return 1
}

# What check said about a failed test, plus the first line of its output diff.
fail_reason() {
	local results=$1 t=$2 said diffline
	# The test's first line and check's own messages after it, not the indented diff.
	said=$(awk -v t="$t" '$1 == t {on = 1; print; next} on && /^([a-z]+\/[0-9]+ |Ran:)/ {exit} on && /^[^ \t]/' \
		"$results/check.out" |
		tr -s ' \t\n' ' ' | sed -E "s|^$t ([0-9]+s \.\.\. )*||; s/ \(see [^)]*\)//g; s/^- //; s/\]- /] /; s/ *$//")
	if [[ -f $results/$t.out.bad ]]; then
		diffline=$(diff "$BUILD/tests/$t.out" "$results/$t.out.bad" | grep -m 1 '^[<>]' || true)
	fi
	echo "$said${diffline:+ [first diff: $diffline]}"
}

main "$@"
