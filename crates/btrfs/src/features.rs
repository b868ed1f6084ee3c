//! What the running kernel offers rawsend, found without side effects and
//! without privileges: `/sys/fs/btrfs` (present while btrfs is loaded), its
//! `features/send_stream_version` and `features/verity` files, and the
//! kernel release for what has no file of its own (encoded I/O, 5.18).
//!
//! Nothing here opens a btrfs file or calls an ioctl, so it works as any
//! user on any filesystem; for `rawsend --version`, like `btrfs --version`.

use std::path::Path;

use crate::send::max_send_stream_version;

const SYSFS_BTRFS: &str = "/sys/fs/btrfs";
const VERITY_FEATURE: &str = "/sys/fs/btrfs/features/verity";
const OSRELEASE: &str = "/proc/sys/kernel/osrelease";
/// First kernel with `BTRFS_IOC_ENCODED_READ` / `BTRFS_IOC_ENCODED_WRITE`.
pub const ENCODED_IO_SINCE: (u32, u32) = (5, 18);

/// The kernel's btrfs features, as far as they can be known without a btrfs file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// `uname -r`, if readable.
    pub release: Option<String>,
    /// Whether btrfs is loaded (`/sys/fs/btrfs` exists).
    pub btrfs_loaded: bool,
    /// Highest send protocol the kernel writes; `None` when btrfs is not
    /// loaded or the sysfs file cannot be read.
    pub send_stream_version: Option<u32>,
    /// Whether the kernel has encoded I/O, from its release; `None` if unknown.
    pub encoded_io: Option<bool>,
    /// Whether btrfs was built with fs-verity (`features/verity`).
    pub verity: bool,
}

impl KernelFeatures {
    /// Probes the running kernel. Never fails: what cannot be read is unknown.
    pub fn probe() -> KernelFeatures {
        let release = std::fs::read_to_string(OSRELEASE).ok().map(|text| text.trim().to_owned());
        let btrfs_loaded = Path::new(SYSFS_BTRFS).is_dir();
        KernelFeatures {
            encoded_io: release
                .as_deref()
                .and_then(release_version)
                .map(|version| version >= ENCODED_IO_SINCE),
            release,
            btrfs_loaded,
            send_stream_version: if btrfs_loaded { max_send_stream_version().ok() } else { None },
            verity: Path::new(VERITY_FEATURE).exists(),
        }
    }
}

/// The major and minor numbers of a kernel release string (`6.18.44-foo` → (6, 18)).
pub fn release_version(release: &str) -> Option<(u32, u32)> {
    let mut numbers = release.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_versions_parse() {
        assert_eq!(release_version("6.18.44-fc-v1045"), Some((6, 18)));
        assert_eq!(release_version("5.17.0"), Some((5, 17)));
        assert_eq!(release_version("4.19-rc1"), Some((4, 19)));
        assert_eq!(release_version("garbage"), None);
        assert_eq!(release_version(""), None);
    }

    #[test]
    fn probing_does_not_fail() {
        let features = KernelFeatures::probe();
        assert!(features.release.is_some(), "/proc/sys/kernel/osrelease is readable on Linux");
        assert_eq!(features.btrfs_loaded, features.send_stream_version.is_some());
    }
}
