//! Data-parallel training across processes over MLX's own distributed
//! backends (mlx-c's `mlx_distributed_*`): the ring (TCP, on the CPU), MPI,
//! NCCL (NVIDIA GPUs) and JACCL. A process joins a group from the
//! environment MLX's launcher (`mlx.launch`) sets: `MLX_RANK` and
//! `MLX_HOSTFILE` (the ring's JSON list of `"ip:port"` per rank), or
//! `MLX_RANK`, `MLX_WORLD_SIZE`, `NCCL_HOST_IP` and `NCCL_PORT` (NCCL).
//! `ft train start -n N` starts such a group on one machine
//! ([`write_local_hostfile`]), `--hosts` over the machines of a hostfile
//! ([`hosts`]).

pub mod hosts;
pub mod launch;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Stream};

use crate::error::{Error, Result};

/// The backends MLX knows, in the order `any` tries them.
pub const BACKENDS: [&str; 4] = ["nccl", "ring", "mpi", "jaccl"];

/// The environment variable naming the backend a rank joins with (`any`
/// when unset, MLX's default).
pub const BACKEND_ENV: &str = "FINETUNE_DISTRIBUTED_BACKEND";

/// Whether this build of MLX can use `backend` (MPI: only where libmpi
/// loads).
pub fn is_available(backend: &str) -> bool {
    let Ok(name) = CString::new(backend) else {
        return false;
    };
    unsafe { mlx_sys::mlx_distributed_is_available(name.as_ptr()) }
}

/// The backends this build can use.
pub fn available_backends() -> Vec<&'static str> {
    BACKENDS.into_iter().filter(|b| is_available(b)).collect()
}

/// Whether this process was started as a rank of a group (`MLX_RANK` set).
pub fn launched_as_rank() -> bool {
    std::env::var_os("MLX_RANK").is_some()
}

/// A group of processes training together; this process is `rank` of
/// `size`.
pub struct Group {
    raw: mlx_sys::mlx_distributed_group,
    pub rank: usize,
    pub size: usize,
    /// The backend asked for (`any` lets MLX pick).
    pub backend: String,
    /// The stream the collectives run on: the CPU for the ring and MPI, the
    /// GPU for NCCL.
    stream: Stream,
}

// The group handle is MLX's, shared by every thread of the process; the
// collectives are only ever issued by the training thread.
unsafe impl Send for Group {}

impl Group {
    /// Joins the group the environment describes (see the module's notes),
    /// over [`BACKEND_ENV`]'s backend or MLX's first available one. Fails
    /// with what to check when the peers cannot be reached.
    pub fn join() -> Result<Self> {
        let backend = std::env::var(BACKEND_ENV).unwrap_or_else(|_| "any".into());
        if backend != "any" && !BACKENDS.contains(&backend.as_str()) {
            return Err(Error::Invalid(format!(
                "{BACKEND_ENV}={backend}: the backends are any, {}",
                BACKENDS.join(", ")
            )));
        }
        let name = CString::new(backend.clone()).expect("no NUL in a checked name");
        let mut raw = unsafe { mlx_sys::mlx_distributed_group_new() };
        let rc = unsafe { mlx_sys::mlx_distributed_init(&mut raw, true, name.as_ptr()) };
        if rc != 0 || raw.ctx.is_null() {
            return Err(Error::Invalid(format!(
                "could not join the training group over the {backend} backend (rank {}): \
                 check that every host is reachable at the addresses of MLX_HOSTFILE \
                 (ring) or NCCL_HOST_IP:NCCL_PORT (nccl), and that all ranks started",
                std::env::var("MLX_RANK").unwrap_or_else(|_| "?".into())
            )));
        }
        let rank = unsafe { mlx_sys::mlx_distributed_group_rank(raw) }.max(0) as usize;
        let size = unsafe { mlx_sys::mlx_distributed_group_size(raw) }.max(1) as usize;
        let stream = if backend == "nccl" {
            Stream::gpu()
        } else {
            Stream::cpu()
        };
        Ok(Self {
            raw,
            rank,
            size,
            backend,
            stream,
        })
    }

    /// The element-wise sum of `x` over every rank (lazy: it runs when the
    /// result is evaluated, and every rank must evaluate its collectives in
    /// the same order).
    pub fn all_sum(&self, x: &Array) -> Result<Array> {
        self.collective(x, mlx_sys::mlx_distributed_all_sum, "sum an array across")
    }

    /// `x` from every rank, stacked along a new first axis in rank order
    /// (lazy, as [`Group::all_sum`]).
    pub fn all_gather(&self, x: &Array) -> Result<Array> {
        self.collective(
            x,
            mlx_sys::mlx_distributed_all_gather,
            "gather an array from",
        )
    }

    fn collective(
        &self,
        x: &Array,
        op: unsafe extern "C" fn(
            *mut mlx_sys::mlx_array,
            mlx_sys::mlx_array,
            mlx_sys::mlx_distributed_group,
            mlx_sys::mlx_stream,
        ) -> std::os::raw::c_int,
        what: &str,
    ) -> Result<Array> {
        unsafe {
            let mut out = mlx_sys::mlx_array_new();
            if op(&mut out, x.as_ptr(), self.raw, self.stream.as_ptr()) != 0 {
                mlx_sys::mlx_array_free(out);
                return Err(Error::Invalid(format!(
                    "the training group could not {what} its ranks"
                )));
            }
            Ok(Array::from_ptr(out))
        }
    }

    /// Checks that every rank holds the same `arrays` (the trained
    /// parameters after step `step`): each rank's sum and sum of squares of
    /// each array, gathered and compared with rank 0's. Cheap: two
    /// reductions an array and one small collective.
    pub fn check_same(&self, arrays: &[&Array], step: usize) -> Result<()> {
        if self.size == 1 || arrays.is_empty() {
            return Ok(());
        }
        let mut sums = Vec::with_capacity(2 * arrays.len());
        for a in arrays {
            let a = a.as_dtype(mlx_rs::Dtype::Float32)?;
            sums.push(a.sum(None)?);
            sums.push(a.square()?.sum(None)?);
        }
        let mine = mlx_rs::ops::stack(&sums, 0)?;
        let all = self.all_gather(&mine.reshape(&[1, -1])?)?;
        mlx_rs::transforms::eval([&all])?;
        let rows: Vec<Vec<f32>> = all
            .as_slice::<f32>()
            .chunks(sums.len())
            .map(<[f32]>::to_vec)
            .collect();
        match first_divergent(&rows) {
            None => Ok(()),
            Some(rank) => Err(Error::Invalid(format!(
                "after step {step}, rank {rank}'s parameters differ from rank 0's: the ranks no longer train the same model \
                 (mixed MLX versions or devices across hosts?)"
            ))),
        }
    }

    /// Host numbers (counts, sums of losses) summed over every rank, as
    /// float32, in one collective; it waits for the result.
    pub fn sum_scalars(&self, values: &[f64]) -> Result<Vec<f64>> {
        let mine: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        let summed = self.all_sum(&Array::from_slice(&mine, &[mine.len() as i32]))?;
        mlx_rs::transforms::eval([&summed])?;
        Ok(summed.as_slice::<f32>().iter().map(|&v| v as f64).collect())
    }

    /// `arrays` summed over every rank in one collective: flattened (as
    /// float32) into one buffer, summed, and cut back to their shapes.
    pub fn all_sum_many(&self, arrays: &[&Array]) -> Result<Vec<Array>> {
        // One rank: nothing to sum (MLX would return the input as it is,
        // after our flattening and cutting).
        if arrays.is_empty() || self.size == 1 {
            return Ok(arrays.iter().map(|a| (*a).clone()).collect());
        }
        let flat = arrays
            .iter()
            .map(|a| a.as_dtype(mlx_rs::Dtype::Float32)?.reshape(&[-1]))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let joined = mlx_rs::ops::concatenate(&flat, 0)?;
        let summed = self.all_sum(&joined)?;
        let mut out = Vec::with_capacity(arrays.len());
        let mut start = 0i32;
        for (a, f) in arrays.iter().zip(&flat) {
            let n = f.shape()[0];
            let piece = summed.index(start..start + n).reshape(a.shape())?;
            out.push(piece.as_dtype(a.dtype())?);
            start += n;
        }
        Ok(out)
    }

    /// Rank 0's files in `from` (a checkpoint), copied to `to` on every
    /// other rank through the group, so that ranks on other machines resume
    /// from the checkpoint only rank 0 keeps. Every rank must call it; it
    /// returns the folder to read: `from` on rank 0, `to` on the others.
    pub fn share_files(&self, from: Option<&Path>, to: &Path) -> Result<PathBuf> {
        if self.rank == 0 || self.size == 1 {
            let from = from.ok_or_else(|| Error::Invalid("no checkpoint to share".into()))?;
            if self.size == 1 {
                return Ok(from.to_path_buf());
            }
            let manifest = list_files(from)?;
            let text = serde_json::to_vec(&manifest).expect("names and sizes serialise");
            self.sum_scalars(&[text.len() as f64])?;
            self.broadcast_bytes(Some(&text), text.len())?;
            for (name, size) in &manifest {
                let path = from.join(name);
                let mut file = std::fs::File::open(&path).map_err(io_error(&path))?;
                let mut left = *size;
                while left > 0 {
                    let n = left.min(SHARE_CHUNK);
                    let mut chunk = vec![0u8; n as usize];
                    std::io::Read::read_exact(&mut file, &mut chunk).map_err(io_error(&path))?;
                    self.broadcast_bytes(Some(&chunk), chunk.len())?;
                    left -= n;
                }
            }
            return Ok(from.to_path_buf());
        }
        let length = self.sum_scalars(&[0.0])?[0] as usize;
        let text = self.broadcast_bytes(None, length)?;
        let manifest: Vec<(String, u64)> = serde_json::from_slice(&text)
            .map_err(|e| Error::Invalid(format!("rank 0 shared a broken file list: {e}")))?;
        std::fs::create_dir_all(to).map_err(io_error(to))?;
        for (name, size) in manifest {
            if name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(Error::Invalid(format!(
                    "rank 0 shared a file named {name:?}"
                )));
            }
            let path = to.join(&name);
            let mut file = std::fs::File::create(&path).map_err(io_error(&path))?;
            let mut left = size;
            while left > 0 {
                let n = left.min(SHARE_CHUNK);
                let chunk = self.broadcast_bytes(None, n as usize)?;
                std::io::Write::write_all(&mut file, &chunk).map_err(io_error(&path))?;
                left -= n;
            }
        }
        Ok(to.to_path_buf())
    }

    /// Rank 0's `len` bytes on every rank (the others add zeros).
    fn broadcast_bytes(&self, mine: Option<&[u8]>, len: usize) -> Result<Vec<u8>> {
        if self.size == 1 {
            return Ok(mine.map(<[u8]>::to_vec).unwrap_or_default());
        }
        let n = len as i32;
        let x = match mine {
            Some(bytes) => Array::from_slice(bytes, &[n]),
            None => mlx_rs::ops::zeros::<u8>(&[n])?,
        };
        let summed = self.all_sum(&x)?;
        mlx_rs::transforms::eval([&summed])?;
        Ok(summed.as_slice::<u8>().to_vec())
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        unsafe {
            mlx_sys::mlx_distributed_group_free(self.raw);
        }
    }
}

/// Rank `rank`'s share of a global batch: every `size`-th of `units`
/// (rows, or pairs of rows for preference data), starting at its rank, so
/// that the ranks together hold exactly the batch one process would train.
pub fn shard<T: Clone>(units: &[T], rank: usize, size: usize) -> Vec<T> {
    units
        .iter()
        .skip(rank)
        .step_by(size.max(1))
        .cloned()
        .collect()
}

/// The first rank whose checksums differ from rank 0's beyond float32
/// rounding (the same sums taken on another machine may round apart).
fn first_divergent(rows: &[Vec<f32>]) -> Option<usize> {
    let root = rows.first()?;
    rows.iter().position(|row| {
        row.iter().zip(root).any(|(a, b)| {
            // NaN is never close.
            let close = (a - b).abs() <= 1e-5 * a.abs().max(b.abs()).max(1e-6);
            !close
        })
    })
}

/// The largest piece of a shared file sent in one collective.
const SHARE_CHUNK: u64 = 64 << 20;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { path, source }
}

/// The plain files of `dir` with their sizes, by name.
fn list_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let meta = entry.metadata().map_err(io_error(&entry.path()))?;
        if meta.is_file() {
            files.push((entry.file_name().to_string_lossy().into_owned(), meta.len()));
        }
    }
    files.sort();
    Ok(files)
}

/// A free TCP port on loopback now (for NCCL's bootstrap).
pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `n` distinct TCP ports free on this machine now: the system hands them
/// out while all are held, so no two are the same.
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let io = |source| Error::Io {
        path: "127.0.0.1".into(),
        source,
    };
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(io)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(io))
        .collect()
}

/// Writes the ring backend's hostfile (per rank, the `ip:port` addresses
/// it listens at) to `path`.
pub fn write_ring_hostfile(path: &Path, addresses: &[Vec<String>]) -> Result<()> {
    let text = serde_json::to_string(addresses).expect("strings serialise");
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes the ring's hostfile for `ranks` processes on this machine (each
/// listening on its own free loopback port) to `path`.
pub fn write_local_hostfile(path: &Path, ranks: usize) -> Result<()> {
    let addresses = hosts::ring_addresses(&hosts::local(ranks), &free_ports(ranks)?)?;
    write_ring_hostfile(path, &addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_interleave_and_cover_the_batch() {
        let rows = [10, 11, 12, 13, 14];
        assert_eq!(shard(&rows, 0, 2), vec![10, 12, 14]);
        assert_eq!(shard(&rows, 1, 2), vec![11, 13]);
        assert_eq!(shard(&rows, 3, 4), vec![13]);
        assert!(shard(&rows[..1], 1, 2).is_empty());
        assert_eq!(shard(&rows, 0, 1), rows.to_vec());
    }

    #[test]
    fn the_local_hostfile_lists_one_loopback_port_per_rank() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts.json");
        write_local_hostfile(&path, 3).unwrap();
        let hosts: Vec<Vec<String>> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(hosts.len(), 3);
        let ports: std::collections::BTreeSet<&str> = hosts
            .iter()
            .map(|h| h[0].rsplit(':').next().unwrap())
            .collect();
        assert_eq!(ports.len(), 3);
        assert!(hosts.iter().all(|h| h[0].starts_with("127.0.0.1:")));
    }

    #[test]
    fn ranks_whose_checksums_drift_are_found() {
        let root = vec![1.0, 2.5e-3];
        assert_eq!(first_divergent(&[root.clone(), root.clone()]), None);
        // Rounding of a sum taken on another machine is not a divergence.
        assert_eq!(
            first_divergent(&[root.clone(), vec![1.000_000_1, 2.5e-3]]),
            None
        );
        assert_eq!(
            first_divergent(&[root.clone(), root.clone(), vec![1.0, 2.6e-3]]),
            Some(2)
        );
        assert_eq!(first_divergent(&[root, vec![f32::NAN, 2.5e-3]]), Some(1));
    }

    #[test]
    fn the_ring_is_available_in_this_build() {
        assert!(is_available("ring"));
        assert!(!is_available("nonsense"));
        assert!(available_backends().contains(&"ring"));
    }
}
