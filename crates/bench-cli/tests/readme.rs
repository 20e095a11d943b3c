//! The README's commands, exactly as written, so the README cannot drift from the tool.
//!
//! Every `bench-cli` line of every ```` ```sh ```` block runs, in the README's order, in one
//! working folder of its own (a link to `data/`, a copy of the committed
//! `results/reference/`), through
//! `sh` with this build's `bench-cli` first on the PATH; each must succeed. Blocks marked
//! ```` ```sh long ```` (runs of minutes or hours) and lines of other programs (`cargo`,
//! `bash`) are skipped; the test prints what it skipped.

use std::path::Path;
use std::process::Stdio;

mod common;

use common::{finish, repo_root, wait, ChildGuard};

/// The `bench-cli` lines to run and the lines skipped, in the README's order.
fn readme_commands(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut run, mut skipped) = (Vec::new(), Vec::new());
    let mut block: Option<&str> = None;
    for line in text.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            block = match block {
                None => Some(info.trim()),
                Some(_) => None,
            };
            continue;
        }
        let Some(info) = block else { continue };
        let command = line.trim();
        if !command.starts_with("bench-cli ") {
            if info.starts_with("sh") && !command.is_empty() && !command.starts_with('#') {
                skipped.push(command.to_string());
            }
            continue;
        }
        match info {
            "sh" => run.push(command.to_string()),
            _ if info.starts_with("sh") => skipped.push(command.to_string()),
            // Output shown after a `$` prompt, not a command to run.
            _ => {}
        }
    }
    (run, skipped)
}

/// Copies the repository's `results/reference/` as a fresh clone has it: the files git
/// tracks (the weights of most runs are not committed: the README's commands make the ones
/// they read), so that what a user's earlier runs left there cannot make a command pass.
fn copy_reference(root: &Path, to: &Path) {
    let listed = std::process::Command::new("git")
        .args(["ls-files", "-z", "results/reference"])
        .current_dir(root)
        .output()
        .expect("git, to list the committed reference files");
    assert!(listed.status.success(), "git ls-files failed");
    for name in listed.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let target = to.join(name);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(root.join(name), &target).unwrap();
    }
}

#[test]
fn readme_commands_run_as_written() {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("README.md")).unwrap();
    let (commands, skipped) = readme_commands(&text);
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("data"), dir.path().join("data")).unwrap();
    copy_reference(&root, dir.path());
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_bench-cli")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for command in &commands {
        println!("$ {command}");
        // `sh` leads a process group of its own: past the deadline, or if this test
        // fails, the guard kills the group, `bench-cli` and any run it started with it.
        let child = ChildGuard::spawn(
            std::process::Command::new("sh")
                .args(["-c", command])
                .env("PATH", &path)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .unwrap();
        let out = finish(&[command], wait(&[command], child));
        assert_eq!(
            out.code, 0,
            "README command failed: {command}\n{}\n{}",
            out.stdout, out.stderr
        );
    }
    for command in &skipped {
        println!("skipped: {command}");
    }
    // The README's conv command (`--out results/reference --force`) rewrote the copy of
    // the committed CSV: its rows are the committed ones, every column but the timing ones.
    let committed = std::fs::read_to_string(root.join("results/reference/conv.csv")).unwrap();
    let written = std::fs::read_to_string(dir.path().join("results/reference/conv.csv")).unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.starts_with("bench-cli --model conv --out results/reference --force")),
        "the README no longer remakes results/reference/conv.csv: {commands:#?}"
    );
    assert_ne!(
        written, committed,
        "the README's conv run did not rewrite conv.csv"
    );
    common::assert_same_but_timing(&written, &committed, "results/reference/conv.csv");
    // What the README must show working: looking at the frames, a training run, a plot,
    // predictions and an evaluation.
    for wanted in [
        "bench-cli frames",
        "bench-cli --model conv",
        "bench-cli plot ",
        "bench-cli predict ",
        "bench-cli eval ",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(wanted)),
            "no `{wanted}` among the README's runnable commands: {commands:#?}"
        );
    }
}

#[test]
fn readme_blocks_are_read_as_intended() {
    let text = "intro\n```sh\nbench-cli frames   # look\ncargo test\n```\n\
                ```\n$ bench-cli frames\noutput\n```\n\
                ```sh long\nbench-cli --model linear\n```\n";
    let (run, skipped) = readme_commands(text);
    assert_eq!(run, ["bench-cli frames   # look"]);
    assert_eq!(skipped, ["cargo test", "bench-cli --model linear"]);
}

/// Every log README.md and BENCHMARKS.md point at for a figure is in the repository, and
/// every committed log is one they point at.
#[test]
fn the_logs_the_documents_cite_are_committed() {
    let root = repo_root();
    let mut cited = std::collections::BTreeSet::new();
    for doc in ["README.md", "BENCHMARKS.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for (at, _) in text.match_indices("bench/logs/") {
            let name: String = text[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/-_.".contains(*c))
                .collect();
            if name.ends_with(".log") {
                assert!(
                    root.join(&name).is_file(),
                    "{doc} cites {name}, which is missing"
                );
                cited.insert(name);
            }
        }
    }
    assert!(!cited.is_empty(), "no log cited");
    for entry in std::fs::read_dir(root.join("bench/logs")).unwrap() {
        let name = format!(
            "bench/logs/{}",
            entry.unwrap().file_name().to_string_lossy()
        );
        if name.ends_with(".log") {
            assert!(cited.contains(&name), "{name} is cited by neither document");
        }
    }
}
