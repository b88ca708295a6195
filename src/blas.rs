//! How long OpenBLAS's idle worker threads spin.
//!
//! After each matrix product OpenBLAS's workers spin (calling
//! `sched_yield`) for 2^28 cycles — about a tenth of a second — before they
//! sleep. In a CPU training step the products alternate with MLX's
//! single-threaded element-wise work and our kernels' threads, so a
//! spinning worker keeps taking the other core from them (16 % of a step's
//! CPU samples in `perf`). OpenBLAS reads `OPENBLAS_THREAD_TIMEOUT` (2^n
//! cycles, 4 ≤ n ≤ 30) once, as it loads, before `main` runs: so the
//! binaries start themselves again with it set, unless the environment
//! sets it already (`OPENBLAS_THREAD_TIMEOUT=28` keeps OpenBLAS's default).
//! Measured at `make bench`'s setting: +3–6 % trained tokens/s (BENCHMARKS.md).

/// The variable OpenBLAS reads, and the shortest spin it accepts.
pub const TIMEOUT_VARIABLE: &str = "OPENBLAS_THREAD_TIMEOUT";
pub const SHORT_TIMEOUT: &str = "4";

/// Re-executes this program with a short OpenBLAS spin unless the variable
/// is set; call first thing in `main`. Returns (and the program goes on as
/// it is) when the variable is set or the re-execution fails.
#[cfg(target_os = "linux")]
pub fn shorten_idle_spin() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(TIMEOUT_VARIABLE).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    // `exec` returns only if it failed.
    let _ = command
        .args(args)
        .env(TIMEOUT_VARIABLE, SHORT_TIMEOUT)
        .exec();
}

#[cfg(not(target_os = "linux"))]
pub fn shorten_idle_spin() {}
