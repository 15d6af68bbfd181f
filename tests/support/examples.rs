//! Builds the repository's examples from inside a test, with the test's own profile, features
//! and target directory, so that tests run what `cargo build --example` produces.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `<target>/<profile>` of the running test binary.
fn profile_dir() -> PathBuf {
    // A test runs as <target>/<profile>/deps/<name>-<hash>.
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned()
}

/// Builds the examples `names` with the root features this test was built with (plus
/// `extra`), and returns the directory they were written to (`<target>/<profile>/examples`).
///
/// # Panics
/// When the build fails; the panic shows cargo's output.
pub fn build(names: &[&str], extra: &[&str]) -> PathBuf {
    let profile_dir = profile_dir();
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    // The same features as this test, `default` included, so that Cargo reuses what it built
    // for the test instead of building the dependencies again with other features.
    let mut features: Vec<&str> = extra.to_vec();
    for (on, feature) in [
        (cfg!(feature = "memory"), "memory"),
        (cfg!(feature = "redis"), "redis"),
        (cfg!(feature = "dynamic"), "dynamic"),
    ] {
        if on && !features.contains(&feature) {
            features.push(feature);
        }
    }
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("build")
        .arg("--target-dir")
        .arg(target_dir)
        .args(["--profile", profile]);
    if !cfg!(feature = "default") {
        cmd.arg("--no-default-features");
    }
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    for name in names {
        cmd.args(["--example", name]);
    }
    let out = cmd.output().expect("run cargo build for the examples");
    assert!(
        out.status.success(),
        "building examples {names:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.join("examples")
}

/// The path of the executable example `name`, built on first use.
pub fn binary(name: &str) -> PathBuf {
    let path = build(&[name], &[]).join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} was not built", path.display());
    path
}
