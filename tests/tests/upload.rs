//! The upload API against the real Postgres and Garage: happy paths for each
//! format, idempotent retries, every class of bad input, and authorisation.

use reqwest::StatusCode;
use sha2::Digest as _;
use serde_json::json;
use tests::{Harness, Stack, fixtures};

async fn assert_nothing_stored(h: &Harness) {
    assert_eq!(h.count("images").await, 0, "no image row may be left behind");
    assert_eq!(h.count("jobs").await, 0, "no job row may be left behind");
    assert!(h.objects().await.is_empty(), "no object may be left behind: {:?}", h.objects().await);
}

async fn accepted(h: &Harness, bytes: Vec<u8>, content_type: &str, format: &str) {
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (status, body) = h.send(h.upload(&token, study, bytes.clone(), content_type)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().expect("id");
    assert_eq!(body["status_url"], format!("/v1/images/{id}"));
    assert_eq!(body["quality"]["fov_found"], true, "{body}");

    let (status, state) = h.get(Some(&token), &format!("/v1/images/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["status"], "queued");
    assert_eq!(state["format"], format);
    assert_eq!(state["result"], serde_json::Value::Null);
    let sha = state["sha256"].as_str().expect("sha");
    let kept = fixtures::stored(&bytes);
    assert_eq!(sha, hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&kept)));

    // One object, content-addressed, holding the uploaded photo de-identified.
    let objects = h.objects().await;
    assert_eq!(objects.len(), 1);
    assert!(objects[0].ends_with(&format!("raw/{}/{sha}.{}", &sha[..2], match format {
        "jpeg" => "jpg",
        "png" => "png",
        _ => "dcm",
    })), "{objects:?}");
    let key = objects[0].splitn(2, "raw/").nth(1).map(|k| format!("raw/{k}")).expect("raw key");
    let object = h.store.get(&key).await.expect("object");
    assert_eq!(object.as_ref(), kept.as_slice());
    for secret in fixtures::DICOM_IDENTITY.iter().chain(&fixtures::EXIF_IDENTITY) {
        assert!(bytes.len() < 64 || !object.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} reached the store");
    }
    // The job was enqueued with the image, at phone priority.
    let (jobs, priority): (i64, i16) = sqlx::query_as("SELECT count(*), max(priority) FROM jobs WHERE state = 'queued'")
        .fetch_one(&h.pool)
        .await
        .expect("jobs");
    assert_eq!((jobs, priority), (1, ingest::api::PHONE_PRIORITY));
}

#[tokio::test]
async fn jpeg_upload_is_stored_recorded_and_queued() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    accepted(&h, fixtures::jpeg(1600, 1200, 1), "image/jpeg", "jpeg").await;
}

/// A phone's EXIF (GPS position, camera serial) and a DICOM's patient name,
/// ID and birth date (native pixels, or an encapsulated JPEG) are in the
/// upload and nowhere in the store; a retry of
/// the same upload finds the photo it stored.
#[tokio::test]
async fn identifying_metadata_is_not_stored_and_retries_still_match() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let photos = [
        (fixtures::jpeg_with_exif(1024, 768, 11), "image/jpeg"),
        (fixtures::dicom(800, 640, 12, true), "application/dicom"),
        (fixtures::dicom_jpeg(1024, 768, 13), "application/dicom"),
    ];
    for (bytes, media) in photos {
        let has = |b: &[u8], s: &str| b.windows(s.len()).any(|w| w == s.as_bytes());
        let secrets: Vec<&str> = fixtures::DICOM_IDENTITY.iter().chain(&fixtures::EXIF_IDENTITY).copied().filter(|s| has(&bytes, s)).collect();
        assert!(!secrets.is_empty(), "the fixture carries identity");
        let study = h.study(&token).await;
        let (s1, first) = h.send(h.upload(&token, study, bytes.clone(), media)).await;
        assert_eq!(s1, StatusCode::CREATED, "{first}");
        let (s2, second) = h.send(h.upload(&token, study, bytes.clone(), media)).await;
        assert_eq!((s2, &second["id"]), (StatusCode::OK, &first["id"]), "{second}");
        let (_, state) = h.get(Some(&token), &format!("/v1/images/{}", first["id"].as_str().expect("id"))).await;
        let key = format!("raw/{}/{}.{}", &state["sha256"].as_str().expect("sha")[..2], state["sha256"].as_str().expect("sha"),
            if media == "image/jpeg" { "jpg" } else { "dcm" });
        let object = h.store.get(&key).await.expect("object");
        for s in secrets {
            assert!(!has(&object, s), "{s} reached the store");
        }
        let format = imaging::sniff(&bytes).expect("format");
        let (a, b) = (imaging::decode_rgb(&bytes, format).expect("a"), imaging::decode_rgb(&object, format).expect("b"));
        assert_eq!(a.as_raw(), b.as_raw(), "the pixels are stored as sent");
    }
}

#[tokio::test]
async fn png_upload_is_accepted() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    accepted(&h, fixtures::png(800, 600, 2), "image/png", "png").await;
}

#[tokio::test]
async fn dicom_upload_is_accepted() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    accepted(&h, fixtures::dicom(800, 640, 3, true), "application/dicom", "dicom").await;
}

#[tokio::test]
async fn a_real_fundus_photo_passes_the_quality_check() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (status, body) = h.send(h.upload(&token, study, fixtures::retina_jpg(), "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["quality"]["fov_found"], true, "{body}");
    assert_eq!(body["quality"]["retake"], false, "{body}");
}

/// A phone uploads whatever its camera sees. Photos that are not of a fundus
/// (scikit-image's astronaut, coffee, cat and cameraman, enlarged to a phone
/// photo's size; a grey frame; a screenshot) are refused with `not_fundus`
/// and leave nothing behind, while the real fundus photo is accepted.
#[tokio::test]
async fn photos_that_are_not_fundus_photographs_are_refused() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let enlarged = |name: &str| {
        let img = image::load_from_memory(&fixtures::skimage_data(name)).expect("decodes").to_rgb8();
        let k = 1200.0 / img.width().min(img.height()) as f32;
        let (w, h) = ((img.width() as f32 * k) as u32, (img.height() as f32 * k) as u32);
        image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle)
    };
    let mut screenshot = image::RgbImage::from_pixel(1170, 1600, image::Rgb([248, 248, 250]));
    for (x, y, p) in screenshot.enumerate_pixels_mut() {
        if y < 160 {
            p.0 = [30, 90, 200]; // a title bar
        } else if (y / 24) % 2 == 0 && x > 60 && x < 60 + (y * 37 % 900) {
            p.0 = [40, 40, 40]; // lines of text
        }
    }
    let mut refused = Vec::new();
    for (name, img) in [
        ("astronaut", enlarged("astronaut.png")),
        ("coffee", enlarged("coffee.png")),
        ("chelsea", enlarged("chelsea.png")),
        ("camera", enlarged("camera.png")),
        ("grey frame", image::RgbImage::from_pixel(1600, 1200, image::Rgb([128, 128, 128]))),
        ("screenshot", screenshot),
    ] {
        let (status, body) = h.send(h.upload(&token, study, imaging::synth::to_jpeg(&img, 90), "image/jpeg")).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("not_fundus")), "{name}: {body}");
        refused.push(name);
    }
    assert_eq!(refused.len(), 6);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM images").fetch_one(&h.pool).await.expect("count");
    assert_eq!(rows, 0, "a refused photo leaves no row");
    let (status, body) = h.send(h.upload(&token, study, fixtures::retina_jpg(), "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["quality"]["fundus_colour"].as_f64().expect("fundus_colour") > 0.96, "{body}");
}

#[tokio::test]
async fn quality_feedback_asks_for_a_retake_of_a_dark_photo() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let mut dark = fixtures::fundus(1024, 768, 4);
    dark.pixels_mut().for_each(|p| p.0 = p.0.map(|c| c / 8));
    let (status, body) =
        h.send(h.upload(&token, study, imaging::synth::to_jpeg(&dark, 90), "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["quality"]["retake"], true, "{body}");
    assert!(body["quality"]["issues"].as_array().expect("issues").contains(&json!("too_dark")), "{body}");
}

#[tokio::test]
async fn retries_return_the_same_image_with_one_object_and_one_row() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let photo = fixtures::jpeg(1024, 768, 5);

    let (s1, first) = h.send(h.upload(&token, study, photo.clone(), "image/jpeg").header("idempotency-key", "k-1")).await;
    assert_eq!(s1, StatusCode::CREATED, "{first}");
    // Same key, same bytes; then same bytes without a key.
    let (s2, second) = h.send(h.upload(&token, study, photo.clone(), "image/jpeg").header("idempotency-key", "k-1")).await;
    let (s3, third) = h.send(h.upload(&token, study, photo.clone(), "image/jpeg")).await;
    assert_eq!((s2, s3), (StatusCode::OK, StatusCode::OK));
    assert_eq!(first["id"], second["id"]);
    assert_eq!(first["id"], third["id"]);
    // Same key, other bytes: a client bug, refused.
    let (s4, body) =
        h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 6), "image/jpeg").header("idempotency-key", "k-1")).await;
    assert_eq!(s4, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "idempotency_key_reused");

    // Eight phones retrying at once still make one row and one object.
    let other = fixtures::jpeg(1024, 768, 7);
    let racers = (0..8).map(|_| h.send(h.upload(&token, study, other.clone(), "image/jpeg")));
    let results = futures::future::join_all(racers).await;
    let ids: std::collections::HashSet<_> = results.iter().map(|(_, b)| b["id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{results:?}");
    assert_eq!(results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count(), 1, "{results:?}");

    assert_eq!(h.count("images").await, 2);
    assert_eq!(h.count("jobs").await, 2);
    assert_eq!(h.objects().await.len(), 2);
}

/// Each bad input gets its documented status and code, and leaves nothing.
#[tokio::test]
async fn bad_inputs_are_refused_with_stable_codes_and_leave_nothing() {
    let stack = Stack::shared();
    let h = Harness::start_with(&stack, |c| c.max_upload_bytes = 2_000_000).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let good = fixtures::jpeg(1024, 768, 8);
    let mut polyglot = good.clone();
    polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.html<script>alert(1)</script>");
    let mut png_with_html = fixtures::png(640, 640, 9);
    png_with_html.extend_from_slice(b"<html><body>hello</body></html>");
    let big = {
        let mut b = good.clone();
        b.resize(2_500_000, 0);
        b
    };

    let cases: Vec<(&str, Vec<u8>, &str, StatusCode, &str)> = vec![
        ("zero bytes", vec![], "image/jpeg", StatusCode::BAD_REQUEST, "empty_body"),
        ("truncated", good[..good.len() / 2].to_vec(), "image/jpeg", StatusCode::UNPROCESSABLE_ENTITY, "truncated"),
        ("wrong declared type", good.clone(), "image/png", StatusCode::UNSUPPORTED_MEDIA_TYPE, "type_mismatch"),
        ("not an image", b"hello, this is text".repeat(50), "image/jpeg", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unknown_format"),
        ("unsupported content type", good.clone(), "image/gif", StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
        ("jpeg+zip polyglot", polyglot, "image/jpeg", StatusCode::UNPROCESSABLE_ENTITY, "trailing_data"),
        ("png+html polyglot", png_with_html, "image/png", StatusCode::UNPROCESSABLE_ENTITY, "trailing_data"),
        ("png decompression bomb", fixtures::png_bomb(), "image/png", StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels"),
        ("jpeg decompression bomb", fixtures::jpeg_bomb(), "image/jpeg", StatusCode::UNPROCESSABLE_ENTITY, "too_many_pixels"),
        ("too small", fixtures::jpeg(640, 480, 10), "image/jpeg", StatusCode::UNPROCESSABLE_ENTITY, "too_small"),
        ("dicom without pixel data", fixtures::dicom(800, 640, 11, false), "application/dicom", StatusCode::UNPROCESSABLE_ENTITY, "dicom_no_pixel_data"),
        ("body over the limit", big, "image/jpeg", StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
    ];
    for (what, bytes, ct, status, code) in cases {
        let (got, body) = h.send(h.upload(&token, study, bytes, ct)).await;
        assert_eq!((got, body["code"].as_str()), (status, Some(code)), "{what}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
    }

    // Over the limit without a Content-Length: caught while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..40).map(|_| Ok(vec![0u8; 64 * 1024])).collect();
    let streamed = h
        .http
        .post(format!("{}/v1/studies/{study}/images?eye=left", h.base))
        .bearer_auth(&token)
        .header("content-type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The server may answer 413 and close before the client finishes sending:
    // then the client sees the connection end, and the server's count says why.
    match streamed {
        Ok(r) => assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(!e.is_timeout() && (e.is_request() || e.is_body()), "{e:?}"),
    }

    let middle = h
        .http
        .post(format!("{}/v1/studies/{study}/images?eye=middle", h.base))
        .bearer_auth(&token)
        .header("content-type", "image/jpeg")
        .body(good.clone());
    let (got, body) = h.send(middle).await;
    assert_eq!((got, body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_eye")), "{body}");
    let (got, body) = h.send(h.upload(&token, uuid::Uuid::new_v4(), good, "image/jpeg")).await;
    assert_eq!((got, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{body}");

    assert_nothing_stored(&h).await;
    let metrics = h.http.get(format!("{}/metrics", h.base)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("fundus_ingest_uploads_total{outcome=\"too_many_pixels\"} 2"), "{metrics}");
    // Both over-limit bodies were refused as such, whichever way the client saw it.
    assert!(metrics.contains("fundus_ingest_uploads_total{outcome=\"too_large\"} 2"), "{metrics}");
}

#[tokio::test]
async fn bad_study_requests_are_refused() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let cases = [
        (json!({"captured_at": "2026-11-20T10:00:00Z"}), "invalid_json"),
        (json!({"patient_ref": "", "captured_at": "2026-11-20T10:00:00Z"}), "invalid_patient_ref"),
        (json!({"patient_ref": "P1", "captured_at": "yesterday"}), "invalid_json"),
        (json!({"patient_ref": "P1", "captured_at": "2099-01-01T00:00:00Z"}), "invalid_captured_at"),
        (json!({"patient_ref": "P1", "captured_at": "2026-11-20T10:00:00Z", "metadata": [1, 2]}), "invalid_metadata"),
    ];
    for (body, code) in cases {
        let (status, resp) = h.post_json(Some(&token), "/v1/studies", body.clone()).await;
        assert_eq!((status, resp["code"].as_str()), (StatusCode::BAD_REQUEST, Some(code)), "{body}: {resp}");
    }
    let (status, resp) = h
        .post_json(Some(&token), "/v1/studies", json!({"patient_ref": "P1", "site": "clinic-b", "captured_at": "2026-11-20T10:00:00Z"}))
        .await;
    assert_eq!((status, resp["code"].as_str()), (StatusCode::FORBIDDEN, Some("forbidden")), "{resp}");
    assert_eq!(h.count("studies").await, 0);
}

#[tokio::test]
async fn tokens_and_sites_are_enforced() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let a = h.device("clinic-a").await;
    let b = h.device("clinic-b").await;
    let study = h.study(&a).await;
    let photo = fixtures::jpeg(1024, 768, 12);
    let (status, body) = h.send(h.upload(&a, study, photo.clone(), "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED);
    let image = body["id"].as_str().expect("id").to_owned();

    let body_json = json!({"patient_ref": "P1", "captured_at": "2026-11-20T10:00:00Z"});
    let (s, r) = h.post_json(None, "/v1/studies", body_json.clone()).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));
    let (s, _) = h.post_json(Some("fdt_not-a-real-token"), "/v1/studies", body_json).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = h.get(None, &format!("/v1/images/{image}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    // Another site's device can neither add to nor read this site's study, and
    // cannot tell it from one that does not exist: the answers are the same.
    let nobody = uuid::Uuid::new_v4();
    let (s, r) = h.send(h.upload(&b, study, fixtures::jpeg(1024, 768, 13), "image/jpeg")).await;
    let (s0, r0) = h.send(h.upload(&b, nobody, fixtures::jpeg(1024, 768, 13), "image/jpeg")).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")), "{r}");
    assert_eq!((s, &r["message"]), (s0, &r0["message"]), "{r} vs {r0}");
    for (path, missing) in [(format!("/v1/images/{image}"), format!("/v1/images/{nobody}")), (format!("/v1/studies/{study}"), format!("/v1/studies/{nobody}"))] {
        let (s, r) = h.get(Some(&b), &path).await;
        let (s0, r0) = h.get(Some(&b), &missing).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}: {r}");
        assert_eq!((s, &r["code"], &r["message"]), (s0, &r0["code"], &r0["message"]), "{path}");
    }
    assert_eq!(h.count("images").await, 1);

    // A revoked token stops working at once.
    sqlx::query("UPDATE devices SET revoked_at = now() WHERE token_hash = $1")
        .bind(ingest::auth::hash_token(&a).to_vec())
        .execute(&h.pool)
        .await
        .expect("revoke");
    let (s, _) = h.get(Some(&a), &format!("/v1/images/{image}")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failed_commit_leaves_no_row_and_the_sweep_reclaims_its_object() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    // The database connection dies inside the upload's transaction, after the
    // object was written: as when Postgres goes away at the worst moment.
    sqlx::raw_sql(
        "CREATE FUNCTION die() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$;
         CREATE TRIGGER die BEFORE INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION die();",
    )
    .execute(&h.pool)
    .await
    .expect("trigger");
    let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 14), "image/jpeg")).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("database_unavailable")), "{body}");
    assert_eq!((h.count("images").await, h.count("jobs").await), (0, 0), "no row may be left behind");
    // The object stays (the request path never deletes: another upload may share it),
    // reserved, until the reservation expires and the sweep finds nothing holds it.
    assert_eq!(h.objects().await.len(), 1);
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 0, "still reserved");
    sqlx::query("UPDATE object_reservations SET expires_at = now()").execute(&h.pool).await.expect("expire");
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 1);
    assert_nothing_stored(&h).await;
}

#[tokio::test]
async fn the_sweep_removes_only_unreferenced_objects() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (status, _) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 15), "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED);
    let orphan = store::raw_key(&"ab".repeat(32), "jpg");
    h.store.put_if_absent(&orphan, bytes::Bytes::from_static(b"orphan")).await.expect("put");
    assert_eq!(h.objects().await.len(), 2);

    // A grace period protects uploads in flight.
    let kept = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::from_secs(3600)).await.expect("sweep");
    assert_eq!(kept.removed, 0);
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!((r.examined, r.removed), (2, 1));
    let left = h.objects().await;
    assert_eq!(left.len(), 1);
    assert!(!left[0].ends_with(&orphan), "{left:?}");
}

#[tokio::test]
async fn operational_endpoints_answer() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let (s, ready) = h.get(None, "/readyz").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!((&ready["database"], &ready["store"]), (&json!("ok"), &json!("ok")), "{ready}");
    // A burst of probes is answered from one or two probes (one per two seconds).
    let burst = futures::future::join_all((0..50).map(|_| h.get(None, "/readyz"))).await;
    let probes: std::collections::BTreeSet<String> =
        burst.iter().map(|(_, r)| r["probed_at"].as_str().expect("probed_at").to_owned()).collect();
    assert!(probes.len() <= 2, "{} probes for 50 requests", probes.len());
    let (s, doc) = h.get(None, "/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    for path in ["/v1/studies", "/v1/studies/{id}/images", "/v1/images/{id}"] {
        assert!(doc["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    let (s, body) = h.get(None, "/no/such/route").await;
    assert_eq!((s, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    let r = h.http.get(format!("{}/healthz", h.base)).send().await.expect("healthz");
    assert!(r.headers().contains_key("x-request-id"));
}

/// Workers are woken by NOTIFY when the upload commits.
#[tokio::test]
async fn an_accepted_upload_notifies_the_workers() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let mut listener = sqlx::postgres::PgListener::connect_with(&h.pool).await.expect("listener");
    listener.listen("fundus_jobs").await.expect("listen");
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let (status, body) = h.send(h.upload(&token, study, fixtures::jpeg(1024, 768, 17), "image/jpeg")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let note = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .expect("notification");
    assert_eq!(note.payload(), body["id"].as_str().expect("id"));
}

/// A failed commit must not take away an object that a concurrent upload of
/// the same bytes, into another study, found and committed under its row.
#[tokio::test]
async fn a_failed_commit_leaves_the_object_a_concurrent_upload_committed_under() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let (study_a, study_b) = (h.study(&token).await, h.study(&token).await);
    // Study A's image insert fails, after a pause long enough for B's upload to run.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION fail_a() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.study_id = '{study_a}' THEN PERFORM pg_sleep(3); RAISE EXCEPTION 'injected commit failure'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER fail_a BEFORE INSERT ON images FOR EACH ROW EXECUTE FUNCTION fail_a();"
    )))
    .execute(&h.pool)
    .await
    .expect("trigger");
    let bytes = fixtures::jpeg(1024, 768, 99);
    let a = {
        let req = h.upload(&token, study_a, bytes.clone(), "image/jpeg");
        tokio::spawn(async move { req.send().await.map(|r| r.status()) })
    };
    // A has written the object and is stuck in its commit; B finds the object and commits.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (status_b, body_b) = h.send(h.upload(&token, study_b, bytes.clone(), "image/jpeg")).await;
    assert_eq!(status_b, StatusCode::CREATED, "{body_b}");
    let status_a = a.await.expect("join").expect("A answered");
    assert!(status_a.is_server_error(), "A's commit failed: {status_a}");
    // B's photo is still there.
    let key: String = sqlx::query_scalar("SELECT object_key FROM images WHERE study_id = $1")
        .bind(study_b)
        .fetch_one(&h.pool)
        .await
        .expect("B's row");
    let stored = h.store.get(&key).await.expect("B's object must still exist");
    assert_eq!(stored.as_ref(), fixtures::stored(&bytes).as_slice());
}

/// The sweep checks and deletes an object under the key's lock; an upload of
/// the same bytes arriving in between waits for it and writes the object anew,
/// instead of finding the doomed object, skipping its PUT and committing a
/// row that points at nothing.
#[tokio::test]
async fn an_upload_racing_the_sweep_for_an_old_orphan_keeps_its_photo() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let token = h.device("clinic-a").await;
    let study = h.study(&token).await;
    let bytes = fixtures::jpeg(1024, 768, 77);
    let key = store::raw_key(&hex::encode(sha2::Sha256::digest(fixtures::stored(&bytes))), "jpg");
    // An orphan of the same bytes, as an old failed upload would leave.
    h.store.put(&key, bytes::Bytes::from(bytes.clone())).await.expect("orphan");
    // The sweep's step for this key, with the sweep's own calls: locked, found unclaimed.
    let mut lock = db::images::SweepLock::take(&h.pool, &key).await.expect("lock");
    assert!(!lock.claimed(&key).await.expect("claimed"), "nothing references the orphan yet");
    let upload = {
        let req = h.upload(&token, study, bytes.clone(), "image/jpeg");
        tokio::spawn(async move { req.send().await.map(|r| r.status()) })
    };
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!upload.is_finished(), "the upload must wait for the sweep's hold on the key");
    h.store.delete(&key).await.expect("the sweep deletes");
    lock.release().await.expect("release");
    let status = upload.await.expect("join").expect("answered");
    assert_eq!(status, StatusCode::CREATED);
    let stored = h.store.get(&key).await.expect("the photo of a 201 must exist");
    assert_eq!(stored.as_ref(), fixtures::stored(&bytes).as_slice());
    // And the real sweep now leaves it alone (referenced), with no reservation left behind.
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 0);
    assert_eq!(h.count("object_reservations").await, 0);
}

/// A reservation left by a failed upload protects its object until it
/// expires; then the sweep reclaims the orphan.
#[tokio::test]
async fn the_sweep_reclaims_a_failed_uploads_object_once_its_reservation_expires() {
    let stack = Stack::shared();
    let h = Harness::start(&stack).await;
    let key = store::raw_key(&"cd".repeat(32), "jpg");
    h.store.put(&key, bytes::Bytes::from_static(b"left by a failed upload")).await.expect("put");
    db::images::reserve_object(&h.pool, &key, 3600.0).await.expect("reserve");
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 0, "reserved: kept");
    sqlx::query("UPDATE object_reservations SET expires_at = now() - interval '1 second'").execute(&h.pool).await.expect("expire");
    let r = ingest::sweep::sweep(&h.pool, &h.store, std::time::Duration::ZERO).await.expect("sweep");
    assert_eq!(r.removed, 1);
    assert!(h.store.get(&key).await.is_err());
    assert_eq!(h.count("object_reservations").await, 0);
}

#[tokio::test]
async fn metrics_can_live_on_a_listener_of_their_own() {
    let stack = Stack::shared();
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let h = Harness::start_with(&stack, |c| c.metrics_listen = Some(addr)).await;
    let (s, _) = h.get(None, "/metrics").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not beside the API");
    let text = h.http.get(format!("http://{addr}/metrics")).send().await.expect("metrics").text().await.expect("body");
    assert!(text.contains("fundus_"), "{text:.200}");
}
