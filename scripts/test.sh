#!/usr/bin/env bash
# The whole rawsend test suite, as CI runs it: installs what it needs, checks
# that this machine can loop-mount btrfs (and fails, not skips, if it cannot),
# then runs rustfmt, clippy and every test, root tests included.
#
#   sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) -ne 0 ]]; then
	echo "scripts/test.sh: run as root: the suite mounts loop filesystems and calls btrfs ioctls" >&2
	exit 1
fi

# tool -> Debian package
declare -A PACKAGES=(
	[mkfs.btrfs]=btrfs-progs [compsize]=btrfs-compsize [mkfs.ext4]=e2fsprogs
	[mkfs.xfs]=xfsprogs [losetup]=mount [python3]=python3
)
missing=()
for tool in "${!PACKAGES[@]}"; do
	command -v "$tool" >/dev/null || missing+=("${PACKAGES[$tool]}")
done
if ((${#missing[@]})); then
	echo "==> installing ${missing[*]}"
	apt-get update -q
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

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

echo "==> rustfmt"
cargo fmt --all --check
echo "==> clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> tests (root tests included)"
cargo test --workspace --locked
echo "==> leftover mounts or loop devices"
leftovers=$(findmnt -rn -t btrfs -o TARGET | grep -E '^/tmp/' || true)
if [[ -n $leftovers ]]; then
	echo "tests left mounts behind: $leftovers" >&2
	exit 1
fi
