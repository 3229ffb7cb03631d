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

/// `imageops::thumbnail(img, out_w, out_h)`: where both axes shrink, every
/// output pixel is the rounded mean of a block of source pixels, and this
/// takes the crate's block bounds and rounding, so gives the same pixels
/// without the crate's generic accessor per source pixel (which cost a
/// fifth of the preprocessing of a photo). Anything else (growing, or a
/// block of no pixels) is left to the crate.
pub(crate) fn thumbnail(img: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    // The crate's bounds: [ceil(o * ratio), ceil(o * ratio + ratio)), clamped.
    let blocks = |src: u32, dst: u32| -> Option<Vec<(usize, usize)>> {
        let ratio = src as f32 / dst as f32;
        (0..dst)
            .map(|o| {
                let lo_f = o as f32 * ratio;
                let lo = (lo_f.ceil() as u32).min(src - 1);
                let hi = ((lo_f + ratio).ceil() as u32).clamp(lo, src);
                (lo < hi).then_some((lo as usize, hi as usize))
            })
            .collect()
    };
    let shrinks = (1..=w).contains(&out_w) && (1..=h).contains(&out_h);
    match shrinks.then(|| (blocks(w, out_w), blocks(h, out_h))) {
        Some((Some(cols), Some(rows))) => block_means(img, &cols, &rows, true),
        _ => image::imageops::thumbnail(img, out_w, out_h),
    }
}

/// Averages `k`x`k` blocks, truncating (a partial last row or column of
/// blocks is dropped); `k` 1 is a copy.
pub(crate) fn box_shrink(img: &RgbImage, k: u32) -> RgbImage {
    if k <= 1 {
        return img.clone();
    }
    let k = k as usize;
    let even = |side: u32| -> Vec<(usize, usize)> { (0..side as usize / k).map(|b| (b * k, b * k + k)).collect() };
    block_means(img, &even(img.width()), &even(img.height()), false)
}

/// The mean of each block `cols[x]` by `rows[y]` of source pixels (half-open
/// index ranges, none empty), rounded to nearest or truncated; the image is
/// read once, a row of blocks at a time.
fn block_means(img: &RgbImage, cols: &[(usize, usize)], rows: &[(usize, usize)], round: bool) -> RgbImage {
    let src = img.as_raw();
    let stride = img.width() as usize * 3;
    let mut sums = vec![0u32; stride];
    let mut out = Vec::with_capacity(cols.len() * rows.len() * 3);
    for &(top, bottom) in rows {
        sums.iter_mut().for_each(|s| *s = 0);
        for line in src[top * stride..bottom * stride].chunks_exact(stride) {
            for (s, &v) in sums.iter_mut().zip(line) {
                *s += u32::from(v);
            }
        }
        for &(left, right) in cols {
            let n = ((right - left) * (bottom - top)) as u32;
            let bias = if round { n / 2 } else { 0 };
            let mut acc = [0u32; 3];
            for px in sums[left * 3..right * 3].chunks_exact(3) {
                acc[0] += px[0];
                acc[1] += px[1];
                acc[2] += px[2];
            }
            out.extend(acc.map(|a| ((a + bias) / n).min(255) as u8));
        }
    }
    RgbImage::from_raw(cols.len() as u32, rows.len() as u32, out).expect("sized buffer")
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

    /// The same bytes as the crate's `thumbnail`: the detection image's
    /// shrink by a fraction, whole ratios, one axis barely shrinking, and
    /// the sizes it leaves to the crate (growing, the same size).
    #[test]
    fn thumbnail_gives_the_image_crates_pixels() {
        for (i, &(w, h, ow, oh)) in [(500, 375, 426, 320), (640, 480, 320, 240), (777, 333, 100, 42), (300, 301, 299, 300), (7, 5, 1, 1), (4000, 3000, 40, 30), (50, 40, 60, 30), (9, 9, 9, 9)]
            .iter()
            .enumerate()
        {
            let img = noise(w, h, 100 + i as u64);
            let want = imageops::thumbnail(&img, ow, oh);
            assert!(thumbnail(&img, ow, oh) == want, "{w}x{h} -> {ow}x{oh}");
        }
    }

    /// Each output pixel is its block's mean, truncated; the last partial
    /// row and column of blocks are dropped.
    #[test]
    fn box_shrink_averages_blocks() {
        let img = RgbImage::from_fn(9, 4, |x, _| image::Rgb([if x % 2 == 0 { 0 } else { 200 }, 10, 20]));
        let s = box_shrink(&img, 2);
        assert_eq!(s.dimensions(), (4, 2));
        assert!(s.pixels().all(|p| p.0 == [100, 10, 20]), "{s:?}");
        let img = noise(50, 38, 7);
        let s = box_shrink(&img, 3);
        assert_eq!(s.dimensions(), (16, 12));
        for (bx, by, px) in s.enumerate_pixels() {
            for c in 0..3 {
                let sum: u32 = (0..9).map(|i| u32::from(img.get_pixel(bx * 3 + i % 3, by * 3 + i / 3).0[c])).sum();
                assert_eq!(px.0[c] as u32, sum / 9, "block ({bx}, {by}), channel {c}");
            }
        }
        assert!(box_shrink(&img, 1) == img);
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
