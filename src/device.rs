//! The machine and what MLX can do on it: the report behind `ft device`.
//!
//! Every figure is read from the system or measured, never assumed: memory
//! from `sysinfo`, backends from MLX itself, the BLAS from the symbols loaded
//! in this process, and matmul speed from a timed product.

use std::ffi::CStr;
use std::fmt;
use std::time::{Duration, Instant};

use mlx_rs::{Array, Device, DeviceType, Dtype};
use serde::Serialize;
use sysinfo::System;

use crate::error::{Error, Result};

/// What `ft device` prints.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    pub os: String,
    pub arch: String,
    pub cpu_model: String,
    pub physical_cores: Option<usize>,
    pub logical_cores: usize,
    pub total_memory_bytes: u64,
    pub available_memory_bytes: u64,
    pub mlx_version: String,
    /// `cpu` or `gpu`: where MLX runs unless told otherwise.
    pub default_device: String,
    pub backends: Backends,
    /// MLX's distributed backends this build can use (ring, mpi, nccl,
    /// jaccl), for training across processes.
    pub distributed: Vec<&'static str>,
    /// The GPU MLX would use, when there is one.
    pub gpu: Option<GpuInfo>,
    /// What serves f32 matrix products on the default device.
    pub matmul_library: String,
    pub matmul: MatmulBenchmark,
    /// On a GPU, the bf16 product too: the peak that training in bf16 is
    /// measured against.
    pub matmul_bf16: Option<MatmulBenchmark>,
}

/// Which MLX backends this build can use here.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Backends {
    pub cpu: bool,
    pub metal: bool,
    pub cuda: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GpuInfo {
    pub name: String,
    pub architecture: Option<String>,
    pub memory_bytes: Option<u64>,
    /// Free device memory now (CUDA reports it; Metal's memory is the
    /// system's).
    pub free_bytes: Option<u64>,
}

/// A measured square matrix product on the default device.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MatmulBenchmark {
    pub dtype: &'static str,
    pub size: i32,
    pub iterations: u32,
    pub seconds: f64,
    pub gflops: f64,
}

impl DeviceReport {
    /// Gathers the report; the matmul measurement takes about half a second.
    pub fn collect() -> Result<Self> {
        let mut sys = System::new()
            .map_err(|e| Error::Invalid(format!("cannot read system information: {e}")))?;
        sys.refresh_memory();
        sys.refresh_cpu_all();
        let cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let os = format!(
            "{} {}",
            System::name().unwrap_or_else(|_| std::env::consts::OS.into()),
            System::os_version().unwrap_or_default()
        )
        .trim()
        .to_string();

        let backends = Backends {
            cpu: true,
            metal: mlx_flag(mlx_sys::mlx_metal_is_available)?,
            cuda: mlx_flag(mlx_sys::mlx_cuda_is_available)?,
        };
        let default_device = match Device::default().get_type()? {
            DeviceType::Gpu => "gpu",
            DeviceType::Cpu => "cpu",
        };
        let gpu = if backends.metal || backends.cuda {
            gpu_info()
        } else {
            None
        };
        let matmul_library = matmul_library(default_device, &backends);
        // A GPU needs large products to reach its peak; 1024 is the CPU's.
        let on_gpu = default_device == "gpu";
        let size = if on_gpu { 8192 } else { 1024 };
        let budget = Duration::from_millis(400);
        let matmul = measure_matmul(size, Dtype::Float32, budget)?;
        let matmul_bf16 = if on_gpu {
            Some(measure_matmul(size, Dtype::Bfloat16, budget)?)
        } else {
            None
        };

        Ok(Self {
            os,
            arch: std::env::consts::ARCH.into(),
            cpu_model,
            physical_cores: System::physical_core_count().ok(),
            logical_cores: sys.cpus().len(),
            total_memory_bytes: sys.total_memory(),
            available_memory_bytes: sys.available_memory(),
            mlx_version: mlx_version()?,
            default_device: default_device.into(),
            backends,
            distributed: crate::distributed::available_backends(),
            gpu,
            matmul_library,
            matmul,
            matmul_bf16,
        })
    }
}

/// The version of the MLX library this process loaded.
pub fn mlx_version() -> Result<String> {
    // SAFETY: mlx_string is created, filled by mlx_version and freed here.
    unsafe {
        let mut s = mlx_sys::mlx_string_new();
        let status = mlx_sys::mlx_version(&mut s);
        let data = mlx_sys::mlx_string_data(s);
        let text = (status == 0 && !data.is_null())
            .then(|| CStr::from_ptr(data).to_string_lossy().into_owned());
        mlx_sys::mlx_string_free(s);
        text.ok_or_else(|| Error::Mlx("mlx_version failed".into()))
    }
}

/// Whether MLX runs on a GPU unless told otherwise.
pub fn default_is_gpu() -> bool {
    matches!(Device::default().get_type(), Ok(DeviceType::Gpu))
}

/// Bytes training can still take on the device that runs it: the GPU's
/// free memory on CUDA (a discrete card), else the system's available
/// memory (the CPU, and Apple's unified memory), within the process's
/// cgroup limit. 0 when unknown.
pub fn memory_available_for_training() -> u64 {
    if default_is_gpu() && mlx_flag(mlx_sys::mlx_cuda_is_available).unwrap_or(false) {
        if let Some(free) = gpu_info().and_then(|g| g.free_bytes) {
            return free;
        }
    }
    system_available_memory()
}

/// The system's available memory in bytes (0 when unknown), no more than
/// the process's cgroup still allows (a container's memory limit).
pub fn system_available_memory() -> u64 {
    let system = System::new()
        .map(|mut s| {
            s.refresh_memory();
            s.available_memory()
        })
        .unwrap_or(0);
    match cgroup_memory_headroom() {
        Some(headroom) if system == 0 => headroom,
        Some(headroom) => system.min(headroom),
        None => system,
    }
}

/// Bytes the process's own cgroup (from /proc/self/cgroup) still allows:
/// its limit less what it uses, less reclaimable page cache, the tightest
/// over it and its parents. None without a limit (or off Linux).
pub fn cgroup_memory_headroom() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cgroup_headroom(std::path::Path::new("/sys/fs/cgroup"), &own)
}

/// [`cgroup_memory_headroom`] with the cgroup file system mounted at
/// `root` and `own` the text of /proc/self/cgroup: cgroup v2
/// (`0::/path`, `memory.max` / `memory.current`) or v1 (`N:...memory...:/path`,
/// `memory/…/memory.limit_in_bytes` / `memory.usage_in_bytes`).
pub fn cgroup_headroom(root: &std::path::Path, own: &str) -> Option<u64> {
    let mut v2 = None;
    let mut v1 = None;
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.trim());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.trim());
        }
    }
    let read = |p: std::path::PathBuf| std::fs::read_to_string(p).ok();
    let number = |text: Option<String>| -> Option<u64> { text?.trim().parse().ok() };
    let stat = |dir: &std::path::Path, key: &str| -> u64 {
        read(dir.join("memory.stat"))
            .and_then(|t| {
                t.lines().find_map(|l| {
                    let (k, v) = l.split_once(' ')?;
                    (k == key).then(|| v.trim().parse().ok()).flatten()
                })
            })
            .unwrap_or(0)
    };
    // Limits this large mean none (v1 writes "unlimited" as a page-rounded
    // i64::MAX).
    const UNLIMITED: u64 = 1 << 60;
    let mut tightest: Option<u64> = None;
    let mut consider = |limit: Option<u64>, used: Option<u64>, cache: u64| {
        if let (Some(limit), Some(used)) = (limit, used) {
            if limit < UNLIMITED {
                let left = limit.saturating_sub(used.saturating_sub(cache));
                tightest = Some(tightest.map_or(left, |t| t.min(left)));
            }
        }
    };
    if let Some(path) = v2 {
        // The cgroup and its ancestors up to the mount's root (inside a
        // container, the root is the container's own cgroup).
        let mut dir = root.join(path.trim_start_matches('/'));
        if !dir.starts_with(root) || !dir.is_dir() {
            dir = root.to_path_buf();
        }
        loop {
            let limit = read(dir.join("memory.max")).and_then(|t| {
                let t = t.trim().to_string();
                (t != "max").then_some(t).and_then(|t| t.parse().ok())
            });
            consider(
                limit,
                number(read(dir.join("memory.current"))),
                stat(&dir, "inactive_file"),
            );
            if dir == root || !dir.pop() || !dir.starts_with(root) {
                break;
            }
        }
    }
    if let Some(path) = v1 {
        let base = root.join("memory");
        let mut dir = base.join(path.trim_start_matches('/'));
        if !dir.is_dir() {
            dir = base.clone();
        }
        consider(
            number(read(dir.join("memory.limit_in_bytes"))),
            number(read(dir.join("memory.usage_in_bytes"))),
            stat(&dir, "total_inactive_file"),
        );
    }
    tightest
}

fn mlx_flag(query: unsafe extern "C" fn(*mut bool) -> i32) -> Result<bool> {
    let mut value = false;
    // SAFETY: the query writes one bool.
    if unsafe { query(&mut value) } != 0 {
        return Err(Error::Mlx("backend query failed".into()));
    }
    Ok(value)
}

fn gpu_info() -> Option<GpuInfo> {
    // SAFETY: every handle made here is freed here; strings are copied out
    // before the info object is freed.
    unsafe {
        let dev = mlx_sys::mlx_device_new_type(mlx_sys::mlx_device_type__MLX_GPU, 0);
        let mut info = mlx_sys::mlx_device_info_new();
        let ok = mlx_sys::mlx_device_info_get(&mut info, dev) == 0;
        let string = |key: &CStr| {
            let mut value: *const std::os::raw::c_char = std::ptr::null();
            (mlx_sys::mlx_device_info_get_string(&mut value, info, key.as_ptr()) == 0
                && !value.is_null())
            .then(|| CStr::from_ptr(value).to_string_lossy().into_owned())
        };
        let size = |key: &CStr| {
            let mut value = 0usize;
            (mlx_sys::mlx_device_info_get_size(&mut value, info, key.as_ptr()) == 0)
                .then_some(value as u64)
        };
        let result = ok.then(|| GpuInfo {
            name: string(c"device_name").unwrap_or_else(|| "GPU".into()),
            architecture: string(c"architecture"),
            memory_bytes: size(c"memory_size").or_else(|| size(c"total_memory")),
            free_bytes: size(c"free_memory"),
        });
        mlx_sys::mlx_device_info_free(info);
        mlx_sys::mlx_device_free(dev);
        result
    }
}

/// Names the library behind f32 matmul on the default device.
fn matmul_library(default_device: &str, backends: &Backends) -> String {
    if default_device == "gpu" {
        return if backends.cuda {
            "cuBLAS (MLX CUDA backend)".into()
        } else {
            "Metal (MLX GPU kernels)".into()
        };
    }
    if cfg!(target_os = "macos") {
        return "Accelerate".into();
    }
    match openblas_config() {
        Some(config) if config.starts_with("OpenBLAS") => config,
        Some(config) => format!("OpenBLAS ({config})"),
        None => "reference BLAS bundled in libmlx (slow: install OpenBLAS, see README)".into(),
    }
}

/// OpenBLAS's own description of itself, when it is loaded in this process
/// (and so, linked ahead of libmlx, serves its BLAS calls).
fn openblas_config() -> Option<String> {
    #[cfg(unix)]
    // SAFETY: dlsym with RTLD_DEFAULT only looks the symbol up; when present,
    // openblas_get_config returns a static NUL-terminated string.
    unsafe {
        let sym = libc::dlsym(libc::RTLD_DEFAULT, c"openblas_get_config".as_ptr());
        if sym.is_null() {
            return None;
        }
        let get: extern "C" fn() -> *const std::os::raw::c_char = std::mem::transmute(sym);
        let text = get();
        (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().trim().to_string())
    }
    #[cfg(not(unix))]
    None
}

/// Times `size`² f32 matrix products on the default device for about `budget`.
pub fn measure_matmul(size: i32, dtype: Dtype, budget: Duration) -> Result<MatmulBenchmark> {
    let random = || -> Result<Array> {
        let x = mlx_rs::random::uniform::<f32, f32>(-1.0, 1.0, &[size, size], None)?;
        let x = x.as_dtype(dtype)?;
        x.eval()?;
        Ok(x)
    };
    let (a, b) = (random()?, random()?);
    let run = |a: &Array, b: &Array| -> Result<()> {
        a.matmul(b)?.eval()?;
        Ok(())
    };
    run(&a, &b)?; // warm-up: thread pools, kernel selection
    let start = Instant::now();
    let mut iterations = 0u32;
    while iterations < 3 || start.elapsed() < budget {
        run(&a, &b)?;
        iterations += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let flops = 2.0 * (size as f64).powi(3) * iterations as f64;
    Ok(MatmulBenchmark {
        dtype: dtype_name(dtype),
        size,
        iterations,
        seconds,
        gflops: flops / seconds / 1e9,
    })
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Float32 => "f32",
        Dtype::Bfloat16 => "bf16",
        Dtype::Float16 => "f16",
        _ => "other",
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

impl fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let yes_no = |b: bool| if b { "available" } else { "not available" };
        writeln!(f, "System      {} ({})", self.os, self.arch)?;
        write!(
            f,
            "CPU         {}, {} logical cores",
            self.cpu_model, self.logical_cores
        )?;
        if let Some(p) = self.physical_cores {
            write!(f, " ({p} physical)")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Memory      {:.1} GiB total, {:.1} GiB available",
            gib(self.total_memory_bytes),
            gib(self.available_memory_bytes)
        )?;
        writeln!(f, "MLX         {}", self.mlx_version)?;
        writeln!(f, "Device      {} (default)", self.default_device)?;
        writeln!(
            f,
            "Backends    CPU available, Metal {}, CUDA {}",
            yes_no(self.backends.metal),
            yes_no(self.backends.cuda)
        )?;
        writeln!(
            f,
            "Distributed {}",
            if self.distributed.is_empty() {
                "none (one process only)".to_string()
            } else {
                format!("{} (ft train start -n N)", self.distributed.join(", "))
            }
        )?;
        if let Some(gpu) = &self.gpu {
            write!(f, "GPU         {}", gpu.name)?;
            if let Some(arch) = &gpu.architecture {
                write!(f, " ({arch})")?;
            }
            if let Some(mem) = gpu.memory_bytes {
                write!(f, ", {:.1} GiB", gib(mem))?;
            }
            writeln!(f)?;
        }
        writeln!(f, "Matmul by   {}", self.matmul_library)?;
        write!(f, "Matmul      {}", self.matmul)?;
        if let Some(bf16) = &self.matmul_bf16 {
            write!(f, "\n            {bf16}")?;
        }
        Ok(())
    }
}

impl fmt::Display for MatmulBenchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A GPU's hundreds of thousands of GFLOP/s read better as TFLOP/s.
        let (rate, unit) = if self.gflops >= 10_000.0 {
            (self.gflops / 1e3, "TFLOP/s")
        } else {
            (self.gflops, "GFLOP/s")
        };
        write!(
            f,
            "{rate:.1} {unit} {} ({}x{}, {} runs in {:.2} s)",
            self.dtype, self.size, self.size, self.iterations, self.seconds
        )
    }
}

#[cfg(test)]
mod cgroup_tests {
    use super::cgroup_headroom;
    use std::path::Path;

    fn write(root: &Path, file: &str, text: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v2_limit_less_usage_less_inactive_cache_tightest_ancestor() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(root, "user.slice/memory.max", "8000000000\n");
        write(root, "user.slice/memory.current", "1000000000\n");
        write(root, "user.slice/app/memory.max", "max\n");
        write(root, "user.slice/app/memory.current", "500000000\n");
        write(
            root,
            "user.slice/app/memory.stat",
            "anon 1\ninactive_file 100000000\n",
        );
        let own = "0::/user.slice/app\n";
        assert_eq!(cgroup_headroom(root, own), Some(7_000_000_000));
        write(root, "user.slice/app/memory.max", "2000000000\n");
        assert_eq!(cgroup_headroom(root, own), Some(1_600_000_000));
    }

    #[test]
    fn v2_inside_a_container_reads_the_namespace_root() {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "memory.max", "4294967296\n");
        write(tmp.path(), "memory.current", "294967296\n");
        assert_eq!(cgroup_headroom(tmp.path(), "0::/\n"), Some(4_000_000_000));
        write(tmp.path(), "memory.max", "max\n");
        assert_eq!(cgroup_headroom(tmp.path(), "0::/\n"), None);
    }

    #[test]
    fn v1_memory_controller_and_unlimited() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let own = "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n9:memory:/docker/abc\n";
        write(
            root,
            "memory/docker/abc/memory.limit_in_bytes",
            "3000000000\n",
        );
        write(
            root,
            "memory/docker/abc/memory.usage_in_bytes",
            "1200000000\n",
        );
        write(
            root,
            "memory/docker/abc/memory.stat",
            "cache 5\ntotal_inactive_file 200000000\n",
        );
        assert_eq!(cgroup_headroom(root, own), Some(2_000_000_000));
        write(
            root,
            "memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(cgroup_headroom(root, own), None);
        // A container sees its own cgroup at the mount's root.
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "memory/memory.limit_in_bytes", "1000\n");
        write(tmp.path(), "memory/memory.usage_in_bytes", "400\n");
        assert_eq!(cgroup_headroom(tmp.path(), own), Some(600));
    }

    #[test]
    fn no_cgroup_file_no_limit() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(cgroup_headroom(tmp.path(), ""), None);
        assert_eq!(cgroup_headroom(tmp.path(), "0::/a/b\n"), None);
    }
}
