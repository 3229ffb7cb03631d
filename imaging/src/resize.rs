//! The `image` crate's Triangle resize for RGB bytes, written for that one
//! case: the same taps, the same weights and the same order of arithmetic, so
//! the same pixels, without the crate's generic per-pixel code (which was the
//! largest cost after entropy decoding in the quick check at upload). It
//! reads a window of the source directly, black outside the source, so a
//! crop around the field or the disc needs no copy first.

use image::RgbImage;

/// One output coordinate: the first source index it reads and its weights.
struct Taps {
    first: usize,
    weights: Vec<f32>,
}

/// `image`'s sampling along one axis, filter support 1 (Triangle).
fn taps(src: u32, dst: u32) -> Vec<Taps> {
    let ratio = src as f32 / dst as f32;
    let sratio = if ratio < 1.0 { 1.0 } else { ratio };
    (0..dst)
        .map(|o| {
            let centre = (o as f32 + 0.5) * ratio;
            let left = ((centre - sratio).floor() as i64).clamp(0, i64::from(src) - 1);
            let right = ((centre + sratio).ceil() as i64).clamp(left + 1, i64::from(src));
            let centre = centre - 0.5;
            let mut weights: Vec<f32> = (left..right)
                .map(|i| {
                    let x = ((i as f32 - centre) / sratio).abs();
                    if x < 1.0 { 1.0 - x } else { 0.0 }
                })
                .collect();
            let mut sum = 0.0;
            for w in &weights {
                sum += w;
            }
            for w in &mut weights {
                *w /= sum;
            }
            Taps { first: left as usize, weights }
        })
        .collect()
}

/// Resizes the `w`x`h` window of `img` whose top-left corner is `(x0, y0)`
/// (which may reach outside `img`: black there) to `out_w`x`out_h`, exactly as
/// `imageops::resize(window, out_w, out_h, FilterType::Triangle)` does.
pub(crate) fn triangle_window(img: &RgbImage, x0: i64, y0: i64, w: u32, h: u32, out_w: u32, out_h: u32) -> RgbImage {
    if w == 0 || h == 0 {
        return RgbImage::new(out_w, out_h);
    }
    let (iw, ih) = (i64::from(img.width()), i64::from(img.height()));
    let src = img.as_raw();
    let row_len = w as usize * 3;
    // The columns of the window that lie inside the image.
    let (cx0, cx1) = ((-x0).clamp(0, i64::from(w)) as usize, (iw - x0).clamp(0, i64::from(w)) as usize);
    let same = (w, h) == (out_w, out_h);
    // Vertical pass into floats (skipped at the same size, as `image` copies).
    let mut tall = vec![0f32; row_len * out_h as usize];
    let vertical = if same { None } else { Some(taps(h, out_h)) };
    for oy in 0..out_h as usize {
        let row = &mut tall[oy * row_len..(oy + 1) * row_len];
        let one = [Taps { first: oy, weights: vec![1.0] }];
        let t = match &vertical {
            Some(v) => &v[oy],
            None => &one[0],
        };
        for (i, &wt) in t.weights.iter().enumerate() {
            let sy = y0 + (t.first + i) as i64;
            if !(0..ih).contains(&sy) || cx0 >= cx1 {
                continue; // black: adding zero changes nothing
            }
            let start = (sy * iw + x0 + cx0 as i64) as usize * 3;
            let line = &src[start..start + (cx1 - cx0) * 3];
            for (acc, &v) in row[cx0 * 3..cx1 * 3].iter_mut().zip(line) {
                *acc += f32::from(v) * wt;
            }
        }
    }
    if same {
        return RgbImage::from_raw(out_w, out_h, tall.iter().map(|&v| v as u8).collect()).expect("sized buffer");
    }
    // Horizontal pass, rounded to the nearest byte.
    let horizontal = taps(w, out_w);
    let mut out = Vec::with_capacity(out_w as usize * out_h as usize * 3);
    for oy in 0..out_h as usize {
        let row = &tall[oy * row_len..(oy + 1) * row_len];
        for t in &horizontal {
            let mut acc = [0f32; 3];
            for (i, &wt) in t.weights.iter().enumerate() {
                let p = &row[(t.first + i) * 3..(t.first + i) * 3 + 3];
                acc[0] += p[0] * wt;
                acc[1] += p[1] * wt;
                acc[2] += p[2] * wt;
            }
            out.extend(acc.map(|v| v.clamp(0.0, 255.0).round() as u8));
        }
    }
    RgbImage::from_raw(out_w, out_h, out).expect("sized buffer")
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::imageops::{self, FilterType};
    use rand::{Rng, SeedableRng};

    fn noise(w: u32, h: u32, seed: u64) -> RgbImage {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        RgbImage::from_fn(w, h, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]))
    }

    /// The same bytes as the `image` crate, shrinking, growing, and with the
    /// two axes going different ways.
    #[test]
    fn gives_the_image_crates_pixels() {
        for (i, &(w, h, ow, oh)) in [(486, 486, 256, 256), (648, 486, 256, 256), (243, 243, 256, 256), (100, 37, 64, 64), (31, 200, 128, 20), (5, 5, 5, 5), (1, 1, 3, 2)]
            .iter()
            .enumerate()
        {
            let img = noise(w, h, i as u64);
            let want = imageops::resize(&img, ow, oh, FilterType::Triangle);
            assert!(triangle_window(&img, 0, 0, w, h, ow, oh) == want, "{w}x{h} -> {ow}x{oh}");
        }
    }

    /// A window reaching past the image reads black there: the same as
    /// copying the window onto a black square first.
    #[test]
    fn a_window_past_the_edges_reads_black() {
        let img = noise(300, 200, 9);
        for &(x0, y0, side) in &[(-40i64, -60i64, 320u32), (100, 50, 250), (-10, 20, 150), (400, 0, 50)] {
            let mut square = RgbImage::new(side, side);
            let (sx0, sy0) = (x0.max(0), y0.max(0));
            let (sx1, sy1) = ((x0 + i64::from(side)).min(300), (y0 + i64::from(side)).min(200));
            if sx1 > sx0 && sy1 > sy0 {
                let part = imageops::crop_imm(&img, sx0 as u32, sy0 as u32, (sx1 - sx0) as u32, (sy1 - sy0) as u32).to_image();
                imageops::replace(&mut square, &part, sx0 - x0, sy0 - y0);
            }
            let want = imageops::resize(&square, 128, 128, FilterType::Triangle);
            assert!(triangle_window(&img, x0, y0, side, side, 128, 128) == want, "window at ({x0}, {y0}), side {side}");
        }
    }
}
