#!/usr/bin/env bash
# The whole rawsend test suite, as CI runs it: installs what it needs, checks
# that this machine can loop-mount btrfs (and fails, not skips, if it cannot),
# then runs rustfmt, clippy and every test, root tests included.
#
#   scripts/test.sh          (as root; `sudo scripts/test.sh` from another user)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "scripts/test.sh: run as root: the suite mounts loop filesystems and calls btrfs ioctls" >&2
	exit 1
fi

# tool -> Debian package
declare -A PACKAGES=(
	[mkfs.btrfs]=btrfs-progs [compsize]=btrfs-compsize [mkfs.ext4]=e2fsprogs
	[mkfs.xfs]=xfsprogs [losetup]=mount [python3]=python3 [/usr/bin/time]=time
	[man]=man-db [nroff]=groff-base [zsh]=zsh [fish]=fish [btrbk]=btrbk
)
PACKAGES[script]=bsdutils # progress.rs runs rawsend on a terminal made by script(1)
missing=()
for tool in "${!PACKAGES[@]}"; do
	command -v "$tool" >/dev/null || missing+=("${PACKAGES[$tool]}")
done
if ((${#missing[@]})); then
	echo "==> installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

# The S3 server the object storage tests start (crates/testutil/src/s3.rs); 0.14.1 is the
# newest that builds with rustc 1.95.
if ! command -v s3s-fs >/dev/null; then
	echo "==> installing s3s-fs (S3 server for the object storage tests)"
	cargo install s3s-fs --version 0.14.1 --locked --features binary
fi
s3s-fs --help >/dev/null

echo "==> checking that a loop-mounted btrfs works"
probe=$(mktemp -d)
cleanup_probe() {
	mountpoint -q "$probe/mnt" && umount "$probe/mnt"
	[[ -n ${loopdev:-} ]] && losetup -d "$loopdev"
	rm -rf "$probe"
}
trap cleanup_probe EXIT
truncate -s 256M "$probe/img"
mkfs.btrfs -q "$probe/img"
loopdev=$(losetup --find --show "$probe/img")
mkdir "$probe/mnt"
mount "$loopdev" "$probe/mnt"
cleanup_probe
loopdev=
trap - EXIT

# What tests could leave behind, one per line: mounts under /tmp, loop devices backed by a
# file under /tmp, and /tmp's rawsend-* entries (LoopFs images live in rawsend-loopfs-*).
tmp_state() {
	findmnt -rn -o TARGET | grep -E '^/tmp/' | sed 's/^/mount: /' || true
	losetup -n -l -O NAME,BACK-FILE | awk '$2 ~ /^\/tmp\// { print "loop device: " $1 " backed by " $2 }'
	find /tmp -mindepth 1 -maxdepth 1 -name 'rawsend-*' | sed 's/^/file: /'
}

echo "==> rustfmt"
cargo fmt --all --check
echo "==> clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> tests (root tests included)"
cargo test --workspace --locked --no-run
# The tests run with a private TMPDIR (every temporary directory of the suite, loop images
# included, goes there), so that what they leave behind is theirs; /tmp as a whole is
# compared before and after too, for anything that ignores TMPDIR.
before=$(tmp_state)
test_tmp=$(mktemp -d /tmp/rawsend-test.XXXXXX)
chmod 0755 "$test_tmp" # the unprivileged tests run rawsend as nobody in there
TMPDIR=$test_tmp cargo test --workspace --locked --no-fail-fast
echo "==> nothing left behind (loop devices, mounts, files)"
rmdir "$test_tmp" 2>/dev/null || true # kept, and reported below, if a test left files in it
leftovers=$(comm -13 <(sort <<<"$before") <(tmp_state | sort))
if [[ -n $leftovers ]]; then
	echo "tests left things behind (run the suite alone: other runs' files count too):" >&2
	echo "$leftovers" >&2
	[[ -d $test_tmp ]] && find "$test_tmp" -mindepth 1 -maxdepth 1 | sed 's/^/  in it: /' >&2
	exit 1
fi
echo "==> all passed"
