//! Bounded damage, on the real server, Postgres and Garage: a flood of
//! made-up tokens does not keep a real device from uploading, and 64
//! concurrent maximum-size uploads do not take the server's memory past its
//! configured budget.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tests::{Harness, Stack, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_made_up_tokens_neither_reaches_the_database_nor_stops_a_real_device() {
    let stack = Stack::shared();
    // Lookups may hold two of the pool's eight connections.
    let h = Harness::start_with(&stack, |c| c.guard = ingest::guard::GuardArgs { auth_lookups: 2, ..Default::default() }).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    // The attacker comes from another address (loopback has all of 127/8).
    let attacker = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().expect("address")))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let until = Instant::now() + Duration::from_secs(4);
    let flood: Vec<_> = (0..200)
        .map(|_| {
            let (c, url) = (attacker.clone(), format!("{}/v1/images/{}", h.base, uuid::Uuid::new_v4()));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while Instant::now() < until {
                    let fake = format!("fdt_{}", uuid::Uuid::new_v4().simple());
                    match c.get(&url).bearer_auth(fake).send().await {
                        Ok(r) => seen.push(r.status()),
                        Err(e) => panic!("the server must answer the flood: {e}"),
                    }
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for seed in 0..5 {
        let t = Instant::now();
        let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 900 + seed), "image/jpeg")).await;
        assert_eq!(status, StatusCode::CREATED, "the real device's upload {seed} during the flood: {body}");
        assert!(t.elapsed() < Duration::from_secs(3), "upload {seed} took {:?}", t.elapsed());
    }
    let mut statuses = Vec::new();
    for f in flood {
        statuses.extend(f.await.expect("flood task"));
    }
    let mut by_status = std::collections::BTreeMap::new();
    statuses.iter().for_each(|s| *by_status.entry(s.as_u16()).or_insert(0) += 1);
    let n = |code| by_status.get(&code).copied().unwrap_or(0);
    let (unauthorized, throttled, waited_out) = (n(401), n(429), n(503));
    assert_eq!(unauthorized + throttled + waited_out, statuses.len(), "only 401, 429 and 503 for the flood: {by_status:?}");
    // Each 401 cost a lookup: no more than the minute's budget of failures and
    // the lookups already past the check when it ran out. A 503 is a lookup
    // that waited too long for a connection on this busy machine: it spent no
    // query and no failure, so a few may come on top.
    let budget = ingest::guard::GuardArgs::default().auth_failures_per_minute as usize + 2;
    assert!(unauthorized <= budget, "{by_status:?}: more made-up tokens than {budget} reached the database");
    assert!(waited_out <= 10, "{by_status:?}: lookups waited out");
    assert!(throttled > 1000, "the flood was answered from memory: {throttled} of {}", statuses.len());
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmHWM in kB")
}

/// A valid JPEG padded with comment segments to just under `size` bytes: a
/// maximum-size upload that costs little to decode.
fn padded_jpeg(size: usize) -> Vec<u8> {
    let j = fixtures::jpeg(1024, 768, 31);
    let mut out = j[..2].to_vec();
    let filler = vec![b'x'; 65_533];
    while out.len() + j.len() + 65_537 < size {
        out.extend_from_slice(&[0xFF, 0xFE, 0xFF, 0xFF]);
        out.extend_from_slice(&filler);
    }
    out.extend_from_slice(&j[2..]);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_maximum_uploads_stay_inside_the_buffer_budget() {
    const BUDGET: u64 = 128 << 20;
    let stack = Stack::shared();
    let h = Harness::start_with(&stack, |c| {
        c.max_buffered_bytes = BUDGET;
        // 1.9 GB through loopback on two cores: connections may wait longer than the harness's 2 s.
        c.db.acquire_timeout_secs = 15;
    })
    .await;
    let token = h.device("clinic-a").await;
    let photo = bytes::Bytes::from(padded_jpeg(h.config.max_upload_bytes as usize));
    assert!(photo.len() as u64 > h.config.max_upload_bytes - 100_000);
    let study = h.study(&token).await;
    // Peak RSS from here on; the client shares one copy of the photo.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let before = peak_rss_kib();
    // The same photo 64 times: each body is read whole before it is found
    // to be a retry, so each costs what a new photo costs in memory.
    let url = format!("{}/v1/studies/{study}/images?eye=left", h.base);
    let answers = futures::future::join_all((0..64).map(|_| {
        h.http.post(&url).bearer_auth(&token).header("content-type", "image/jpeg").body(photo.clone()).send()
    }))
    .await;
    let grown_mib = (peak_rss_kib() - before) / 1024;
    let mut created = 0;
    for a in answers {
        let r = match a {
            Ok(r) => r,
            Err(e) => panic!("no answer: {e:?}"),
        };
        match r.status() {
            StatusCode::CREATED | StatusCode::OK => created += 1,
            // Waiting for room has a limit; past it the answer says to retry.
            StatusCode::SERVICE_UNAVAILABLE => {
                let body: serde_json::Value = r.json().await.expect("json");
                assert_eq!(body["code"], "server_busy", "{body}");
            }
            s => panic!("unexpected {s}: {}", r.text().await.unwrap_or_default()),
        }
    }
    assert!(created >= 32, "most uploads are served, one budget's worth at a time: {created} of 64");
    // 64 bodies held at once would be 1.9 GB; the budget is 128 MiB, plus the
    // decode of one photo per core and the allocator's slack.
    let bound = (BUDGET >> 20) + 150;
    assert!(grown_mib < bound, "peak RSS grew by {grown_mib} MiB, over the {bound} MiB bound");
}

/// A budget that is not a whole number of KiB still serves an upload larger
/// than half of it: the upload asks for at most the budget's own permits
/// (it asked for one more and waited out its 10 s, then got 503).
#[tokio::test]
async fn an_upload_larger_than_half_an_odd_budget_is_served() {
    let stack = Stack::shared();
    let h = Harness::start_with(&stack, |c| c.max_buffered_bytes = 1_000_000).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let photo = padded_jpeg(600_000);
    assert!(2 * photo.len() as u64 > 1_000_000);
    let (status, body) = h.send(h.upload(&token, study, photo, "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
