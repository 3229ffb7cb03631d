//! scikit-image's `retina.jpg`, a real fundus photograph, through the CPU
//! path every photo takes: judged gradable by the quick check at upload, its
//! field of view and optic disc found where a person sees them, scored by a
//! model that looks at the disc, and its heatmap drawn.

use imaging::{DiscView, Format, Preprocessing};

#[test]
fn a_real_photograph_is_found_scored_and_mapped() {
    let bytes = tests::fixtures::retina_jpg();
    let inspection = imaging::inspect(&bytes, Format::Jpeg, imaging::Limits::default()).expect("inspects");
    assert!(inspection.quality.fov_found && !inspection.quality.retake, "{:?}", inspection.quality);

    let prep = Preprocessing::new(128).with_disc_view(DiscView::DEFAULT);
    let out = imaging::preprocess(&bytes, Format::Jpeg, &prep).expect("preprocesses");
    let fov = out.fov.expect("field of view");
    let disc = out.disc.expect("optic disc");
    // Marked by eye on the full 1411-pixel photo: the field's centre (704, 703)
    // and radius 696; the disc's centre (217, 650) and diameter about 190.
    // Compared in field radii, whatever scale the photo was decoded at.
    let (dx, dy) = ((disc.cx - fov.cx) / fov.r, (disc.cy - fov.cy) / fov.r);
    let err = (dx - (217.0 - 704.0) / 696.0).hypot(dy - (650.0 - 703.0) / 696.0) * 696.0;
    assert!(err < 0.25 * 190.0, "disc {disc:?} in {fov:?}: {err:.0} px from where it is");
    assert!((0.07..0.2).contains(&(disc.r / fov.r)), "disc radius {} of the field's {}", disc.r, fov.r);
    // The disc's square is the right half of the input, and shows the disc:
    // paler (green plus blue) at its centre than the field's average.
    assert_eq!(out.crop.dimensions(), (256, 128));
    let pale = |x: u32, y: u32| {
        let p = out.crop.get_pixel(x, y).0;
        u32::from(p[1]) + u32::from(p[2])
    };
    let field_mean = (0..128).flat_map(|y| (0..128).map(move |x| (x, y))).filter(|&(x, y)| pale(x, y) > 0).map(|(x, y)| pale(x, y)).sum::<u32>()
        / (0..128).flat_map(|y| (0..128).map(move |x| (x, y))).filter(|&(x, y)| pale(x, y) > 0).count() as u32;
    assert!(pale(128 + 64, 64) > field_mean + 60, "disc centre {} vs field {field_mean}", pale(192, 64));

    // Scored by a disc-view model (weights do not matter for the path), with
    // a heatmap over the disc's half.
    let dir = tests::root().join(".stack/tests").join(format!("real-photo-{}", std::process::id()));
    model::score::write_untrained_for(&dir, model::Arch::Small, &prep, 0.5, 1).expect("model");
    let scorer = model::Scorer::load(&dir, tch::Device::Cpu, model::Precision::F32).expect("loads");
    let prepared = inference::pipeline::prepare(&bytes, &scorer.card.preprocessing).expect("prepared");
    assert_eq!(prepared.chw, out.planar());
    let x = tch::Tensor::from_slice(&prepared.chw).view([1, 3, 128, 256]);
    let scores = scorer.score(&x, true);
    assert!(scores.glaucoma[0].is_finite() && (0.0..=1.0).contains(&scores.glaucoma[0]));
    let map = Vec::<f32>::try_from(scores.maps.expect("map").flatten(0, -1)).expect("floats");
    assert_eq!(map.len(), 256 * 128);
    assert!(map.iter().enumerate().all(|(i, &v)| i % 256 >= 128 || v == 0.0), "the field's half has no heat");
    let png = model::heatmap::overlay_png(&prepared.crop, &map);
    assert_eq!(image::load_from_memory(&png).expect("png").to_rgb8().dimensions(), (256, 128));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A photo with a field of view but no disc to be seen is refused for
/// glaucoma with `no_disc`, never scored from a guessed crop.
#[test]
fn a_field_without_a_disc_is_not_judged_for_glaucoma() {
    let img = image::RgbImage::from_fn(1024, 768, |x, y| {
        let d = ((x as f32 - 512.0).powi(2) + (y as f32 - 384.0).powi(2)).sqrt();
        let v = if d <= 350.0 { 180.0 - 70.0 * d / 350.0 } else { 3.0 };
        image::Rgb([v as u8, (v * 0.45) as u8, (v * 0.2) as u8])
    });
    let jpeg = imaging::synth::to_jpeg(&img, 90);
    let prep = Preprocessing::new(64).with_disc_view(DiscView::DEFAULT);
    let err = inference::pipeline::prepare(&jpeg, &prep).err().expect("refused");
    assert!(err.starts_with("no_disc: "), "{err}");
    // The same photo under a field-only model is scored as before.
    assert!(inference::pipeline::prepare(&jpeg, &Preprocessing::new(64)).is_ok());
}

/// The same real photograph as other cameras would deliver it: a PNG, a
/// fundus camera's DICOM file (native pixels, and the JPEG encapsulated as
/// most cameras store it), a small JPEG, a large one, a clipped field (a
/// phone framing the middle of the field). Each passes the quick check at
/// upload and is prepared for a disc-view model without an error, with its
/// disc found.
#[test]
fn a_real_photograph_in_other_forms_is_prepared() {
    let img = image::load_from_memory(&tests::fixtures::retina_jpg()).expect("decodes").to_rgb8();
    let resized = |side: u32| image::imageops::resize(&img, side, side, image::imageops::FilterType::Triangle);
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("png");
    // The middle 1411 x 1000 rows: the field's top and bottom cut off by the frame.
    let clipped = image::imageops::crop_imm(&img, 0, 205, 1411, 1000).to_image();
    let prep = Preprocessing::new(128).with_disc_view(DiscView::DEFAULT);
    for (name, bytes) in [
        ("png", png),
        ("dicom", imaging::synth::to_dicom(Some(&img), img.width(), img.height(), 1)),
        ("jpeg dicom", imaging::synth::to_dicom_jpeg(&tests::fixtures::retina_jpg(), img.width(), img.height(), 2)),
        ("small jpeg", imaging::synth::to_jpeg(&resized(640), 85)),
        ("large jpeg", imaging::synth::to_jpeg(&resized(3000), 90)),
        ("clipped field", imaging::synth::to_jpeg(&clipped, 90)),
    ] {
        let format = imaging::sniff(&bytes).expect("format");
        let q = imaging::inspect(&bytes, format, imaging::Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}")).quality;
        assert!(q.fov_found && !q.retake, "{name}: {q:?}");
        let out = imaging::preprocess(&bytes, format, &prep).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.fov.is_some() && out.disc.is_some(), "{name}: field {:?}, disc {:?}", out.fov, out.disc);
        inference::pipeline::prepare(&bytes, &prep).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
