//! The review UI in a real headless Chromium: log in, the worklist, an item
//! with its heatmap, deciding with the keyboard alone and landing on the next
//! item, a blinded QA read, and a senior's arbitration. Screenshots of each
//! page are saved under the test's scratch folder.

use tests::browser::Browser;
use tests::{Harness, Stack};

async fn log_in(b: &Browser, base: &str, name: &str, password: &str) {
    b.goto(&format!("{base}/review/login")).await;
    b.type_into("#username", name).await;
    b.type_into("#password", password).await;
    b.click("#login").await;
    b.find("#worklist").await;
}

async fn item_of_url(b: &Browser) -> String {
    let url = b.url().await;
    url.rsplit('/').next().unwrap_or("").to_owned()
}

async fn final_of(h: &Harness, item: &str) -> (String, Option<String>, Option<String>) {
    sqlx::query_as("SELECT state, final_decision, decided_role FROM review_items WHERE id = $1::uuid")
        .bind(item)
        .fetch_one(&h.pool)
        .await
        .expect("item")
}

#[tokio::test]
async fn a_grader_and_a_senior_work_the_queue_in_a_browser() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    // Two referable photos (threshold 0), then one blinded QA sample (threshold 1, rate 1).
    h.scored("site-a", 2, 0.0, 0.0).await;
    h.scored("site-a", 1, 1.0, 1.0).await;
    let grader_pw = h.reader("grace", "grader", &["site-a"]).await;
    let senior_pw = h.reader("sam", "senior", &["site-a"]).await;
    let shots = tests::scratch_dir("browser-shots");
    let b = Browser::start(&shots).await;

    log_in(&b, &h.base, "grace", &grader_pw).await;
    assert_eq!(b.text("#count-referable").await, "2");
    assert_eq!(b.text("#count-qa_sample").await, "1");
    b.screenshot("1-worklist").await;

    // Open the first item: the photo, the model's output, both eyes.
    b.click("#worklist a.open").await;
    b.wait_for("document.getElementById('photo').dataset.loaded === 'preview'").await;
    b.find("#model-output").await;
    assert!(b.text("#model-label").await.contains("referable"));
    // Both eyes of this study, and the same patient's earlier study (the QA photo).
    b.wait_for("document.querySelector('.study .strip').querySelectorAll('img.thumb').length === 2").await;
    b.wait_for("document.querySelectorAll('.study .strip').length === 2").await;
    let first = item_of_url(&b).await;
    b.screenshot("2-item").await;

    // The heatmap toggles with the keyboard and sits over the photo.
    b.keys("h").await;
    b.wait_for("!document.getElementById('heatmap').classList.contains('hidden') && document.getElementById('heatmap').naturalWidth > 0").await;
    // Placed where the worker said the model's square lies (the heatmap's own box).
    b.wait_for("document.getElementById('heatmap').dataset.own === '1' && document.getElementById('heatmap').style.width.endsWith('%')").await;
    b.keys("++").await;
    b.wait_for("parseFloat(document.getElementById('viewport').dataset.scale) > 1.5").await;
    b.screenshot("3-heatmap-zoomed").await;
    b.keys("h0").await;
    b.wait_for("document.getElementById('heatmap').classList.contains('hidden')").await;

    // Decide with the keyboard alone: r, Enter, and the next item opens.
    b.keys("r\u{E007}").await;
    b.wait_for(&format!("location.pathname.startsWith('/review/items/') && !location.pathname.endsWith('{first}')")).await;
    assert_eq!(final_of(&h, &first).await, ("decided".into(), Some("referable".into()), Some("grader".into())));
    let second = item_of_url(&b).await;
    b.find("#model-output").await;

    // Overrule the model on the second: it goes to a senior.
    b.keys("n\u{E007}").await;
    b.wait_for(&format!("location.pathname.startsWith('/review/items/') && !location.pathname.endsWith('{second}')")).await;
    assert_eq!(final_of(&h, &second).await.0, "arbitration");

    // The third is the QA sample: blinded, no model output and no heatmap.
    let third = item_of_url(&b).await;
    b.find("#blinded").await;
    assert!(b.try_find("#model-output").await.is_none(), "a blinded read shows no model output");
    assert!(b.try_find("#heatmap").await.is_none(), "a blinded read shows no heatmap");
    b.wait_for("document.getElementById('photo').dataset.loaded === 'preview'").await;
    b.screenshot("4-blinded-qa").await;
    b.keys("n\u{E007}").await;
    b.wait_for("location.search.includes('empty=1')").await;
    assert_eq!(final_of(&h, &third).await.1.as_deref(), Some("not_referable"));
    b.find("#worklist-empty").await;
    b.screenshot("5-worklist-done").await;

    // The senior arbitrates: j takes the next item, r and Enter decide it.
    b.click("#logout").await;
    b.find("#username").await;
    log_in(&b, &h.base, "sam", &senior_pw).await;
    assert_eq!(b.text("#count-arbitration").await, "1");
    b.keys("j").await;
    b.wait_for(&format!("location.pathname.endsWith('{second}')")).await;
    assert!(b.text("#reads").await.contains("grace"), "the senior sees the grader's read");
    b.wait_for("document.getElementById('photo').dataset.loaded === 'preview'").await;
    b.screenshot("6-arbitration").await;
    b.keys("r\u{E007}").await;
    b.wait_for("location.search.includes('empty=1')").await;
    assert_eq!(final_of(&h, &second).await, ("decided".into(), Some("referable".into()), Some("senior".into())));

    b.goto(&format!("{}/review/monitoring", h.base)).await;
    b.find("#models").await;
    b.screenshot("7-monitoring").await;
    for name in ["1-worklist", "2-item", "3-heatmap-zoomed", "4-blinded-qa", "5-worklist-done", "6-arbitration", "7-monitoring"] {
        let png = std::fs::read(shots.join(format!("{name}.png"))).expect("screenshot");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 5_000, "{name} is a real screenshot");
    }
    eprintln!("screenshots in {}", shots.display());
    b.quit().await;
}
