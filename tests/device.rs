//! `ft device`: the report is complete, measured and readable by scripts.

use std::process::Command;

use finetune::device::{measure_matmul, mlx_version, DeviceReport};

#[test]
fn reports_the_pinned_mlx_version() {
    assert_eq!(mlx_version().unwrap(), "0.32.2");
}

#[test]
fn report_has_measured_memory_and_matmul() {
    let report = DeviceReport::collect().unwrap();
    assert!(report.total_memory_bytes > 0);
    assert!(report.available_memory_bytes <= report.total_memory_bytes);
    assert!(report.logical_cores >= 1);
    assert!(report.backends.cpu);
    assert!(report.matmul.iterations >= 3);
    assert!(report.matmul.gflops.is_finite() && report.matmul.gflops > 0.0);
    let text = report.to_string();
    for label in ["System", "CPU", "Memory", "MLX", "Backends", "Matmul"] {
        assert!(text.contains(label), "missing {label} in:\n{text}");
    }
}

#[cfg(target_os = "linux")]
#[test]
fn linux_cpu_matmul_is_served_by_openblas() {
    // The wheel's bundled reference BLAS is ~30x slower; OpenBLAS must win.
    let report = DeviceReport::collect().unwrap();
    if report.default_device == "cpu" {
        assert!(
            report.matmul_library.starts_with("OpenBLAS"),
            "{}",
            report.matmul_library
        );
    }
}

#[test]
fn matmul_measurement_counts_its_runs() {
    let bench = measure_matmul(
        64,
        mlx_rs::Dtype::Float32,
        std::time::Duration::from_millis(10),
    )
    .unwrap();
    assert_eq!(bench.size, 64);
    let expected = 2.0 * 64f64.powi(3) * bench.iterations as f64 / bench.seconds / 1e9;
    assert!((bench.gflops - expected).abs() < 1e-9 * expected.max(1.0));
}

#[test]
fn cli_prints_json_for_scripts() {
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .args(["device", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["mlx_version"], "0.32.2");
    assert!(json["matmul"]["gflops"].as_f64().unwrap() > 0.0);
    assert!(json["total_memory_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn cli_rejects_unknown_commands_with_usage_exit_code() {
    let out = Command::new(env!("CARGO_BIN_EXE_ft"))
        .arg("no-such-command")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn cli_prints_shell_completions() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ft"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(
            script.contains("generate") && script.contains("train"),
            "{shell}"
        );
    }
}
