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

/// Threads lowered by [`lower_training_threads`], with what they had
/// before; dropping it puts each back.
#[derive(Default)]
pub struct Lowered {
    #[cfg(target_os = "linux")]
    threads: Vec<(libc::pid_t, i32, libc::c_int)>,
}

/// Lowers the calling thread and this process's unnamed threads (MLX's
/// stream threads and the BLAS pool, which MLX starts without names) to
/// `nice`, until the returned guard is dropped. Named threads — the main
/// (GTK) thread, Tauri's async runtime, GLib's — keep theirs. Threads the
/// lowered ones start later inherit it.
#[cfg(target_os = "linux")]
pub fn lower_training_threads(nice: i32) -> Lowered {
    let main = std::process::id();
    let process_name = std::fs::read_to_string("/proc/self/comm").unwrap_or_default();
    let mut lowered = Lowered::default();
    // The calling thread by its id, so that it can be put back by id.
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() };
    lowered.lower(me, nice);
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return lowered;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if tid != main as libc::pid_t && tid != me && name == process_name {
            lowered.lower(tid, nice);
        }
    }
    lowered
}

#[cfg(target_os = "linux")]
impl Lowered {
    /// Nice value and SCHED_IDLE for one thread, remembering its own.
    /// Lowering needs no privileges; a failure leaves the thread as it was.
    fn lower(&mut self, tid: libc::pid_t, nice: i32) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: plain system calls on this process's own threads.
        unsafe {
            *libc::__errno_location() = 0;
            let before = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            if *libc::__errno_location() != 0 {
                return;
            }
            let policy = libc::sched_getscheduler(tid);
            if policy < 0 {
                return;
            }
            self.threads.push((tid, before, policy));
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
            libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param);
        }
    }
}

#[cfg(target_os = "linux")]
impl Drop for Lowered {
    /// Puts back each thread still alive. Raising a priority again may need
    /// a privilege (RLIMIT_NICE or CAP_SYS_NICE) an ordinary desktop session
    /// can lack: then the thread stays low, which costs nothing on an idle
    /// machine (the lowest weight still gets every free core), and it is
    /// said once on stderr.
    fn drop(&mut self) {
        let param = libc::sched_param { sched_priority: 0 };
        let mut refused = 0;
        for &(tid, nice, policy) in &self.threads {
            // SAFETY: as above; a thread that has exited gives ESRCH.
            unsafe {
                let policy_back = libc::sched_setscheduler(tid, policy, &param);
                let nice_back = libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice);
                if (policy_back != 0 || nice_back != 0) && *libc::__errno_location() != libc::ESRCH
                {
                    refused += 1;
                }
            }
        }
        if refused > 0 {
            eprintln!(
                "note: {refused} training threads keep their lowered priority (raising it back needs a privilege this session lacks)"
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn lower_training_threads(_nice: i32) -> Lowered {
    Lowered::default()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn own_priority() -> (i32, libc::c_int) {
        // SAFETY: queries of the calling thread.
        unsafe {
            let tid = libc::gettid();
            (
                libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t),
                libc::sched_getscheduler(tid),
            )
        }
    }

    fn may_raise_priority() -> bool {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: fills `limit`.
        unsafe {
            libc::geteuid() == 0
                || (libc::getrlimit(libc::RLIMIT_NICE, &mut limit) == 0 && limit.rlim_cur >= 20)
        }
    }

    #[test]
    fn training_threads_get_their_priority_back_when_training_ends() {
        std::thread::spawn(|| {
            let before = own_priority();
            let lowered = lower_training_threads(TRAINING_NICE);
            assert_eq!(own_priority(), (TRAINING_NICE, libc::SCHED_IDLE));
            drop(lowered);
            if may_raise_priority() {
                assert_eq!(own_priority(), before);
            }
        })
        .join()
        .unwrap();
    }
}
