//! The review side of the `fundus` binary against the real stack: accounts
//! (`admin user-*`), the audit trail (`admin audit`), and reviewed outcomes
//! exported as labels (`labels export`) that `fundus train` reads as they are.

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::json;
use tests::reading::ReviewClient;
use tests::{Harness, Stack, run_ok};

fn fundus(h: &Harness, args: &[&str]) -> Command {
    h.command(env!("CARGO_BIN_EXE_fundus"), args)
}

/// Runs a command that must fail; returns what it printed.
fn run_err(c: &mut Command) -> String {
    let out = c.output().expect("run");
    assert!(!out.status.success(), "{:?} should have failed", c.get_args().collect::<Vec<_>>());
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn col_of(header: &[String], name: &str) -> usize {
    header.iter().position(|h| h == name).expect("column")
}

fn stdout(c: &mut Command) -> String {
    let out = c.output().expect("run");
    assert!(out.status.success(), "{:?}: {}", c.get_args().collect::<Vec<_>>(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn accounts_are_created_listed_reset_and_disabled_from_the_command_line() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    run_ok(&mut fundus(&h, &["admin", "site-create", "clinic-a"]));
    // Bad input is refused with a message, and leaves no account behind.
    let e = run_err(&mut fundus(&h, &["admin", "user-create", "--name", "ann", "--role", "boss", "--site", "clinic-a"]));
    assert!(e.contains("--role must be grader, senior or admin"), "{e}");
    let e = run_err(&mut fundus(&h, &["admin", "user-create", "--name", "ann", "--role", "grader"]));
    assert!(e.contains("needs at least one --site"), "{e}");
    let e = run_err(&mut fundus(&h, &["admin", "user-create", "--name", "ann", "--role", "grader", "--site", "nowhere"]));
    assert!(e.contains("no such site"), "{e}");
    let e = run_err(&mut fundus(&h, &["admin", "user-create", "--name", "Ann Smith", "--role", "grader", "--site", "clinic-a"]));
    assert!(e.contains("invalid user name"), "{e}");
    let mut c = fundus(&h, &["admin", "user-create", "--name", "ann", "--role", "grader", "--site", "clinic-a", "--password-stdin"]);
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"short\n").expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("at least 12 characters"));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&h.pool).await.expect("count");
    assert_eq!(n, 0, "no account from refused input");

    // A generated password, printed once, opens a session.
    let pw = stdout(&mut fundus(&h, &["admin", "user-create", "--name", "ann", "--role", "grader", "--site", "clinic-a"]));
    assert_eq!(pw.len(), 24, "{pw}");
    let e = run_err(&mut fundus(&h, &["admin", "user-create", "--name", "ann", "--role", "grader", "--site", "clinic-a"]));
    assert!(e.contains("already exists"), "{e}");
    let session = h.sign_in("ann", &pw).await;
    let list = stdout(&mut fundus(&h, &["admin", "user-list"]));
    assert!(list.lines().any(|l| l.starts_with("ann\tgrader\tclinic-a\t") && l.ends_with("\t-")), "{list}");
    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE name = 'ann'").fetch_one(&h.pool).await.expect("hash");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(&pw));

    // A new password ends the old sessions; the old password stops working.
    let pw2 = stdout(&mut fundus(&h, &["admin", "user-password", "--name", "ann"]));
    assert_ne!(pw, pw2);
    assert_eq!(session.get("/v1/review/session").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(ReviewClient::new(&h.base).log_in("ann", &pw).await.0, StatusCode::UNAUTHORIZED);
    let session = h.sign_in("ann", &pw2).await;
    run_ok(&mut fundus(&h, &["admin", "user-disable", "--name", "ann"]));
    assert_eq!(session.get("/v1/review/session").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(ReviewClient::new(&h.base).log_in("ann", &pw2).await.0, StatusCode::UNAUTHORIZED);
    let e = run_err(&mut fundus(&h, &["admin", "user-disable", "--name", "ann"]));
    assert!(e.contains("not found"), "{e}");

    // The audit trail, whole and by actor; no password anywhere in it.
    let audit = stdout(&mut fundus(&h, &["admin", "audit"]));
    for action in ["user.create", "login", "user.password", "user.disable", "login.failed"] {
        assert!(audit.contains(&format!("\t{action}\t")), "{action} missing:\n{audit}");
    }
    assert!(!audit.contains(&pw) && !audit.contains(&pw2), "a password reached the audit trail");
    let ann = stdout(&mut fundus(&h, &["admin", "audit", "--actor", "ann"]));
    assert!(ann.lines().skip(1).all(|l| l.split('\t').nth(1) == Some("ann")), "{ann}");
    assert!(ann.contains("\tlogin\t") && ann.contains("\tlogin.failed\t"), "{ann}");
    let e = run_err(&mut fundus(&h, &["admin", "audit", "--since", "yesterday"]));
    assert!(e.contains("expected RFC 3339"), "{e}");
    let none = stdout(&mut fundus(&h, &["admin", "audit", "--since", "2999-01-01"]));
    assert_eq!(none.lines().count(), 1, "only the header: {none}");
}

#[tokio::test]
async fn reviewed_outcomes_export_as_labels_that_train_a_model() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    // Threshold 1 and a QA rate of 1: every photo is a blinded QA read, so the
    // grader's word is final whatever it is.
    let images = h.scored("clinic-a", 36, 1.0, 1.0).await;
    let grader = h.sign_in("reader", &h.reader("reader", "grader", &["clinic-a"]).await).await;
    let mut want = [0usize; 3];
    for (i, image) in images.iter().enumerate() {
        let item = h.item_of(*image).await;
        let (status, _) = grader.claim(item).await;
        assert_eq!(status, StatusCode::OK);
        let decision = match i % 3 {
            0 => json!({ "decision": "referable", "cdr": 0.8 }),
            1 => json!({ "decision": "not_referable" }),
            _ => json!({ "decision": "ungradable", "ungradable_action": "retake" }),
        };
        want[i % 3] += 1;
        let (status, out) = grader.decide(item, decision).await;
        assert_eq!((status, out["state"].as_str()), (StatusCode::OK, Some("decided")), "{out}");
    }
    let out = tests::scratch_dir("labels");
    let text = run_ok(&mut fundus(&h, &["labels", "export", "--out", out.to_str().expect("path")]));
    assert!(text.contains(&format!("wrote 36 photos ({} referable, {} not referable, {} ungradable)", want[0], want[1], want[2])), "{text}");
    let mut r = csv::Reader::from_path(out.join("labels.csv")).expect("labels.csv");
    let header: Vec<String> = r.headers().expect("header").iter().map(str::to_owned).collect();
    for col in ["path", "label", "gradable", "patient", "eye", "source", "decided_at", "decided_by_role"] {
        assert!(header.iter().any(|h| h == col), "{col} missing from {header:?}");
    }
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
    assert_eq!(rows.len(), 36);
    let mut patients: Vec<&str> = rows.iter().map(|r| r.get(col_of(&header, "patient")).expect("patient")).collect();
    patients.sort_unstable();
    patients.dedup();
    assert_eq!(patients.len(), 18, "one pseudonym per patient (two eyes each)");
    let col = |name: &str| header.iter().position(|h| h == name).expect("column");
    for row in &rows {
        let photo = out.join(&row[col("path")]);
        let bytes = std::fs::read(&photo).unwrap_or_else(|e| panic!("{}: {e}", photo.display()));
        assert_eq!(&bytes[..2], b"\xFF\xD8", "the stored photo itself");
        // Patients appear as a pseudonym, never as their reference.
        assert!(!row[col("patient")].starts_with("P-"), "{:?}", &row[col("patient")]);
        assert_eq!(&row[col("decided_by_role")], "grader");
        match &row[col("label")] {
            "" => assert_eq!(&row[col("gradable")], "0", "ungradable outcomes are gradability labels"),
            "0" | "1" => assert_eq!(&row[col("gradable")], "1"),
            other => panic!("label {other:?}"),
        }
        // The reader's cup-to-disc ratio goes with the label, where one was given.
        assert_eq!(&row[col("cdr")], if &row[col("label")] == "1" { "0.80" } else { "" }, "{row:?}");
    }
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'labels.export'").fetch_one(&h.pool).await.expect("audit");
    assert_eq!(audited, 1);
    let later = tests::scratch_dir("labels-later");
    let text = run_ok(&mut fundus(&h, &["labels", "export", "--out", later.to_str().expect("path"), "--since", "2999-01-01"]));
    assert!(text.contains("wrote 0 photos"), "{text}");

    // `fundus train` reads the export as it is.
    let model = tests::scratch_dir("trained-from-reviews");
    let mut train = fundus(&h, &[
        "train", "--data", out.to_str().expect("path"), "--out", model.to_str().expect("path"),
        "--epochs", "1", "--size", "64", "--batch-size", "8", "--no-progress",
    ]);
    train.env_remove("FUNDUS_MLFLOW_URI");
    let text = run_ok(&mut train);
    let card: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(model.join("model_card.json")).expect("model card")).expect("json");
    assert!(card["threshold"].as_f64().is_some(), "{card}\n{text}");
    // The readers' cup-to-disc ratios were fitted beside their labels.
    assert_eq!(card["train"]["findings"], json!(["cdr"]), "{card}\n{text}");
}
