//! Pixels for the viewer: the modality values themselves (after the Modality LUT, before any
//! VOI), so that the browser's window/level is exact on them and not a re-windowing of an
//! 8-bit picture; and the temporal subtraction image of the study against its prior.
//!
//! `GET /studies/{uid}/pixels?image=current|prior&size=N` answers one binary body:
//! a little-endian u32 n, n bytes of JSON (width, height, slope, intercept, the header's
//! window presets, whether the image displays inverted, the code of padding pixels, the source
//! size), padding to an even offset, then width × height little-endian u16 values v, each
//! standing for the modality value intercept + slope · v. The image is resampled
//! (area-weighted) to at most `size` (default 1024, at most 4096) on its longer side; when the
//! values are whole numbers spanning less than 65,535 (every CR/DX) and the size is the
//! source's, they are exact.

use super::paths::StudyUid;
use super::session::Viewer;
use super::{App, WebError};
use crate::app::results::ReportSource;
use crate::imaging::Radiograph;
use crate::roles::Role;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Which {
    #[default]
    Current,
    Prior,
}

#[derive(serde::Deserialize)]
pub struct PixelQuery {
    #[serde(default)]
    image: Which,
    #[serde(default)]
    size: Option<usize>,
}

const DEFAULT_SIZE: usize = 1024;
const MAX_SIZE: usize = 4096;

/// A window preset the viewer offers.
#[derive(serde::Serialize)]
struct Preset {
    name: String,
    center: f64,
    width: f64,
}

/// The blob of the current or the prior image of a work item (from its report source).
async fn blob_of(app: &App, source: &ReportSource, which: Which) -> Result<String, WebError> {
    match which {
        Which::Current => Ok(source.source_sha256.clone()),
        Which::Prior => {
            let prior = source
                .priors
                .first()
                .cloned()
                .ok_or_else(|| WebError::not_found("this study was compared with no prior"))?;
            let study = prior.study_instance_uid.clone();
            let instances = app
                .state
                .store_call(move |s| s.study_instances(&study))
                .await?;
            instances
                .into_iter()
                .find(|(sop, _)| *sop == prior.sop_instance_uid)
                .map(|(_, sha)| sha)
                .ok_or_else(|| {
                    WebError::not_found(format!(
                        "the prior image {} is no longer in the store",
                        prior.sop_instance_uid
                    ))
                })
        }
    }
}

async fn decode(app: &App, sha: String) -> Result<Radiograph, WebError> {
    let store = app.state.store.clone();
    tokio::task::spawn_blocking(move || crate::store::decode(store.blobs(), &sha))
        .await
        .map_err(|e| WebError::internal(e.to_string()))?
        .map_err(|e| {
            WebError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("the image cannot be decoded: {e}"),
            )
        })
}

/// The windows the viewer offers: the header's, then the image's full range.
fn presets(
    display: &crate::imaging::header::DisplayAttributes,
    low: f32,
    high: f32,
) -> Vec<Preset> {
    let mut presets: Vec<Preset> = display
        .windows
        .iter()
        .enumerate()
        .map(|(i, w)| Preset {
            name: w
                .explanation
                .clone()
                .filter(|e| !e.trim().is_empty())
                .unwrap_or_else(|| format!("Header window {}", i + 1)),
            center: w.center,
            width: w.width,
        })
        .collect();
    presets.push(Preset {
        name: "Full range".into(),
        center: f64::from(low) + f64::from(high - low) / 2.0,
        width: f64::from(high - low).max(1.0),
    });
    presets
}

/// The viewer's body for `radiograph` at most `size` on its longer side. Padding pixels (Pixel
/// Padding Value) are sent as 65535, which the viewer draws black, and take no part in the
/// value range.
pub fn encode_pixels(radiograph: &Radiograph, size: usize) -> Vec<u8> {
    let (rows, cols) = (radiograph.rows(), radiograph.columns());
    let (h, w) = crate::imaging::resize::fit_longest_side(rows, cols, size.min(rows.max(cols)));
    let padding = radiograph.padding.as_ref();
    let is_image = |r: usize, c: usize| padding.is_none_or(|p| !p[(r, c)]);
    let (mut low, mut high) = (f32::INFINITY, f32::NEG_INFINITY);
    for ((r, c), &v) in radiograph.values.indexed_iter() {
        if v.is_finite() && is_image(r, c) {
            low = low.min(v);
            high = high.max(v);
        }
    }
    if !low.is_finite() {
        (low, high) = (0.0, 0.0);
    }
    // Padding takes the lowest image value before resampling, so that it bleeds into nothing.
    let source = match padding {
        Some(mask) => {
            let mut filled = radiograph.values.clone();
            ndarray::Zip::from(&mut filled).and(mask).for_each(|v, &p| {
                if p {
                    *v = low;
                }
            });
            std::borrow::Cow::Owned(filled)
        }
        None => std::borrow::Cow::Borrowed(&radiograph.values),
    };
    let values = crate::imaging::resize::resize(source.view(), h, w);
    // Codes 0..=65534 carry values; 65535 marks padding.
    const PADDING: u16 = 65_535;
    let whole = (h, w) == (rows, cols) && values.iter().all(|v| v.fract() == 0.0);
    let slope = if whole && high - low < 65_535.0 {
        1.0
    } else {
        f64::from(high - low).max(f64::MIN_POSITIVE) / 65_534.0
    };
    let intercept = f64::from(low);
    let display = &radiograph.header.display;
    let presets = presets(display, low, high);
    let meta = serde_json::json!({
        "width": w,
        "height": h,
        "slope": slope,
        "intercept": intercept,
        "padding": padding.is_some().then_some(PADDING),
        "presets": presets,
        "inverted": display.inverted,
        "source": [cols, rows],
    })
    .to_string();
    let mut body = Vec::with_capacity(8 + meta.len() + 2 * h * w);
    body.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    body.extend_from_slice(meta.as_bytes());
    if body.len() % 2 == 1 {
        body.push(b' ');
    }
    for ((r, c), &v) in values.indexed_iter() {
        // The source pixel under this one (nearest), for the padding mask.
        let (sr, sc) = ((r * rows) / h, (c * cols) / w);
        let q = if !is_image(sr, sc) {
            PADDING
        } else if v.is_finite() {
            ((f64::from(v) - intercept) / slope)
                .round()
                .clamp(0.0, 65_534.0) as u16
        } else {
            0
        };
        body.extend_from_slice(&q.to_le_bytes());
    }
    body
}

pub async fn pixels(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
    Query(q): Query<PixelQuery>,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    let size = q.size.unwrap_or(DEFAULT_SIZE);
    if size == 0 || size > MAX_SIZE {
        return Err(WebError::new(
            StatusCode::BAD_REQUEST,
            format!("size must be between 1 and {MAX_SIZE} pixels"),
        ));
    }
    let row = app.work_item(&uid).await?;
    let sha = blob_of(&app, &super::reading::report_source(&row)?, q.image).await?;
    let radiograph = decode(&app, sha).await?;
    let body = tokio::task::spawn_blocking(move || encode_pixels(&radiograph, size))
        .await
        .map_err(|e| WebError::internal(e.to_string()))?;
    let what = if q.image == Which::Prior {
        "prior image"
    } else {
        "image"
    };
    viewer
        .audit(
            &app,
            &format!("web: view {what}"),
            &format!("studies/{uid}"),
        )
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// The temporal subtraction (current − prior, aligned) as a grey PNG at the current image's
/// size: mid-grey no change, brighter denser now.
pub async fn subtraction(
    State(app): State<App>,
    viewer: Viewer,
    StudyUid(uid): StudyUid,
) -> Result<Response, WebError> {
    viewer.require(&[Role::Radiologist])?;
    let row = app.work_item(&uid).await?;
    let comparison = super::reading::analysis(&row)?
        .comparisons
        .into_iter()
        .next()
        .ok_or_else(|| WebError::not_found("this study was compared with no prior"))?;
    let source = super::reading::report_source(&row)?;
    let current = decode(&app, blob_of(&app, &source, Which::Current).await?).await?;
    let prior = decode(&app, blob_of(&app, &source, Which::Prior).await?).await?;
    let png = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let difference = crate::analysis::subtraction_image(&current, &prior, &comparison);
        let grey = crate::analysis::overlay::subtraction_grey(&difference);
        let mut png = Vec::new();
        grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| e.to_string())?;
        Ok(png)
    })
    .await
    .map_err(|e| WebError::internal(e.to_string()))?
    .map_err(WebError::internal)?;
    viewer
        .audit(&app, "web: view subtraction", &format!("studies/{uid}"))
        .await?;
    Ok(([(header::CONTENT_TYPE, "image/png")], png).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_values_at_full_size_come_back_exact() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("sample-dicom/nih_dx_implicit_le.dcm");
        let r = crate::dicom::read_file(&path, &Default::default()).unwrap();
        let body = encode_pixels(&r, 4096);
        let n = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        let meta: serde_json::Value = serde_json::from_slice(&body[4..4 + n]).unwrap();
        let start = (4 + n + 1) & !1;
        let (slope, intercept) = (
            meta["slope"].as_f64().unwrap(),
            meta["intercept"].as_f64().unwrap(),
        );
        assert_eq!(slope, 1.0);
        assert_eq!(meta["width"].as_u64().unwrap() as usize, r.columns());
        for (i, v) in r.values.iter().enumerate().step_by(997) {
            let q = u16::from_le_bytes([body[start + 2 * i], body[start + 2 * i + 1]]);
            assert_eq!(intercept + slope * f64::from(q), f64::from(*v));
        }
    }
}
