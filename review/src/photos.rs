//! Photos served to readers through their session, never by a public store
//! URL: a screen-sized preview first (made once, kept under `derived/`),
//! full resolution on zoom, and the heatmap. Every view is audited; a photo
//! under a blinded read has no heatmap.

use axum::extract::{Path, State as AxState};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use imaging::Format;
use uuid::Uuid;

use crate::State;
use crate::auth::Reader;
use crate::error::ReviewError;
use crate::work::parse_id;

/// Longest side of a preview: enough for a screen, a fraction of the photo.
pub const PREVIEW_SIDE: u32 = 1600;

/// Where the heatmap sits on the preview, as fractions of its width and
/// height (`x,y,w,h`): the square the model saw.
pub const BOX_HEADER: &str = "x-fundus-heatmap-box";

fn format_of(s: &str) -> Result<Format, ReviewError> {
    match s {
        "jpeg" => Ok(Format::Jpeg),
        "png" => Ok(Format::Png),
        "dicom" => Ok(Format::Dicom),
        other => Err(ReviewError::Internal(format!("unknown stored format {other:?}"))),
    }
}

async fn access(s: &State, r: &Reader, id: &str, what: &str) -> Result<(Uuid, db::review::ImageAccess), ReviewError> {
    let id = parse_id(id, "image")?;
    let a = match db::review::image_access(&s.db, id).await? {
        Some(a) if r.sees(a.site_id) => a,
        _ => return Err(ReviewError::NotFound("image")),
    };
    db::audit(&s.db, &r.name, "photo.view", Some(&id.to_string()), serde_json::json!({ "what": what, "role": r.role })).await?;
    Ok((id, a))
}

fn image_response(content_type: &'static str, bytes: Bytes) -> Response {
    let mut resp = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    // Patient photos are not left in a shared workstation's browser cache.
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A preview and where the model's square sits on it.
struct Preview {
    jpeg: Vec<u8>,
    heatmap_box: [f32; 4],
}

fn make_preview(raw: &[u8], format: Format) -> Result<Preview, ReviewError> {
    let decoded = imaging::decode_rgb_at_least(raw, format, PREVIEW_SIDE * 3 / 4)
        .map_err(|e| ReviewError::Internal(format!("decoding a stored photo: {e}")))?;
    let upright = match format {
        Format::Jpeg => imaging::exif::apply(decoded, imaging::exif::jpeg_orientation(raw)),
        _ => decoded,
    };
    let (w, h) = upright.dimensions();
    let scale = (PREVIEW_SIDE as f32 / w.max(h) as f32).min(1.0);
    let img = if scale < 1.0 {
        let (pw, ph) = (((w as f32 * scale).round() as u32).max(1), ((h as f32 * scale).round() as u32).max(1));
        image::imageops::resize(&upright, pw, ph, image::imageops::FilterType::Triangle)
    } else {
        upright
    };
    let heatmap_box = model_square(&img);
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 88)
        .encode_image(&img)
        .map_err(|e| ReviewError::Internal(format!("encoding a preview: {e}")))?;
    Ok(Preview { jpeg, heatmap_box })
}

/// The square the preprocessing crops the field to (the field of view's
/// bounding square, or the centre square), as fractions of the image.
fn model_square(img: &imaging::RgbImage) -> [f32; 4] {
    imaging::preprocess_image(img, &imaging::Preprocessing::new(32)).glaucoma_box
}

fn preview_key(id: Uuid) -> String {
    let [jpeg, _] = store::preview_keys(&id);
    jpeg
}

fn box_key(id: Uuid) -> String {
    let [_, b] = store::preview_keys(&id);
    b
}


/// The preview, made and kept on first use.
async fn preview_of(s: &State, id: Uuid, a: &db::review::ImageAccess) -> Result<Preview, ReviewError> {
    if let (Ok(jpeg), Ok(b)) = (s.store.get(&preview_key(id)).await, s.store.get(&box_key(id)).await) {
        if let Some(heatmap_box) = store::parse_box(&b) {
            return Ok(Preview { jpeg: jpeg.to_vec(), heatmap_box });
        }
    }
    let raw = s.store.get(&a.object_key).await?;
    let format = format_of(&a.format)?;
    let p = tokio::task::spawn_blocking(move || make_preview(&raw, format))
        .await
        .map_err(|e| ReviewError::Internal(format!("preview task: {e}")))??;
    let b = store::box_text(&p.heatmap_box);
    // The box first: a preview without its box is remade, never misplaced.
    s.store.put(&box_key(id), Bytes::from(b)).await?;
    s.store.put(&preview_key(id), Bytes::from(p.jpeg.clone())).await?;
    Ok(p)
}

pub async fn preview(AxState(s): AxState<State>, r: Reader, Path(id): Path<String>) -> Result<Response, ReviewError> {
    let (id, a) = access(&s, &r, &id, "preview").await?;
    let p = preview_of(&s, id, &a).await?;
    let mut resp = image_response("image/jpeg", Bytes::from(p.jpeg));
    if let Ok(v) = HeaderValue::from_str(&store::box_text(&p.heatmap_box)) {
        resp.headers_mut().insert(BOX_HEADER, v);
    }
    Ok(resp)
}

/// Full resolution: the stored JPEG or PNG as it is; a DICOM's pixels as PNG.
pub async fn full(AxState(s): AxState<State>, r: Reader, Path(id): Path<String>) -> Result<Response, ReviewError> {
    let (_, a) = access(&s, &r, &id, "full").await?;
    let raw = s.store.get(&a.object_key).await?;
    match format_of(&a.format)? {
        Format::Jpeg => Ok(image_response("image/jpeg", raw)),
        Format::Png => Ok(image_response("image/png", raw)),
        Format::Dicom => {
            let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, ReviewError> {
                let img = imaging::decode_rgb(&raw, Format::Dicom).map_err(|e| ReviewError::Internal(format!("decoding a stored DICOM: {e}")))?;
                let mut out = Vec::new();
                img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
                    .map_err(|e| ReviewError::Internal(e.to_string()))?;
                Ok(out)
            })
            .await
            .map_err(|e| ReviewError::Internal(format!("DICOM task: {e}")))??;
            Ok(image_response("image/png", Bytes::from(png)))
        }
    }
}

pub async fn heatmap(AxState(s): AxState<State>, r: Reader, Path(id): Path<String>) -> Result<Response, ReviewError> {
    let (_, a) = access(&s, &r, &id, "heatmap").await?;
    if a.blinded {
        return Err(ReviewError::Forbidden("this photo is under a blinded read: no model output is shown"));
    }
    let key = a.heatmap_key.ok_or(ReviewError::NotFound("heatmap"))?;
    let mut resp = image_response("image/png", s.store.get(&key).await?);
    // Where it lies, when the worker said (a model that looks at the disc
    // maps the disc's square); without it, the preview's square.
    if let Ok(b) = s.store.get(&store::heatmap_box_key(&key)).await {
        if let Some(v) = store::parse_box(&b).and_then(|_| HeaderValue::from_bytes(&b).ok()) {
            resp.headers_mut().insert(BOX_HEADER, v);
        }
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_screen_sized_and_finds_the_field_of_view() {
        let p = imaging::synth::Params::sample(&mut <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3), &[(2400, 1800)]);
        let jpeg = imaging::synth::to_jpeg(&imaging::synth::render(&p), 90);
        let out = make_preview(&jpeg, Format::Jpeg).expect("preview");
        let img = image::load_from_memory(&out.jpeg).expect("a JPEG");
        assert_eq!((img.width(), img.height()), (1600, 1200));
        let [x, y, w, h] = out.heatmap_box;
        // The synthetic field of view is a centred circle a little smaller than the frame's height.
        assert!(w > 0.5 && w < 0.8 && h > 0.7 && h < 1.1, "{:?}", out.heatmap_box);
        assert!((x + w / 2.0 - 0.5).abs() < 0.1 && (y + h / 2.0 - 0.5).abs() < 0.1, "{:?}", out.heatmap_box);
    }
}
