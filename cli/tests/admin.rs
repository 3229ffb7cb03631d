//! The operator's commands, run as the real binary against the real stack.

use std::process::{Command, Output};

use tests::{Harness, Stack};

fn fundus(database_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fundus"))
        .args(args)
        .env("FUNDUS_DATABASE_URL", database_url)
        .env("FUNDUS_LOG", "warn")
        .output()
        .expect("running fundus")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn sites_and_device_tokens_are_managed_from_the_command_line() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let url = h.config.db.database_url.expose().to_owned();

    let out = fundus(&url, &["admin", "site-create", "north-camp"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again = fundus(&url, &["admin", "site-create", "north-camp"]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("already exists"), "{}", text(&again.stderr));
    let bad = fundus(&url, &["admin", "site-create", "North Camp!"]);
    assert!(!bad.status.success());
    assert!(text(&bad.stderr).contains("invalid site name"), "{}", text(&bad.stderr));

    let out = fundus(&url, &["admin", "device-create", "--site", "north-camp", "--name", "phone-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert!(token.starts_with("fdt_") && token.len() == 47, "{token}");
    // The token works against the API, and only its hash is stored.
    let study = h.study(&token).await;
    assert!(!study.is_nil());
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE token_hash = $1")
        .bind(ingest::auth::hash_token(&token).to_vec())
        .fetch_one(&h.pool)
        .await
        .expect("query");
    assert_eq!(stored, 1);

    let missing = fundus(&url, &["admin", "device-create", "--site", "nowhere", "--name", "p"]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("nowhere"), "{}", text(&missing.stderr));

    let list = fundus(&url, &["admin", "device-list"]);
    assert!(text(&list.stdout).contains("north-camp\tphone-1"), "{}", text(&list.stdout));
    let out = fundus(&url, &["admin", "device-revoke", "--site", "north-camp", "--name", "phone-1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, _) = h.get(Some(&token), "/v1/images/00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, reqwest::StatusCode::UNAUTHORIZED);
    let twice = fundus(&url, &["admin", "device-revoke", "--site", "north-camp", "--name", "phone-1"]);
    assert!(!twice.status.success(), "revoking a revoked device must fail");

    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'device.%' OR action = 'site.create'")
        .fetch_one(&h.pool)
        .await
        .expect("audit");
    assert_eq!(audit, 3);
}

#[test]
fn bad_configuration_is_a_clear_error_not_a_panic() {
    let out = fundus("not a url", &["migrate"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.starts_with("error:"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_fundus")).args(["synth", "--out", "/tmp/x", "--size", "10x10"]).output().expect("run");
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("each side must be 64 to 16384 pixels"), "{}", text(&out.stderr));
}

/// `--task v1` draws the first synthetic task photo for photo as it was: these
/// digests are those of the photos the binary made before the second task
/// existed (commit 6a92264^), for the same command.
#[test]
fn synth_v1_draws_the_first_task_photo_for_photo_as_it_was() {
    use sha2::Digest;
    let dir = tests::scratch_dir("synth-v1");
    let out = Command::new(env!("CARGO_BIN_EXE_fundus"))
        .args(["synth", "--task", "v1", "--n", "10", "--seed", "9", "--size", "800x600", "--out"])
        .arg(&dir)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let digest = |name: &str| hex::encode(sha2::Sha256::digest(std::fs::read(dir.join(name)).expect("photo")));
    assert_eq!(digest("synth-000000.jpg"), "b232005ffac4413e72fa76db493dea2bc734c0ef0c5d62870840914ac5721464");
    assert_eq!(digest("synth-000009.jpg"), "187f7b5b0969887f33e4f90f98f5980cc99df8ce05aef5e402b225579aac4af4");
    let _ = std::fs::remove_dir_all(&dir);
}
