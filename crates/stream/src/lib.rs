//! Send-stream format: decode and encode btrfs send streams (v1, v2, v3).
