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
/// memory (the CPU, and Apple's unified memory). 0 when unknown.
pub fn memory_available_for_training() -> u64 {
    if default_is_gpu() && mlx_flag(mlx_sys::mlx_cuda_is_available).unwrap_or(false) {
        if let Some(free) = gpu_info().and_then(|g| g.free_bytes) {
            return free;
        }
    }
    system_available_memory()
}

/// The system's available memory in bytes (0 when unknown).
pub fn system_available_memory() -> u64 {
    System::new()
        .map(|mut s| {
            s.refresh_memory();
            s.available_memory()
        })
        .unwrap_or(0)
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
