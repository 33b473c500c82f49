//! The layering of the source tree (DESIGN.md section 11), held by reading the source: the
//! application core (`app/`) sits below every way in, and the store and the domain below it,
//! so none of them names a transport crate or a module above it; the reading room calls the
//! core, never the gRPC API; and no two modules depend on each other (`scripts/module-deps`).
//! A line that breaks a rule fails here with its file and number.

use crate::common::root;
use std::path::Path;

/// What code below the transports must not name.
const ABOVE: &[&str] = &[
    "tonic::",
    "axum::",
    "hyper::",
    "dicom_ul::",
    "prost::",
    "crate::server",
    "crate::grpc",
    "crate::web",
    "crate::dimse",
    "crate::cli",
];

/// What the store and the domain must not name besides: the core above them.
const CORE: &str = "crate::app";

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
    offending_lines_except(folder, forbidden, &[])
}

/// The same, but for the `allowed` (file, text) pairs.
fn offending_lines_except(
    folder: &str,
    forbidden: &[&str],
    allowed: &[(&str, &str)],
) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&root().join(folder), &mut files);
    assert!(!files.is_empty(), "no Rust files under {folder}");
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let relative = file.strip_prefix(root()).unwrap().to_string_lossy();
            let named = forbidden.iter().find(|f| code.contains(**f));
            if named.is_some_and(|f| !allowed.contains(&(relative.as_ref(), *f))) {
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
    let forbidden: Vec<&str> = ABOVE.iter().copied().chain([CORE]).collect();
    // The frozen protobuf messages that stores of earlier versions hold, decoded to migrate them.
    let found = offending_lines_except(
        "src/store",
        &forbidden,
        &[("src/store/legacy.rs", "prost::")],
    );
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
        "src/segmentation",
        "src/validation",
        "src/priors",
        "src/analysis",
        "src/draft",
        "src/labeler",
        "src/qa",
    ] {
        let forbidden: Vec<&str> = ABOVE.iter().copied().chain([CORE]).collect();
        let found = offending_lines(folder, &forbidden);
        assert!(
            found.is_empty(),
            "{folder} reaches up:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn the_core_names_no_transport_and_no_way_in() {
    let found = offending_lines("src/app", ABOVE);
    assert!(
        found.is_empty(),
        "the core reaches up:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_reading_room_calls_the_core_never_the_grpc_api() {
    let found = offending_lines("src/web", &["crate::grpc", "tonic::", "prost::"]);
    assert!(
        found.is_empty(),
        "the reading room speaks gRPC:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_two_modules_depend_on_each_other() {
    let output = std::process::Command::new("python3")
        .arg(root().join("scripts/module-deps"))
        .arg("--check")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn no_function_in_the_service_layers_is_over_80_lines() {
    let output = std::process::Command::new("python3")
        .arg(root().join("scripts/function-lengths"))
        .args(["--check", "80"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "split these (a long function holds several jobs):\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn no_file_in_the_service_layers_is_over_500_lines() {
    let mut long = Vec::new();
    for folder in [
        "src/app",
        "src/grpc",
        "src/web",
        "src/dimse",
        "src/store",
        "src/server",
    ] {
        let mut files = Vec::new();
        rust_files(&root().join(folder), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            // The code, its unit tests aside.
            let code = text.split("\n#[cfg(test)]").next().unwrap_or("");
            let lines = code.lines().count();
            if lines > 500 {
                long.push(format!("{}: {lines}", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "split these files by job:\n{}",
        long.join("\n")
    );
}
