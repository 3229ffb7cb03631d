//! Every `fundus` flag the deployment files under `deploy/` pass is one the
//! binary accepts: each appears in `fundus <subcommand> --help`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace").join("deploy");
    let mut files = Vec::new();
    for dir in ["marathon", "metronome"] {
        for e in std::fs::read_dir(root.join(dir)).expect("deploy folder").flatten() {
            if e.path().extension().is_some_and(|x| x == "json") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

#[test]
fn the_flags_in_the_deploy_files_are_flags_fundus_accepts() {
    let mut checked = 0;
    for p in deploy_files() {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("json");
        let Some(cmd) = v["cmd"].as_str().or(v["run"]["cmd"].as_str()) else { continue };
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| w.ends_with("/fundus") || *w == "fundus") else { continue };
        let sub = words[at + 1];
        let help = Command::new(env!("CARGO_BIN_EXE_fundus")).args([sub, "--help"]).output().expect("fundus --help");
        assert!(help.status.success(), "{}: `fundus {sub}` is not a subcommand", p.display());
        let help = String::from_utf8_lossy(&help.stdout).into_owned();
        // Flags after `--` belong to the worker tasks: check them against `fundus worker`.
        let (own, worker) = match words.iter().position(|w| *w == "--") {
            Some(d) => (&words[at + 2..d], &words[d + 1..]),
            None => (&words[at + 2..], &[][..]),
        };
        let worker_help = String::from_utf8_lossy(&Command::new(env!("CARGO_BIN_EXE_fundus")).args(["worker", "--help"]).output().expect("help").stdout).into_owned();
        for (flags, help) in [(own, &help), (worker, &worker_help)] {
            for flag in flags.iter().filter(|w| w.starts_with("--")) {
                let name = flag.split('=').next().unwrap_or(flag);
                assert!(help.contains(&format!("{name} ")) || help.contains(&format!("{name}\n")), "{}: {name} is not a flag of fundus {sub}", p.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 10, "{checked} flags checked");
}
