//! Running the binary, as every binary test does. A panic anywhere in it is a bug: any
//! "panicked at" in its output fails the test whatever the exit code.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wait_timeout::ChildExt;

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
/// outlive the run.
pub fn command() -> (Command, tempfile::TempDir) {
    let dir = workdir();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bench-cli"));
    cmd.current_dir(dir.path());
    (cmd, dir)
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
/// child is killed and the test fails with what it printed.
pub fn wait(args: &[&str], mut child: Child) -> std::process::Output {
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let status = child
        .wait_timeout(CHILD_TIMEOUT)
        .expect("wait for bench-cli");
    let timed_out = status.is_none();
    let status = match status {
        Some(status) => status,
        None => {
            let _ = child.kill();
            child.wait().expect("wait for bench-cli")
        }
    };
    let output = std::process::Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        !timed_out,
        "bench-cli {args:?} still ran after {CHILD_TIMEOUT:?} and was killed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
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
    let child = cmd
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
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
    let child = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(&binary)
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
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
    // The first five columns are a contract; test metrics follow them.
    assert_eq!(
        lines.next(),
        Some(
            "epoch,train_loss,test_loss,seconds,frames_per_second,\
             test_mse,test_mae,test_psnr,test_ssim,test_bce"
        )
    );
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 10, "{l}");
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
