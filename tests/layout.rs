//! The layering of the source tree (DESIGN.md section 11), held by reading the source: the
//! store sits below everything that serves, so it names no transport crate and no module above
//! it. A line that does fails here with its file and number.

use crate::common::root;
use std::path::Path;

/// What code below the transports must not name.
const ABOVE: &[&str] = &[
    "tonic::",
    "axum::",
    "hyper::",
    "dicom_ul::",
    "prost::",
    "crate::service",
    "crate::web",
    "crate::dimse",
    "crate::cli",
];

fn rust_files(dir: &Path, into: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

/// Every (file:line, text) in `folder` that names something in `forbidden`, comments aside.
fn offending_lines(folder: &str, forbidden: &[&str]) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join(folder), &mut files);
    assert!(!files.is_empty(), "no Rust files under {folder}");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|f| code.contains(f)) {
                found.push(format!(
                    "{}:{}: {}",
                    file.strip_prefix(root()).unwrap().display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn the_store_names_no_transport_and_nothing_above_it() {
    let found = offending_lines("src/store", ABOVE);
    assert!(
        found.is_empty(),
        "the store reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_domain_names_no_transport_and_nothing_above_it() {
    for folder in [
        "src/dicom",
        "src/imaging",
        "src/inference",
        "src/placement",
        "src/priors",
        "src/analysis",
        "src/draft",
        "src/labeler",
        "src/qa",
    ] {
        let found = offending_lines(folder, ABOVE);
        assert!(
            found.is_empty(),
            "{folder} reaches up:\n{}",
            found.join("\n")
        );
    }
}
