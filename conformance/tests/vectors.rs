//! Runs every case of every known vector file and prints a tally per file.
//!
//! A custom harness (no libtest) so the output is one readable table. A known file that is
//! missing, or a file in the directory that no runner knows, fails the run: no case is ever
//! skipped silently.

use std::collections::BTreeSet;
use std::process::ExitCode;

use conformance::{load, vectors_dir, KNOWN_FILES, VECTORS_DIR_ENV};

fn main() -> ExitCode {
    let dir = vectors_dir();
    println!(
        "vectors from {} (override with {VECTORS_DIR_ENV})",
        dir.display()
    );

    let mut passed = 0usize;
    let mut failed = 0usize;
    let mut problems = Vec::new();

    for (file, runner) in KNOWN_FILES {
        let path = dir.join(file);
        if !path.exists() {
            println!("  {file:<28} MISSING");
            problems.push(format!("{file}: not found in {}", dir.display()));
            continue;
        }
        let parsed = match load(&path) {
            Ok(parsed) => parsed,
            Err(e) => {
                println!("  {file:<28} UNREADABLE");
                problems.push(e);
                continue;
            }
        };
        let outcomes = runner(&parsed);
        let ok = outcomes.iter().filter(|o| o.result.is_ok()).count();
        println!("  {file:<28} {ok}/{} cases passed", outcomes.len());
        for outcome in &outcomes {
            if let Err(why) = &outcome.result {
                println!("    FAIL {}: {why}", outcome.name);
            }
        }
        passed += ok;
        failed += outcomes.len() - ok;
    }

    let known: BTreeSet<&str> = KNOWN_FILES.iter().map(|(f, _)| *f).collect();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut unknown: Vec<String> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".json") && !known.contains(n.as_str()))
            .collect();
        unknown.sort();
        for name in unknown {
            println!("  {name:<28} NO RUNNER (not run)");
            problems.push(format!("{name}: no runner knows this file"));
        }
    }

    for problem in &problems {
        println!("problem: {problem}");
    }
    // A missing or unknown file counts as a failure in the closing tally too.
    let failed = failed + problems.len();
    println!("vectors: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
