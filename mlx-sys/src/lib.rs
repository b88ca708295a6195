//! Raw bindings to mlx-c, built against the prebuilt MLX of a pinned PyPI
//! wheel. Used through `mlx-rs`; see build.rs for how it is built.
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// mlx-rs seeds its random generator with macOS's `mach_approximate_time`,
/// which other systems lack: provide it from the monotonic clock.
#[cfg(not(target_vendor = "apple"))]
#[no_mangle]
pub extern "C" fn mach_approximate_time() -> u64 {
    use std::sync::OnceLock;
    use std::time::{Instant, SystemTime, UNIX_EPOCH};
    // Anchor to wall-clock time so seeds differ between processes.
    static START: OnceLock<(Instant, u64)> = OnceLock::new();
    let (start, epoch_ns) = START.get_or_init(|| {
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        (Instant::now(), ns)
    });
    epoch_ns.wrapping_add(start.elapsed().as_nanos() as u64)
}
