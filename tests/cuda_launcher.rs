//! The CUDA bundle's launcher (scripts/cuda/ft): it finds the CUDA 13
//! libraries where pip lays them out, and names each missing one with the
//! package that ships it. Exercised with a stand-in engine and empty
//! library files, so it runs on machines without a GPU.

use std::fs;
use std::path::Path;
use std::process::Command;

const PIP_LIBS: [(&str, &str); 5] = [
    ("cu13/lib", "libcublasLt.so.13"),
    ("cu13/lib", "libcufft.so.12"),
    ("cu13/lib", "libnvrtc.so.13"),
    ("cudnn/lib", "libcudnn.so.9"),
    ("nccl/lib", "libnccl.so.2"),
];

/// A bundle: `bin/ft` (the launcher) and `bin/ft-cuda`, a script that
/// prints its arguments and the library path it was given.
fn bundle(dir: &Path) -> std::path::PathBuf {
    let bin = dir.join("bundle/bin");
    fs::create_dir_all(&bin).unwrap();
    let launcher = bin.join("ft");
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cuda/ft"),
        &launcher,
    )
    .unwrap();
    let engine = bin.join("ft-cuda");
    fs::write(
        &engine,
        "#!/bin/sh\necho \"engine $* LD_LIBRARY_PATH=$LD_LIBRARY_PATH\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in [&launcher, &engine] {
        fs::set_permissions(f, fs::Permissions::from_mode(0o755)).unwrap();
    }
    launcher
}

fn launch(launcher: &Path, nvidia_dir: &Path) -> std::process::Output {
    Command::new("bash")
        .arg(launcher)
        .arg("device")
        .env("FINETUNE_NVIDIA_DIR", nvidia_dir)
        // No Python site-packages of this machine in the search.
        .env("PYTHON", "/nonexistent/python3")
        .env("CUDA_HOME", nvidia_dir)
        .output()
        .unwrap()
}

fn system_has(soname: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ldconfig -p 2>/dev/null | grep -q '{soname}'"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

#[test]
fn missing_cuda_libraries_are_named_with_their_pip_packages() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = bundle(dir.path());
    let empty = dir.path().join("nothing-here");
    fs::create_dir_all(&empty).unwrap();
    let out = launch(&launcher, &empty);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if PIP_LIBS.iter().all(|(_, lib)| system_has(lib)) {
        return; // a machine with the CUDA libraries installed system-wide
    }
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cannot start"), "{stderr}");
    for (lib, package) in [
        ("libcublasLt.so.13", "nvidia-cublas==13.*"),
        ("libcudnn.so.9", "nvidia-cudnn-cu13==9.*"),
        ("libnccl.so.2", "nvidia-nccl-cu13"),
    ] {
        if !system_has(lib) {
            assert!(stderr.contains(lib), "{lib} not named: {stderr}");
            assert!(stderr.contains(package), "{package} not named: {stderr}");
        }
    }
    assert!(stderr.contains(&empty.display().to_string()), "{stderr}");
}

#[test]
fn libraries_in_the_pip_layout_are_found_and_put_on_the_library_path() {
    let dir = tempfile::tempdir().unwrap();
    let launcher = bundle(dir.path());
    let site = dir.path().join("site-packages");
    for (sub, lib) in PIP_LIBS {
        let folder = site.join("nvidia").join(sub);
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join(lib), b"").unwrap();
    }
    let out = launch(&launcher, &site);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let driver = system_has("libcuda.so.1")
        || Command::new("sh")
            .arg("-c")
            .arg("find /usr/lib* /usr/local/nvidia -name libcuda.so.1 2>/dev/null | grep -q .")
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if driver {
        assert!(out.status.success(), "stderr: {stderr}");
        assert!(stdout.starts_with("engine device"), "{stdout}");
        for sub in ["cu13/lib", "cudnn/lib", "nccl/lib"] {
            let path = site.join("nvidia").join(sub).display().to_string();
            assert!(stdout.contains(&path), "{path} not on the path: {stdout}");
        }
    } else {
        // No NVIDIA driver here: only the driver's library is missing.
        assert_eq!(out.status.code(), Some(2), "stdout: {stdout}");
        assert!(stderr.contains("libcuda.so.1"), "{stderr}");
        for (_, lib) in PIP_LIBS {
            assert!(!stderr.contains(lib), "{lib} was found yet named: {stderr}");
        }
    }
}
