//! `rawsend --version`: the version, then what this build and the running
//! kernel can do, as `btrfs --version` lists its features.
//!
//! The kernel part comes from [`rawsend_btrfs::KernelFeatures::probe`], which
//! reads sysfs and procfs only: it works as any user, on any filesystem,
//! with btrfs loaded or not, and says "unknown" for what it cannot read.

use rawsend_btrfs::{ENCODED_IO_SINCE, KernelFeatures};
use rawsend_stream::MAX_VERSION;

/// The compressions this build encodes and decodes (rawsend-codec).
const COMPRESSIONS: &str = "zlib, zstd, lzo";

/// The long version text: `rawsend X.Y.Z` and one line per feature group.
pub fn long_version(features: &KernelFeatures) -> String {
    let read: Vec<String> = (1..=MAX_VERSION).map(|v| v.to_string()).collect();
    let send = match (features.btrfs_loaded, features.send_stream_version) {
        (false, _) => "unknown (btrfs is not loaded)".to_owned(),
        (true, None) => "unknown (cannot read /sys/fs/btrfs/features/send_stream_version)".to_owned(),
        (true, Some(max)) => format!(
            "{} (the running kernel's)",
            (1..=max).map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
        ),
    };
    let release = features.release.as_deref().unwrap_or("unknown");
    let encoded = match features.encoded_io {
        Some(true) => format!("yes (kernel {release} >= {}.{})", ENCODED_IO_SINCE.0, ENCODED_IO_SINCE.1),
        Some(false) => format!(
            "no (kernel {release} < {}.{}): compressed extents are decoded on receive",
            ENCODED_IO_SINCE.0, ENCODED_IO_SINCE.1
        ),
        None => format!("unknown (kernel release {release})"),
    };
    let verity = if features.verity { "yes" } else { "no (btrfs lists no verity feature)" };
    format!(
        "{}\nstream versions read: {}\nstream versions sent: {send}\ncompression: {COMPRESSIONS}\n\
         kernel: {release}\nencoded write: {encoded}\nfs-verity: {verity}",
        env!("CARGO_PKG_VERSION"),
        read.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(release: &str, send: Option<u32>) -> KernelFeatures {
        KernelFeatures {
            release: Some(release.to_owned()),
            btrfs_loaded: send.is_some(),
            send_stream_version: send,
            encoded_io: rawsend_btrfs::release_version(release).map(|v| v >= ENCODED_IO_SINCE),
            verity: false,
        }
    }

    #[test]
    fn every_feature_has_a_line() {
        let text = long_version(&features("6.1.0", Some(2)));
        assert!(text.contains("stream versions read: 1, 2, 3\n"), "{text}");
        assert!(text.contains("stream versions sent: 1, 2 (the running kernel's)\n"), "{text}");
        assert!(text.contains("encoded write: yes (kernel 6.1.0 >= 5.18)\n"), "{text}");
        let old = long_version(&features("5.15.0", None));
        assert!(old.contains("stream versions sent: unknown (btrfs is not loaded)"), "{old}");
        assert!(old.contains("encoded write: no (kernel 5.15.0 < 5.18)"), "{old}");
    }
}
