//! `ft-fuzz <target> --seconds N [--corpus DIR] [--iterations N]`: a
//! fuzzer for FineTune's file readers that runs on the stable toolchain.
//!
//! The parent mutates seed inputs (the repository's own small real files)
//! with byte flips, splices, truncations, integer boundary values and
//! format tokens, and hands each input to a child worker process (this same
//! binary with `--worker`). The worker runs the reader under an address
//! space limit (`FT_FUZZ_MEM_MB`, 4 GiB by default) so that an unbounded
//! allocation shows as a crash; a panic aborts it. A dead worker (panic,
//! abort, signal, stack overflow, out of memory) or one that does not answer
//! within `--timeout` seconds is a finding: the input is saved under
//! `fuzz/crashes/<target>/` with what the worker printed, and a fresh worker
//! takes over. Inputs whose outcome (the error message, digits folded) was
//! not seen before join the corpus: a cheap stand-in for coverage feedback.
//! An `Err` whose message leaks a source location (`.rs:`, `.cpp:`) or the
//! word `panicked` counts as a finding too.

mod targets;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use targets::Target;

const MAX_INPUT: usize = 4 << 20;
const MAX_CORPUS: usize = 2000;

fn usage() -> ! {
    eprintln!(
        "usage: ft-fuzz <target> --seconds N [--iterations N] [--corpus DIR] [--timeout S] [--crashes DIR]\n\
         targets: {}",
        targets::NAMES.join(", ")
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--worker") {
        let target = args
            .get(1)
            .and_then(|n| Target::parse(n))
            .unwrap_or_else(|| usage());
        worker(target);
    }
    if args.first().map(String::as_str) == Some("--replay") {
        // ft-fuzz --replay <target> <file>: run one input here, in process.
        let (Some(target), Some(file)) = (args.get(1).and_then(|n| Target::parse(n)), args.get(2))
        else {
            usage()
        };
        let data = std::fs::read(file).unwrap_or_else(|e| {
            eprintln!("{file}: {e}");
            std::process::exit(2)
        });
        let dir = scratch_dir();
        let ctx = targets::Context::prepare(target, &dir);
        let outcome = targets::run(target, &ctx, &data);
        println!("{outcome}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let Some(target) = args.first().and_then(|n| Target::parse(n)) else {
        usage()
    };
    let mut seconds = 60.0f64;
    let mut iterations = u64::MAX;
    let mut corpus_dir = None;
    let mut timeout = 20.0f64;
    let mut crashes = repo_root().join("fuzz/crashes").join(target.name());
    let mut it = args[1..].iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--seconds" => seconds = value().parse().unwrap_or_else(|_| usage()),
            "--iterations" => iterations = value().parse().unwrap_or_else(|_| usage()),
            "--corpus" => corpus_dir = Some(PathBuf::from(value())),
            "--timeout" => timeout = value().parse().unwrap_or_else(|_| usage()),
            "--crashes" => crashes = PathBuf::from(value()).join(target.name()),
            _ => usage(),
        }
    }
    let found = fuzz(
        target,
        Duration::from_secs_f64(seconds),
        iterations,
        corpus_dir.as_deref(),
        Duration::from_secs_f64(timeout),
        &crashes,
    );
    std::process::exit(if found == 0 { 0 } else { 1 });
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/ is inside the repository")
        .to_path_buf()
}

fn scratch_base() -> PathBuf {
    if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
}

fn scratch_dir() -> PathBuf {
    let dir = scratch_base().join(format!("ft-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

// ---------------------------------------------------------------- worker

fn set_limit(resource: libc::__rlimit_resource_t, bytes: u64) {
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit only reads the struct passed.
    unsafe { libc::setrlimit(resource, &limit) };
}

fn worker(target: Target) -> ! {
    let mb: u64 = std::env::var("FT_FUZZ_MEM_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    set_limit(libc::RLIMIT_CORE, 0);
    std::panic::set_hook(Box::new(|info| {
        // A third-party crate's panic that FineTune catches and reports as
        // an error about the file is not a finding.
        if finetune::error::catching_panic() {
            return;
        }
        eprintln!("\nFT-FUZZ PANIC: {info}");
        std::process::abort();
    }));
    let dir = scratch_dir();
    let ctx = targets::Context::prepare(target, &dir);
    // After the fixtures are in place: their loading is not what is tested.
    set_limit(libc::RLIMIT_AS, mb << 20);
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let mut input = stdin.lock();
    let mut output = stdout.lock();
    loop {
        let mut len = [0u8; 4];
        if input.read_exact(&mut len).is_err() {
            let _ = std::fs::remove_dir_all(&dir);
            std::process::exit(0);
        }
        let mut data = vec![0u8; u32::from_le_bytes(len) as usize];
        if input.read_exact(&mut data).is_err() {
            std::process::exit(0);
        }
        let outcome = targets::run(target, &ctx, &data);
        let bytes = outcome.as_bytes();
        let bytes = &bytes[..bytes.len().min(2000)];
        let ok = output
            .write_all(&(bytes.len() as u32).to_le_bytes())
            .and_then(|_| output.write_all(bytes))
            .and_then(|_| output.flush());
        if ok.is_err() {
            std::process::exit(0);
        }
    }
}

// ---------------------------------------------------------------- parent

struct Worker {
    child: Child,
    stdin: ChildStdin,
    replies: Receiver<Option<String>>,
    stderr: PathBuf,
}

impl Worker {
    fn start(target: Target, stderr: &Path) -> Worker {
        let log = std::fs::File::create(stderr).expect("worker log");
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .args(["--worker", target.name()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start the worker");
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || loop {
            let mut len = [0u8; 4];
            if stdout.read_exact(&mut len).is_err() {
                let _ = tx.send(None);
                return;
            }
            let mut msg = vec![0u8; u32::from_le_bytes(len) as usize];
            if stdout.read_exact(&mut msg).is_err() {
                let _ = tx.send(None);
                return;
            }
            if tx
                .send(Some(String::from_utf8_lossy(&msg).into_owned()))
                .is_err()
            {
                return;
            }
        });
        Worker {
            child,
            stdin,
            replies: rx,
            stderr: stderr.to_path_buf(),
        }
    }

    fn stop(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        // A killed or crashed worker leaves its scratch folder behind.
        let _ =
            std::fs::remove_dir_all(scratch_base().join(format!("ft-fuzz-{}", self.child.id())));
        let mut tail = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.stderr) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            let _ = f.seek(SeekFrom::Start(len.saturating_sub(4000)));
            let _ = f.read_to_string(&mut tail);
        }
        if let Some(status) = status {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = status.signal() {
                tail.push_str(&format!("\n(worker ended by signal {sig})"));
            } else if let Some(code) = status.code() {
                tail.push_str(&format!("\n(worker exited with {code})"));
            }
        }
        tail
    }
}

enum Reply {
    Done(String),
    Dead,
    Hang,
}

fn exchange(w: &mut Worker, data: &[u8], timeout: Duration) -> Reply {
    let sent = w
        .stdin
        .write_all(&(data.len() as u32).to_le_bytes())
        .and_then(|_| w.stdin.write_all(data))
        .and_then(|_| w.stdin.flush());
    if sent.is_err() {
        return Reply::Dead;
    }
    match w.replies.recv_timeout(timeout) {
        Ok(Some(msg)) => Reply::Done(msg),
        Ok(None) | Err(RecvTimeoutError::Disconnected) => Reply::Dead,
        Err(RecvTimeoutError::Timeout) => Reply::Hang,
    }
}

/// The outcome with digits folded, quoted text elided and the length cut,
/// for telling outcomes apart (coarse, so that the corpus stays small).
fn signature(msg: &str) -> String {
    let mut out = String::new();
    let mut last_hash = false;
    let mut quote: Option<char> = None;
    for c in msg.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
                out.push(c);
            }
            continue;
        }
        if matches!(c, '`' | '"' | '\'') {
            quote = Some(c);
            out.push(c);
            continue;
        }
        if c.is_ascii_digit() {
            if !last_hash {
                out.push('#');
            }
            last_hash = true;
        } else {
            out.push(c);
            last_hash = false;
        }
        if out.len() >= 100 {
            break;
        }
    }
    out
}

/// The lines that say what went wrong, from a dead worker's stderr.
fn crash_line(tail: &str) -> String {
    let lines: Vec<&str> = tail.lines().collect();
    let at = lines
        .iter()
        .rposition(|l| l.contains("FT-FUZZ PANIC") || l.contains("memory allocation of"))
        .or_else(|| {
            lines
                .iter()
                .rposition(|l| l.contains("overflow") || l.contains("terminate"))
        })
        .or_else(|| lines.iter().rposition(|l| !l.trim().is_empty()));
    match at {
        // A panic's message follows its location, on the next line.
        Some(i) => lines[i..(i + 2).min(lines.len())].join(" "),
        None => String::new(),
    }
}

fn leaks(msg: &str) -> bool {
    msg.starts_with("err: ")
        && (msg.contains(".rs:") || msg.contains(".cpp:") || msg.contains("panicked"))
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0x8000,
    0xffff,
    0x10000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 1,
];

const NUMBERS: &[&str] = &[
    "0",
    "-1",
    "1",
    "-0",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551616",
    "1e309",
    "-1e309",
    "NaN",
    "0.0",
    "1e-45",
    "65536",
    "1000000000",
];

fn mutate(rng: &mut Rng, base: &[u8], corpus: &[Vec<u8>], dict: &[&str]) -> Vec<u8> {
    let mut d = base.to_vec();
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        let len = d.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                d[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let v = if rng.chance(2) { v } else { v.wrapping_neg() };
                let bytes = v.to_le_bytes();
                let i = rng.below(len);
                let n = width.min(len - i);
                d[i..i + n].copy_from_slice(&bytes[..n]);
            }
            3 if len > 1 => {
                let i = rng.below(len);
                let span = if rng.chance(4) { len } else { 16 };
                let n = 1 + rng.below((len - i).min(span));
                d.drain(i..(i + n).min(len));
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = d[i..i + n].to_vec();
                let at = rng.below(len + 1);
                for _ in 0..(1 + rng.below(4)) {
                    d.splice(at..at, chunk.iter().copied());
                }
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - i).min(256));
                    let at = rng.below(len + 1);
                    if rng.chance(2) && at < len {
                        let end = (at + n).min(len);
                        d.splice(at..end, other[i..i + n].iter().copied());
                    } else {
                        d.splice(at..at, other[i..i + n].iter().copied());
                    }
                }
            }
            6 if len > 0 => {
                d.truncate(rng.below(len));
            }
            7 if !dict.is_empty() => {
                let token = dict[rng.below(dict.len())].as_bytes();
                let at = rng.below(len + 1);
                if rng.chance(2) && at + token.len() <= len {
                    d[at..at + token.len()].copy_from_slice(token);
                } else {
                    d.splice(at..at, token.iter().copied());
                }
            }
            8 if len >= 4 => {
                let i = rng.below(len - 3);
                let v = u32::from_le_bytes(d[i..i + 4].try_into().expect("4 bytes"));
                let delta = 1 + rng.below(35) as u32;
                let v = if rng.chance(2) {
                    v.wrapping_add(delta)
                } else {
                    v.wrapping_sub(delta)
                };
                d[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            9 | 10 if len > 0 => {
                // A decimal number in text replaced by a boundary value.
                let start = rng.below(len);
                if let Some(off) = d[start..].iter().position(|b| b.is_ascii_digit()) {
                    let i = start + off;
                    let end = d[i..]
                        .iter()
                        .position(|b| !(b.is_ascii_digit() || *b == b'.'))
                        .map_or(len, |e| i + e);
                    let i = if i > 0 && d[i - 1] == b'-' { i - 1 } else { i };
                    let n = NUMBERS[rng.below(NUMBERS.len())].as_bytes();
                    d.splice(i..end, n.iter().copied());
                }
            }
            _ => {}
        }
    }
    d.truncate(MAX_INPUT);
    d
}

fn fuzz(
    target: Target,
    duration: Duration,
    iterations: u64,
    corpus_dir: Option<&Path>,
    timeout: Duration,
    crashes_dir: &Path,
) -> usize {
    let mut seeds = targets::seeds(target);
    if let Some(dir) = corpus_dir {
        let _ = std::fs::create_dir_all(dir);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if bytes.len() <= MAX_INPUT {
                        seeds.push(bytes);
                    }
                }
            }
        }
    }
    if seeds.is_empty() {
        seeds.push(Vec::new());
    }
    let dict = targets::dictionary(target);
    let log_dir = std::env::temp_dir().join(format!("ft-fuzz-parent-{}", std::process::id()));
    std::fs::create_dir_all(&log_dir).expect("log directory");
    let stderr = log_dir.join("worker.stderr");
    let mut worker = Worker::start(target, &stderr);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15
        ^ (std::process::id() as u64) << 17
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1));
    let mut corpus: Vec<Vec<u8>> = seeds.clone();
    let mut outcomes: HashSet<String> = HashSet::new();
    let mut found: HashMap<String, usize> = HashMap::new();
    let (mut crashes, mut hangs, mut leaked) = (0usize, 0usize, 0usize);
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut execs = 0u64;
    let mut restarts = 0u64;
    while execs < iterations && (start.elapsed() < duration || execs < seeds.len() as u64) {
        let input = if (execs as usize) < seeds.len() {
            seeds[execs as usize].clone()
        } else {
            let base = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, base, &corpus, &dict)
        };
        execs += 1;
        let reply = exchange(&mut worker, &input, timeout);
        let finding = match reply {
            Reply::Done(msg) => {
                let sig = signature(&msg);
                if leaks(&msg) {
                    leaked += 1;
                    Some((
                        "leak",
                        format!("message leaks a source location: {msg}"),
                        sig,
                    ))
                } else {
                    if outcomes.insert(sig) {
                        if let Some(dir) = corpus_dir {
                            let _ =
                                std::fs::write(dir.join(format!("{:016x}", hash(&input))), &input);
                        }
                        if corpus.len() < MAX_CORPUS {
                            corpus.push(input.clone());
                        } else {
                            // Full: a new outcome replaces a mutant (never a seed).
                            let i = seeds.len() + rng.below(MAX_CORPUS - seeds.len());
                            corpus[i] = input.clone();
                        }
                    }
                    None
                }
            }
            Reply::Dead | Reply::Hang => {
                let hang = matches!(reply, Reply::Hang);
                let tail = worker.stop();
                worker = Worker::start(target, &stderr);
                restarts += 1;
                let line = crash_line(&tail);
                let (kind, what) = if hang {
                    hangs += 1;
                    (
                        "hang",
                        format!("no answer within {} s", timeout.as_secs_f64()),
                    )
                } else {
                    crashes += 1;
                    ("crash", line.clone())
                };
                // Restart the worker after a hang, too: kill was sent above.
                Some((
                    kind,
                    format!("{what}\n--- worker stderr (tail) ---\n{tail}"),
                    signature(&line),
                ))
            }
        };
        if let Some((kind, text, sig)) = finding {
            let seen = found.entry(format!("{kind}:{sig}")).or_insert(0);
            *seen += 1;
            if *seen <= 3 {
                let _ = std::fs::create_dir_all(crashes_dir);
                let name = format!("{kind}-{:016x}", hash(&input));
                let _ = std::fs::write(crashes_dir.join(&name), &input);
                let _ = std::fs::write(crashes_dir.join(format!("{name}.txt")), &text);
                eprintln!(
                    "[{}] {kind}: {} (saved {})",
                    target.name(),
                    text.lines().next().unwrap_or(""),
                    crashes_dir.join(&name).display()
                );
            }
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            let secs = start.elapsed().as_secs_f64();
            eprintln!(
                "[{}] {secs:.0} s: {execs} execs ({:.1}/s), corpus {}, outcomes {}, crashes {crashes}, hangs {hangs}, leaks {leaked}",
                target.name(),
                execs as f64 / secs,
                corpus.len(),
                outcomes.len()
            );
        }
    }
    drop(worker.stdin);
    let _ = worker.child.wait();
    let _ = std::fs::remove_dir_all(&log_dir);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "ft-fuzz {}: {execs} executions in {secs:.0} s ({:.1}/s), {} seeds, corpus {}, {} distinct outcomes, {crashes} crashes, {hangs} hangs, {leaked} leaking messages, {restarts} worker restarts",
        target.name(),
        execs as f64 / secs,
        seeds.len(),
        corpus.len(),
        outcomes.len()
    );
    crashes + hangs + leaked
}

fn hash(data: &[u8]) -> u64 {
    // FNV-1a: names saved inputs by content.
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
