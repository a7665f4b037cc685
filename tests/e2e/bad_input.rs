//! Bad input through the binary: every invalid task file of `tests/fixtures/invalid/` is
//! refused by `tarefas task validate -f` (and by `task create -f`, which then creates
//! nothing) with exit status 2 and exactly the `path: problem` lines of its `.expected` file.
//!
//! To add a case, drop `NN-what.yaml` (or `.json`) in the folder and run the test once with
//! `TAREFAS_BLESS=1`: it writes the `.expected` file next to it. Read it before committing —
//! the lines are the contract of docs/task-file.md.

use std::path::{Path, PathBuf};

use crate::support::{repo, tarefas, tarefas_with_stdin, temp_file, TestDb};

const FIXTURES: &str = "tests/fixtures/invalid";

/// The fixture files (not the `.expected` ones), sorted, as paths relative to the repository.
fn fixtures() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(FIXTURES))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e != "expected"))
        .map(|p| Path::new(FIXTURES).join(p.file_name().unwrap()))
        .collect();
    files.sort();
    files
}

fn expected_path(file: &Path) -> PathBuf {
    repo().join(file.with_extension("expected"))
}

#[test]
fn every_invalid_task_file_is_rejected_with_its_path_and_exit_2() {
    let files = fixtures();
    assert!(files.len() >= 30, "only {} invalid task files", files.len());
    let bless = std::env::var_os("TAREFAS_BLESS").is_some();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.to_str().unwrap();
        let out = tarefas(&["task", "validate", "-f", name]);
        if bless {
            std::fs::write(expected_path(file), &out.stdout).unwrap();
        }
        let expected = std::fs::read_to_string(expected_path(file))
            .unwrap_or_else(|_| panic!("{name}: no .expected file (run with TAREFAS_BLESS=1)"));
        if out.code != 2 || out.stdout != expected {
            failures.push(format!(
                "{name}: exit {} (want 2)\n--- got\n{}--- want\n{expected}",
                out.code, out.stdout
            ));
            continue;
        }
        // Every line names where the problem is: a path into the file, or the file itself.
        for line in out.lines() {
            let (path, problem) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("{name}: {line:?} is not `path: problem`"));
            assert!(!path.is_empty() && !problem.is_empty(), "{name}: {line:?}");
            assert!(
                path == name
                    || path
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_.[]-".contains(c)),
                "{name}: {path:?} is not a path"
            );
        }
        // --json says the same.
        let json = tarefas(&["task", "validate", "-f", name, "--json"]);
        assert_eq!(json.code, 2, "{name}: {json:?}");
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        assert_eq!(v["ok"], false, "{name}");
        assert_eq!(
            v["problems"].as_array().unwrap().len(),
            out.lines().len(),
            "{name}"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn task_create_refuses_every_invalid_file_and_creates_nothing() {
    let db = TestDb::new();
    assert_eq!(db.tarefas(&["account", "add", "acme"]).code, 0);
    for file in fixtures() {
        let name = file.to_str().unwrap();
        let out = db.tarefas(&["task", "create", "-f", name, "--account", "acme"]);
        let expected = std::fs::read_to_string(expected_path(&file)).unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (2, expected.as_str()),
            "{name}"
        );
    }
    assert_eq!(db.query_texts("SELECT count(*)::text FROM tasks"), ["0"]);
}

#[test]
fn huge_files_are_refused_before_they_are_parsed() {
    let max = tarefas_core::task::MAX_FILE_BYTES;
    // Valid YAML all the way (a comment), so only the size can be the problem.
    let huge = format!(
        "name: X\ntable: chats\naction: {{chat: close}}\n#{}\n",
        "x".repeat(max)
    );
    let file = temp_file(&huge, ".yaml");
    let name = file.to_str().unwrap();
    let out = tarefas(&["task", "validate", "-f", name]);
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(
        out.stdout,
        format!(
            "{name}: the file is {} bytes; a task file may be at most {max}\n",
            max + 1
        )
    );
    let out = tarefas_with_stdin(&["task", "validate", "-f", "-"], &huge);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.starts_with("-: the file is"), "{out:?}");
    // Just under the limit it is read (and this one is valid).
    let fits = format!(
        "name: X\ntable: chats\naction: {{chat: close}}\n#{}\n",
        "x".repeat(max - 60)
    );
    let out = tarefas_with_stdin(&["task", "validate", "-f", "-"], &fits);
    assert_eq!((out.code, out.stdout.as_str()), (0, "ok\n"), "{out:?}");
}
