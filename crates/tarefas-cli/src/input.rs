//! Reading a task file named on the command line (`-` is standard input), and printing the
//! problems found in it.

use std::io::Read;

use tarefas_core::task::{Format, MAX_FILE_BYTES};
use tarefas_core::Problems;

/// A task file's text and syntax, or the problem that kept it from being read.
pub fn read_file(path: &str) -> Result<(String, Format), Problems> {
    let mut problems = Problems::default();
    let mut text = String::new();
    let read = if path == "-" {
        std::io::stdin()
            .take(MAX_FILE_BYTES as u64 + 1)
            .read_to_string(&mut text)
            .map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|f| {
            f.take(MAX_FILE_BYTES as u64 + 1)
                .read_to_string(&mut text)
                .map(|_| ())
        })
    };
    if let Err(e) = read {
        let why = match e.kind() {
            std::io::ErrorKind::InvalidData => "the file is not UTF-8 text".to_string(),
            _ => format!("cannot read the file: {e}"),
        };
        problems.push("", why);
        return Err(problems);
    }
    Ok((text, Format::from_path(path)))
}

/// Prints problems one per line, `path: message`; problems about the whole file are
/// prefixed with the file's name instead of a path.
pub fn print_problems(file: &str, problems: &Problems, json: bool) {
    if json {
        let out = serde_json::json!({ "ok": false, "problems": problems.0 });
        println!("{out}");
        return;
    }
    for p in &problems.0 {
        if p.path.is_empty() {
            println!("{file}: {}", p.message);
        } else {
            println!("{p}");
        }
    }
}
