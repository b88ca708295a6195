//! The engine's one error type: each variant says what failed in words a
//! user can act on.

use std::path::PathBuf;

/// Errors from the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An MLX operation failed.
    #[error("MLX: {0}")]
    Mlx(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The input is wrong: a bad file, record or setting.
    #[error("{0}")]
    Invalid(String),
    /// A rank of a run spread over several processes failed (not because
    /// of its input).
    #[error("{0}")]
    Rank(String),
}

impl From<mlx_rs::error::Exception> for Error {
    fn from(e: mlx_rs::error::Exception) -> Self {
        Error::Mlx(without_source_locations(&e.to_string()))
    }
}

/// `text` without the source locations MLX and mlx-rs append to their
/// messages (` at /…/mlx/c/io.cpp:40`, ` at /rustc/…/function.rs:250:5`):
/// they mean nothing to a user.
pub fn without_source_locations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" at ") {
        let after = &rest[i + 4..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let token = after[..end].trim_end_matches([',', ';', ')']);
        let is_location = (token.contains('/') || token.contains('\\'))
            && token
                .rsplit(':')
                .next()
                .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if is_location {
            out.push_str(&rest[..i]);
            rest = &after[token.len()..];
        } else {
            out.push_str(&rest[..i + 4]);
            rest = after;
        }
    }
    out.push_str(rest);
    // What is left of `"message" at …`: the quotes around the message.
    let trimmed = out.trim();
    match trimmed.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('"') => inner.to_string(),
        _ => trimmed.to_string(),
    }
}

/// Shorthand for results of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

thread_local! {
    /// How many `catch_panic` calls this thread is inside.
    static CATCHING: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs `work` from a library that panics on some inputs (the parquet and
/// tokenizers crates do, on damaged files), turning a panic into its
/// message, so a hostile file is refused as bad input rather than ending
/// the program.
pub fn catch_panic<T>(work: impl FnOnce() -> T) -> std::result::Result<T, String> {
    CATCHING.with(|c| c.set(c.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
    CATCHING.with(|c| c.set(c.get() - 1));
    result.map_err(|panic| {
        panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into())
    })
}

/// Whether this thread is inside [`catch_panic`], where a panic becomes an
/// error (a panic hook of one's own, such as a fuzzer's, leaves those be).
pub fn catching_panic() -> bool {
    CATCHING.with(|c| c.get()) > 0
}

/// Makes a panic (a bug: every bad input is an [`Error`]) end the program
/// with one line on stderr and exit code 1, never a backtrace or a source
/// location. Panics on threads named in `caught` (threads that catch them
/// and report a failure) only print the line and unwind.
pub fn install_panic_hook(program: &'static str, caught: &'static [&'static str]) {
    std::panic::set_hook(Box::new(move |info| {
        // A panic inside `catch_panic` becomes an error there.
        if CATCHING.with(|c| c.get()) > 0 {
            return;
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let message = message.lines().next().unwrap_or_default().to_string();
        eprintln!(
            "error: {program} hit an internal error ({message}); this is a bug, please report it with the command that caused it"
        );
        let thread = std::thread::current();
        if !thread.name().is_some_and(|n| caught.contains(&n)) {
            std::process::exit(1);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_mlx_and_rust_source_locations() {
        let raw = "\"[load_gguf] gguf_tensor_to_f16 failed at /root/.cache/mlx-c/0.7.0/mlx/c/io.cpp:40\" at /rustc/17067e9ac6d7e98f18d4a2a8bb2e8d5e4c8c6b2e/library/core/src/ops/function.rs:250:5";
        assert_eq!(
            without_source_locations(raw),
            "[load_gguf] gguf_tensor_to_f16 failed"
        );
        let plain = "[matmul] Last dimension of first input with shape (2,3) must match second dimension (4) at C:\\mlx\\ops.cpp:12";
        assert_eq!(
            without_source_locations(plain),
            "[matmul] Last dimension of first input with shape (2,3) must match second dimension (4)"
        );
        // Words after " at " that are no location stay.
        assert_eq!(
            without_source_locations("stopped at step 3 at 12:00"),
            "stopped at step 3 at 12:00"
        );
    }
}
