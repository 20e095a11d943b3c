//! Running the binary, as every binary test does. A panic anywhere in it is a bug: any
//! "panicked at" in its output fails the test whatever the exit code.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// How long one run of the binary may take before its test fails with the run's output:
/// generous (the slowest run here takes well under a minute), so a hang costs minutes of
/// CI, not its whole budget.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

/// A working folder of one run's own, holding links to the repository's `data/` and
/// `results/reference/`: relative paths read what they would from the repository's root,
/// while anything the run writes by default (`--out results`) lands here, never in the
/// working tree, whatever earlier runs left there.
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    std::os::unix::fs::symlink(root.join("data"), dir.path().join("data")).unwrap();
    std::fs::create_dir(dir.path().join("results")).unwrap();
    std::os::unix::fs::symlink(
        root.join("results/reference"),
        dir.path().join("results/reference"),
    )
    .unwrap();
    dir
}

/// The binary, to be started in the returned working folder (see [`workdir`]), which must
/// outlive the run. The child leads a process group of its own, so that a [`ChildGuard`]
/// ends whatever it starts too.
pub fn command() -> (Command, tempfile::TempDir) {
    let dir = workdir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench-cli"));
    cmd.current_dir(dir.path()).process_group(0);
    (cmd, dir)
}

/// A child process that cannot outlive its test: dropped (a panicking test included)
/// before it was reaped, it is killed with its whole process group (its own children: `sh
/// -c`'s command, `bench-cli bench`'s training runs) and reaped. Start it with
/// [`ChildGuard::spawn`], or through [`command`], so that it leads a group of its own; a
/// child that does not is killed alone.
///
/// Waiting is done here, never through `Child::wait`: the group is killed while its
/// leader is still unreaped (a zombie at worst), so its id cannot have been reused.
pub struct ChildGuard(Child);

impl From<Child> for ChildGuard {
    fn from(child: Child) -> Self {
        Self(child)
    }
}

impl std::ops::Deref for ChildGuard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

/// For its pipes; waiting through it would skip the group's end (see [`ChildGuard`]).
impl std::ops::DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl ChildGuard {
    /// Starts `cmd` as the leader of a new process group.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        cmd.process_group(0).spawn().map(Self)
    }

    /// Sends `signal` to the child alone (not its group), if it was not reaped yet.
    pub fn signal(&self, signal: i32) {
        if self.state() != State::Reaped {
            // SAFETY: a signal to our own unreaped child, whose id cannot be reused.
            unsafe {
                libc::kill(self.0.id() as libc::pid_t, signal);
            }
        }
    }

    /// Waits at most `timeout` for the child to end; once it has, whatever it left running
    /// in its group is killed and it is reaped. `None`: still running, left as it is.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.state() {
                State::Running if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                State::Running => return None,
                State::Exited => return Some(self.kill()),
                // Reaped through `Child` after all: its status is kept there.
                State::Reaped => return Some(self.0.wait().expect("the child's kept status")),
            }
        }
    }

    /// Kills the child and its group (SIGKILL), if it was not reaped yet, and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        self.end().expect("reap the child")
    }

    /// [`ChildGuard::kill`] that cannot panic (it runs in `drop`).
    fn end(&mut self) -> std::io::Result<ExitStatus> {
        if self.state() != State::Reaped {
            let pid = self.0.id() as libc::pid_t;
            // SAFETY: getpgid and kill have no memory-safety preconditions; the child is
            // not reaped, so its id (and its group's) still names it.
            unsafe {
                let target = if libc::getpgid(pid) == pid { -pid } else { pid };
                libc::kill(target, libc::SIGKILL);
            }
        }
        self.0.wait()
    }

    /// Whether the child runs, has ended (unreaped), or was reaped: `waitid` with
    /// `WNOWAIT` looks without reaping.
    fn state(&self) -> State {
        // SAFETY: siginfo_t is plain data, valid zeroed; waitid only writes into it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let found = unsafe {
            libc::waitid(
                libc::P_PID,
                self.0.id(),
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if found != 0 {
            // ECHILD: reaped already; no other error can come of these arguments, and one
            // that did would only spare the group.
            return State::Reaped;
        }
        // SAFETY: waitid filled `info` (or left it zeroed: nothing has ended).
        if unsafe { info.si_pid() } == 0 {
            State::Running
        } else {
            State::Exited
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.end();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Exited,
    Reaped,
}

/// Reads a child's pipe to its end on a thread of its own, so that neither pipe fills up
/// while the other is read.
fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// Waits for a child started with piped output, at most [`CHILD_TIMEOUT`]; past it, the
/// child and its process group are killed and the test fails with what it printed. The
/// group is killed when the child ends too, so that nothing it started outlives it.
pub fn wait(args: &[&str], child: impl Into<ChildGuard>) -> std::process::Output {
    let mut child = child.into();
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = child.wait_timeout(CHILD_TIMEOUT);
    let timed_out = status.is_none();
    let status = status.unwrap_or_else(|| child.kill());
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        !timed_out,
        "bench-cli {args:?} still ran after {CHILD_TIMEOUT:?} and was killed with its process \
         group\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A child's stderr, line by line, read on a thread of its own so that a test can wait for
/// a line with a deadline instead of blocking on the pipe.
pub struct Lines {
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line received so far, for failure messages.
    pub seen: String,
}

impl Lines {
    pub fn new(pipe: impl Read + Send + 'static) -> Self {
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(pipe)) {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines,
            seen: String::new(),
        }
    }

    /// The next line, `None` at the pipe's end; a test fails, with what was read, when no
    /// line comes within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Option<String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push_str(&line);
                self.seen.push('\n');
                Some(line)
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                panic!("no line within {timeout:?}; read so far:\n{}", self.seen)
            }
        }
    }

    /// Reads up to the first line that starts with `prefix`, at most `timeout` in all;
    /// fails, with what was read, at the pipe's end or past the deadline.
    pub fn until(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.next(left).unwrap_or_else(|| {
                panic!("the output ended with no `{prefix}` line:\n{}", self.seen)
            });
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    /// Reads to the pipe's end, at most `timeout` in all, and returns every line read.
    pub fn rest(&mut self, timeout: Duration) -> &str {
        let deadline = Instant::now() + timeout;
        while self
            .next(deadline.saturating_duration_since(Instant::now()))
            .is_some()
        {}
        &self.seen
    }
}

pub struct Output {
    pub code: i32,
    /// The signal that ended the process, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs bench-cli in a working folder of its own ([`workdir`]). A panic anywhere is a bug, so any
/// "panicked at" fails the test whatever the exit code.
pub fn bench_cli(args: &[&str]) -> Output {
    bench_cli_env(args, &[])
}

/// [`bench_cli`] with extra environment variables.
pub fn bench_cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let (mut cmd, _dir) = command();
    let child = ChildGuard::spawn(
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("run bench-cli");
    finish(args, wait(args, child))
}

/// Checks a finished process for panics and collects its output.
pub fn finish(args: &[&str], out: std::process::Output) -> Output {
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&out.status);
    #[cfg(not(unix))]
    let signal = None;
    let output = Output {
        code: out.status.code().unwrap_or(-1),
        signal,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !output.stderr.contains("panicked at") && !output.stdout.contains("panicked at"),
        "bench-cli {args:?} panicked:\n{}",
        output.stderr
    );
    output
}

/// The unprivileged user a test as root runs the binary as, so that file permissions bind.
pub const NOBODY: &str = "65534";

/// `setpriv`'s arguments that drop root for [`NOBODY`] and no groups.
const AS_NOBODY: [&str; 5] = ["--reuid", NOBODY, "--regid", NOBODY, "--clear-groups"];

/// [`bench_cli`], as an unprivileged user when the tests run as root (as CI does): root
/// reads through file permissions, so a permission error can only be provoked without it.
/// Uses util-linux's `setpriv`; the paths given must be reachable by that user.
pub fn bench_cli_unprivileged(args: &[&str]) -> Output {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return bench_cli(args);
    }
    let (binary, _copy) = reachable_binary(Path::new(env!("CARGO_BIN_EXE_bench-cli")));
    let child = ChildGuard::spawn(
        Command::new("setpriv")
            .args(AS_NOBODY)
            .arg(&binary)
            .args(args)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .expect("as root, the permission tests need setpriv (util-linux) to drop root");
    let out = finish(args, wait(args, child));
    assert!(
        !out.stderr.starts_with("setpriv:"),
        "setpriv could not run the binary as user {NOBODY}: {}",
        out.stderr
    );
    out
}

/// `binary`, or a copy of it that the unprivileged user can run when the build folder is
/// out of its reach (a checkout under root's home, say); the copy's folder must outlive the
/// run.
pub fn reachable_binary(binary: &Path) -> (PathBuf, Option<tempfile::TempDir>) {
    let runs = Command::new("setpriv")
        .args(AS_NOBODY)
        .args(["test", "-x"])
        .arg(binary)
        .status()
        .is_ok_and(|s| s.success());
    if runs {
        return (binary.to_path_buf(), None);
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join(binary.file_name().unwrap());
    std::fs::copy(binary, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (copy, Some(dir))
}

pub fn ok(args: &[&str]) -> Output {
    let out = bench_cli(args);
    assert_eq!(out.code, 0, "bench-cli {args:?} failed:\n{}", out.stderr);
    out
}

pub fn fails(args: &[&str]) -> String {
    let out = bench_cli(args);
    assert_ne!(
        out.code, 0,
        "bench-cli {args:?} should fail:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("error"), "{}", out.stderr);
    out.stderr
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub epoch: usize,
    pub train_loss: f64,
    pub test_loss: f64,
    pub seconds: f64,
    pub frames_per_second: f64,
}

pub fn read_rows(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    // The first five columns are a contract; test metrics follow them, then the optional
    // columns of a validation split and a learning-rate schedule.
    let header = lines.next().unwrap_or_default();
    let optional = header
        .strip_prefix(
            "epoch,train_loss,test_loss,seconds,frames_per_second,\
             test_mse,test_mae,test_psnr,test_ssim,test_bce",
        )
        .unwrap_or_else(|| panic!("{header}"));
    assert!(
        [
            "",
            ",val_loss,val_copy_last,note",
            ",lr",
            ",val_loss,val_copy_last,note,lr"
        ]
        .contains(&optional),
        "{header}"
    );
    let columns = header.split(',').count();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), columns, "{l}");
            Row {
                epoch: f[0].parse().unwrap(),
                train_loss: f[1].parse().unwrap(),
                test_loss: f[2].parse().unwrap(),
                seconds: f[3].parse().unwrap(),
                frames_per_second: f[4].parse().unwrap(),
            }
        })
        .collect()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A figure of `tests/fixtures/copy_last.json`, which `bench/copy_last_reference.py`
/// computes with numpy from `data/`'s frames: copying the last frame on the seed's split.
pub fn copy_last_reference(key: &str) -> f64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/copy_last.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let figures: serde_json::Value = serde_json::from_str(&text).unwrap();
    figures[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{}: no number `{key}`", path.display()))
}

/// Borrowed arguments from owned ones.
pub fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Two CSVs of training rows are the same but for the timing columns (`seconds`,
/// `frames_per_second`): every other field, digit for digit, and the same header.
pub fn assert_same_but_timing(ours: &str, reference: &str, name: &str) {
    let strip = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| {
                l.split(',')
                    .enumerate()
                    .filter(|(k, _)| *k != 3 && *k != 4)
                    .map(|(_, f)| f.to_string())
                    .collect()
            })
            .collect()
    };
    let (ours, reference) = (strip(ours), strip(reference));
    assert_eq!(ours.len(), reference.len(), "rows against {name}");
    for (k, (a, b)) in ours.iter().zip(&reference).enumerate() {
        assert_eq!(a, b, "line {} differs from {name}", k + 1);
    }
}

/// Every key of a `copy_last_frame` block (summary or `eval --json`) against the same
/// figures computed by numpy and scikit-image (`tests/fixtures/copy_last.json`, block
/// `case`), 1e-6 relative: the frames are f32 here and f64 there. Lists (per frame ahead)
/// entry by entry; the keys must be the same on both sides, so a figure added to one and
/// not the other, or renamed, fails too.
pub fn assert_figures_match_numpy(ours: &serde_json::Value, case: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/copy_last.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_figures_close(ours, &fixture[case], &format!("numpy's {case}"));
}

/// Two blocks of figures hold the same keys and, key by key and entry by entry, numbers
/// within 1e-6 relative (or both the same string: `NaN`, `inf`).
pub fn assert_figures_close(ours: &serde_json::Value, theirs: &serde_json::Value, at: &str) {
    compare_figures(ours, theirs, at)
}

fn compare_figures(ours: &serde_json::Value, numpy: &serde_json::Value, at: &str) {
    use serde_json::Value;
    match (ours, numpy) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            assert_eq!(ka, kb, "{at}: keys of ours and theirs");
            for (key, value) in a {
                compare_figures(value, &b[key], &format!("{at}.{key}"));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            assert_eq!(a.len(), b.len(), "{at}: lengths");
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                compare_figures(x, y, &format!("{at}[{k}]"));
            }
        }
        (Value::Number(_), Value::Number(_)) => {
            let (x, y) = (ours.as_f64().unwrap(), numpy.as_f64().unwrap());
            assert!(
                (x - y).abs() <= 1e-6 * y.abs(),
                "{at}: ours {x}, theirs {y} ({:.1e} relative)",
                (x - y).abs() / y.abs()
            );
        }
        (Value::String(a), Value::String(b)) if a == b => {}
        _ => panic!("{at}: ours {ours}, theirs {numpy}"),
    }
}
