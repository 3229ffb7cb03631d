//! The reviewer's heatmap: the photo's crop with the activation map laid over
//! it in a black-red-yellow ramp, so a clinician sees where the score came from.

use image::{Rgb, RgbImage};

/// Blends `map` (`side * side` values in 0..1, row-major) over `crop` and
/// returns PNG bytes. Values under 0.2, and the black surround outside the
/// field of view, leave the photo untouched.
pub fn overlay_png(crop: &RgbImage, map: &[f32]) -> Vec<u8> {
    let (w, h) = crop.dimensions();
    assert_eq!(map.len(), (w * h) as usize, "map and crop differ in size");
    let mut out = crop.clone();
    for (i, px) in out.pixels_mut().enumerate() {
        let v = map[i].clamp(0.0, 1.0);
        let Rgb(p) = *px;
        if v < 0.2 || p.iter().map(|&c| c as u32).sum::<u32>() < 24 {
            continue;
        }
        // Ramp: red rises first, then green; alpha grows from nothing at 0.2.
        let heat = [255.0 * (v * 2.0).min(1.0), 255.0 * (v * 2.0 - 1.0).max(0.0), 0.0];
        let a = 0.65 * (v - 0.2) / 0.8;
        *px = Rgb([0, 1, 2].map(|c| (p[c] as f32 * (1.0 - a) + heat[c] * a).round() as u8));
    }
    let mut png = Vec::new();
    out.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).expect("PNG into memory");
    png
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_pixels_turn_red_cold_ones_stay() {
        let crop = RgbImage::from_pixel(4, 4, Rgb([40, 40, 200]));
        let mut map = vec![0.0; 16];
        map[5] = 1.0;
        let png = overlay_png(&crop, &map);
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(back.get_pixel(0, 0), &Rgb([40, 40, 200]));
        let hot = back.get_pixel(1, 1);
        assert!(hot[0] > 100 && hot[2] < 200, "{hot:?}");
    }
}
