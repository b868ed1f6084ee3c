//! Test helpers: loop-mounted filesystems with RAII cleanup.
