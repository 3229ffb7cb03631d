//! The queue protocol against the real Postgres: priority and SKIP LOCKED
//! claims, holder-checked completion, lease expiry, dead letter, release and
//! backoff.

use db::queue::{self, Claimed, Outcome};
use tests::{Harness, Stack, fixtures};
use uuid::Uuid;

async fn photos(h: &Harness, n: usize) -> Vec<Uuid> {
    let token = h.device("q").await;
    let study = h.study(&token).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(800, 600, 70 + i as u64), "image/jpeg")).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().expect("id").parse().expect("uuid"));
    }
    ids
}

async fn version(h: &Harness) -> Uuid {
    queue::model_version(&h.pool, "m", "1", None, "file:///m", 0.5, &serde_json::json!({}), "d1").await.expect("model version")
}

fn outcome(v: Uuid) -> Outcome {
    Outcome {
        model_version_id: v,
        glaucoma: 0.9,
        gradable: 0.9,
        label: "referable",
        heatmap_key: None,
        review: Some("referable"),
        qa_rate: 0.1,
        qa_sampled: false,
        threshold: 0.5,
        gradable_threshold: 0.5,
        uncertainty_band: 0.05,
    }
}

async fn expire(h: &Harness, job: &Claimed) {
    sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1").bind(job.id).execute(&h.pool).await.expect("expire");
}

async fn state(h: &Harness, job: &Claimed) -> (String, i32) {
    sqlx::query_as("SELECT state, attempts FROM jobs WHERE id = $1").bind(job.id).fetch_one(&h.pool).await.expect("job")
}

#[tokio::test]
async fn concurrent_claims_are_disjoint_and_priority_first() {
    let h = Harness::start(&Stack::shared()).await;
    let ids = photos(&h, 4).await;
    sqlx::query("UPDATE jobs SET priority = 0 WHERE image_id <> $1").bind(ids[2]).execute(&h.pool).await.expect("priority");
    let (a, b) = tokio::join!(queue::claim(&h.pool, "a", 2, 30.0), queue::claim(&h.pool, "b", 2, 30.0));
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    assert_eq!(a.len() + b.len(), 4);
    let mut all: Vec<i64> = a.iter().chain(&b).map(|j| j.id).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 4, "a job was claimed twice");
    assert!(a.iter().chain(&b).any(|j| j.image_id == ids[2] && j.priority == 100));
    let first = if a.iter().any(|j| j.image_id == ids[2]) { &a } else { &b };
    assert_eq!(first[0].image_id, ids[2], "the high-priority job comes first in its claim");
    assert!(queue::claim(&h.pool, "c", 10, 30.0).await.expect("claim").is_empty());
}

#[tokio::test]
async fn only_the_holder_finishes_and_a_result_is_written_once() {
    let h = Harness::start(&Stack::shared()).await;
    photos(&h, 1).await;
    let v = version(&h).await;
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    assert!(!queue::finish(&h.pool, &job, "intruder", &outcome(v)).await.expect("finish"), "another worker finished it");
    let stale = Claimed { attempts: job.attempts + 1, ..job.clone() };
    assert!(!queue::finish(&h.pool, &stale, "a", &outcome(v)).await.expect("finish"), "a wrong attempt finished it");
    assert_eq!(h.count("results").await, 0);
    assert!(queue::finish(&h.pool, &job, "a", &outcome(v)).await.expect("finish"));
    assert!(!queue::finish(&h.pool, &job, "a", &outcome(v)).await.expect("finish"), "finished twice");
    assert_eq!((h.count("results").await, h.count("review_items").await), (1, 1));
    assert_eq!(state(&h, &job).await, ("done".into(), 1));
}

/// A lease that ran out while the database was down may be renewed by its
/// holder for a lease after the database starts: the outage costs no attempt.
/// One transaction for a whole scored batch: only the jobs this worker
/// holds are finished, a result already written is not written twice, and
/// each photo gets its own review item and status.
#[tokio::test]
async fn a_batch_is_finished_together_and_only_where_held() {
    let h = Harness::start(&Stack::shared()).await;
    photos(&h, 4).await;
    let v = version(&h).await;
    // One photo already has this model's result: its job was done, then queued again.
    let again = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    assert!(queue::finish(&h.pool, &again, "a", &outcome(v)).await.expect("finish"));
    sqlx::query("UPDATE jobs SET state = 'queued' WHERE id = $1").bind(again.id).execute(&h.pool).await.expect("requeue");
    let jobs = queue::claim(&h.pool, "a", 4, 30.0).await.expect("claim");
    assert_eq!(jobs.len(), 4);
    // Another worker took one of them after its lease ran out.
    let stolen = jobs.iter().find(|j| j.id != again.id).expect("a job").clone();
    expire(&h, &stolen).await;
    assert_eq!(queue::reclaim_expired(&h.pool, 0.0).await.expect("reclaim"), (1, 0));
    assert_eq!(queue::claim(&h.pool, "b", 1, 30.0).await.expect("claim")[0].id, stolen.id);
    let reasons = [Some("referable"), None, Some("qa_sample"), Some("uncertain")];
    let batch: Vec<(Claimed, Outcome)> =
        jobs.iter().zip(reasons).map(|(j, review)| (j.clone(), Outcome { review, heatmap_key: review.map(|r| format!("derived/{r}")), ..outcome(v) })).collect();
    let mut held = queue::finish_many(&h.pool, "a", &batch).await.expect("finish many");
    held.sort();
    let mut want: Vec<i64> = jobs.iter().map(|j| j.id).filter(|&id| id != stolen.id).collect();
    want.sort();
    assert_eq!(held, want, "the stolen job is not a's to finish");
    assert_eq!(state(&h, &stolen).await, ("running".into(), 2));
    assert_eq!(h.count("results").await, 3, "one result per photo finished, the earlier one kept");
    for (job, review) in &batch {
        let status: String = sqlx::query_scalar("SELECT status FROM images WHERE id = $1").bind(job.image_id).fetch_one(&h.pool).await.expect("status");
        let items: Vec<(String, bool, Option<String>)> = sqlx::query_as(
            "SELECT ri.reason, ri.blinded, r.heatmap_key FROM review_items ri JOIN results r ON r.id = ri.result_id WHERE ri.image_id = $1",
        )
        .bind(job.image_id)
        .fetch_all(&h.pool)
        .await
        .expect("items");
        if job.id == stolen.id {
            assert_eq!((status.as_str(), items.len()), ("queued", 0));
        } else if job.id == again.id {
            // The earlier result and its item stand.
            assert_eq!(items.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(), ["referable"]);
        } else {
            let reason = review.review;
            assert_eq!(status, if reason.is_some() { "in_review" } else { "scored" });
            let want: Vec<(String, bool, Option<String>)> =
                reason.map(|r| (r.to_owned(), r == "qa_sample", Some(format!("derived/{r}")))).into_iter().collect();
            assert_eq!(items, want);
        }
    }
    assert!(queue::finish_many(&h.pool, "a", &batch).await.expect("again").is_empty(), "finished twice");
}

#[tokio::test]
async fn leases_that_ran_out_during_an_outage_wait_a_lease_after_the_database_starts() {
    let h = Harness::start(&Stack::shared()).await;
    photos(&h, 1).await;
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    expire(&h, &job).await;
    let up: f64 = sqlx::query_scalar("SELECT extract(epoch FROM now() - pg_postmaster_start_time())::float8").fetch_one(&h.pool).await.expect("uptime");
    // A lease longer than the database has been up: still the holder's.
    assert_eq!(queue::reclaim_expired(&h.pool, up + 3600.0).await.expect("reclaim"), (0, 0));
    assert_eq!(state(&h, &job).await, ("running".into(), 1));
    assert_eq!(queue::heartbeat(&h.pool, "a", &[job.id], 30.0).await.expect("renew"), vec![job.id], "the holder renews it");
    expire(&h, &job).await;
    // A database up for longer than a lease: reclaimed.
    assert_eq!(queue::reclaim_expired(&h.pool, (up - 1.0).max(0.0)).await.expect("reclaim"), (1, 0));
}

#[tokio::test]
async fn expired_leases_go_back_then_dead_letter_on_the_last_attempt() {
    let h = Harness::start(&Stack::shared()).await;
    let ids = photos(&h, 1).await;
    let v = version(&h).await;
    sqlx::query("UPDATE jobs SET max_attempts = 2").execute(&h.pool).await.expect("max attempts");
    let first = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    expire(&h, &first).await;
    assert_eq!(queue::reclaim_expired(&h.pool, 0.0).await.expect("reclaim"), (1, 0));
    assert_eq!(state(&h, &first).await, ("queued".into(), 1));
    let v2 = queue::model_version(&h.pool, "m", "2", None, "file:///m", 0.5, &serde_json::json!({}), "d2").await.expect("v2");
    let second = queue::claim(&h.pool, "b", 1, 30.0).await.expect("claim").remove(0);
    assert_eq!(second.attempts, 2);
    // Claimed again by b: a's completion is refused.
    assert!(!queue::finish(&h.pool, &first, "a", &outcome(v)).await.expect("finish"));
    expire(&h, &second).await;
    assert_eq!(queue::reclaim_expired(&h.pool, 0.0).await.expect("reclaim"), (1, 1));
    let (st, err): (String, Option<String>) =
        sqlx::query_as("SELECT state, last_error FROM jobs WHERE id = $1").bind(second.id).fetch_one(&h.pool).await.expect("job");
    assert_eq!(st, "dead");
    assert!(err.unwrap_or_default().starts_with("lease expired on attempt 2"));
    let status: String = sqlx::query_scalar("SELECT status FROM images WHERE id = $1").bind(ids[0]).fetch_one(&h.pool).await.expect("status");
    assert_eq!(status, "failed");
    let failed = "SELECT count(*) FROM review_items WHERE reason = 'scoring_failed' AND state = 'open'";
    assert_eq!(sqlx::query_scalar::<_, i64>(failed).fetch_one(&h.pool).await.expect("items"), 1, "the dead letter is in the review queue");
    // b, whose lease ran out while it still worked, completes it after all:
    // the unread scoring_failed item goes, the photo's result takes its place.
    assert!(queue::finish(&h.pool, &second, "b", &outcome(v2)).await.expect("finish"));
    assert_eq!(sqlx::query_scalar::<_, i64>(failed).fetch_one(&h.pool).await.expect("items"), 0);
    let status: String = sqlx::query_scalar("SELECT status FROM images WHERE id = $1").bind(ids[0]).fetch_one(&h.pool).await.expect("status");
    assert_eq!(status, "in_review");
    assert_eq!(h.count("results").await, 1);
}

#[tokio::test]
async fn release_costs_no_attempt_and_failure_backs_off() {
    let h = Harness::start(&Stack::shared()).await;
    photos(&h, 1).await;
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    assert_eq!(queue::release(&h.pool, &job, "a", 0.0, false).await.expect("release"), queue::Released::Queued);
    assert_eq!(state(&h, &job).await, ("queued".into(), 0));
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    assert_eq!(queue::fail(&h.pool, &job, "a", 60.0, "corrupt_image: test", false).await.expect("fail"), Some(false));
    assert!(queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").is_empty(), "claimable before its backoff");
    assert_eq!(queue::fail(&h.pool, &job, "a", 0.0, "again", false).await.expect("fail"), None, "failed twice on one claim");
    let held = queue::heartbeat(&h.pool, "a", &[job.id], 30.0).await.expect("heartbeat");
    assert!(held.is_empty(), "a released job still heartbeats");
}

/// A photo that can never be scored (it holds no optic disc, say) is
/// dead-lettered on its first attempt, and a person gets it at once.
#[tokio::test]
async fn an_unscorable_photo_is_dead_lettered_at_once() {
    let h = Harness::start(&Stack::shared()).await;
    photos(&h, 1).await;
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    assert_eq!(queue::fail(&h.pool, &job, "a", 60.0, "no_disc: test", true).await.expect("fail"), Some(true));
    assert_eq!(state(&h, &job).await, ("dead".into(), 1));
    let items: i64 = sqlx::query_scalar("SELECT count(*) FROM review_items WHERE reason = 'scoring_failed'").fetch_one(&h.pool).await.expect("items");
    assert_eq!(items, 1);
}

#[tokio::test]
async fn a_holder_whose_lease_ran_out_completes_if_nobody_claimed_since() {
    let h = Harness::start(&Stack::shared()).await;
    photos(&h, 1).await;
    let v = version(&h).await;
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    expire(&h, &job).await;
    assert_eq!(queue::reclaim_expired(&h.pool, 0.0).await.expect("reclaim"), (1, 0));
    // An outage outlived the lease; the work is done and nobody took the job since.
    assert!(queue::finish(&h.pool, &job, "a", &outcome(v)).await.expect("finish"));
    assert_eq!(state(&h, &job).await, ("done".into(), 1));
    assert!(queue::claim(&h.pool, "b", 1, 30.0).await.expect("claim").is_empty());
}

#[tokio::test]
async fn counted_give_backs_are_capped_and_dead_letter_to_review_but_shutdowns_are_not() {
    let h = Harness::start(&Stack::shared()).await;
    let ids = photos(&h, 1).await;
    // Shutdowns give the job back as often as they like.
    for _ in 0..(queue::MAX_GIVE_BACKS + 5) {
        let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
        assert_eq!(queue::release(&h.pool, &job, "a", 0.0, false).await.expect("release"), queue::Released::Queued);
    }
    // Timeouts and model failures are counted; the last one dead-letters.
    for n in 1..=queue::MAX_GIVE_BACKS {
        let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
        let r = queue::release(&h.pool, &job, "a", 0.0, true).await.expect("release");
        let want = if n == queue::MAX_GIVE_BACKS { queue::Released::Dead } else { queue::Released::Queued };
        assert_eq!(r, want, "give-back {n}");
        assert_eq!(state(&h, &job).await.1, 0, "no attempt spent");
    }
    assert!(queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").is_empty(), "dead, not claimable");
    let (error, status): (Option<String>, String) =
        sqlx::query_as("SELECT j.last_error, i.status FROM jobs j JOIN images i ON i.id = j.image_id WHERE j.image_id = $1")
            .bind(ids[0])
            .fetch_one(&h.pool)
            .await
            .expect("job");
    assert!(error.as_deref().unwrap_or("").starts_with("given_back: 10 times"), "{error:?}");
    assert_eq!(status, "failed");
    let reason: String = sqlx::query_scalar("SELECT reason FROM review_items WHERE image_id = $1").bind(ids[0]).fetch_one(&h.pool).await.expect("item");
    assert_eq!(reason, "scoring_failed");
    // A retry starts the count afresh.
    assert_eq!(queue::retry_dead(&h.pool, &[], true, "test").await.expect("retry").len(), 1);
    let job = queue::claim(&h.pool, "a", 1, 30.0).await.expect("claim").remove(0);
    assert_eq!(queue::release(&h.pool, &job, "a", 0.0, true).await.expect("release"), queue::Released::Queued);
}

#[tokio::test]
async fn a_model_version_is_one_model_a_changed_one_is_refused_not_merged() {
    let h = Harness::start(&Stack::shared()).await;
    let prep = serde_json::json!({ "size": 128 });
    let v = queue::model_version(&h.pool, "m", "7", None, "file:///m", 0.5, &prep, "aa").await.expect("first");
    // Loading the same model again is the same row.
    assert_eq!(queue::model_version(&h.pool, "m", "7", None, "file:///m", 0.5, &prep, "aa").await.expect("again"), v);
    // Other weights, another threshold or other preprocessing under the same (name, version): refused.
    for (threshold, prep2, digest) in [(0.5, prep.clone(), "bb"), (0.6, prep.clone(), "aa"), (0.5, serde_json::json!({ "size": 224 }), "aa")] {
        let e = queue::model_version(&h.pool, "m", "7", None, "file:///m", threshold, &prep2, digest).await.expect_err("refused");
        assert!(matches!(e, db::Error::Conflict(ref m) if m.contains("refusing to merge")), "{e}");
    }
    assert_eq!(h.count("model_versions").await, 1);
}
