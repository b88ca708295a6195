//! Keeps the window responsive while training saturates the cores.
//!
//! Training runs on the `training` thread, on MLX's stream thread and the
//! BLAS and kernel threads those start; the webview draws in a process of
//! its own. On Linux, nice values are per thread: lowering the training
//! side's lets the scheduler run the interface first whenever it needs a
//! core, at little cost to training (it gets what the interface leaves).
//! Beyond the nice value they take Linux's SCHED_IDLE policy: the lowest
//! weight there is, so a waking interface thread never waits behind them
//! (nice 10 alone left 68–258 ms stalls on a 2-core machine).

/// The nice value given to the threads that train (0 normal, 19 lowest).
pub const TRAINING_NICE: i32 = 10;

/// Lowers the calling thread and this process's unnamed threads (MLX's
/// stream threads and the BLAS pool, which MLX starts without names) to
/// `nice`. Named threads — the main (GTK) thread, Tauri's async runtime,
/// GLib's — keep theirs. Threads the lowered ones start later inherit it.
#[cfg(target_os = "linux")]
pub fn lower_training_threads(nice: i32) {
    let main = std::process::id();
    let process_name = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    // The calling thread (`who` 0 is the caller for PRIO_PROCESS on Linux).
    lower(0, nice);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if tid != main && name == process_name {
            lower(tid as libc::pid_t, nice);
        }
    }
}

/// Nice value and SCHED_IDLE for one thread (0: the caller). Lowering needs
/// no privileges; a failure leaves the thread as it was.
#[cfg(target_os = "linux")]
fn lower(tid: libc::pid_t, nice: i32) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system calls on this process's own threads.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
        libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_training_threads(_nice: i32) {}
