//! An instance rendered for a person's eyes (WADO-RS's rendered and thumbnail resources): its
//! radiograph decoded as the analysis decodes it, shown through a window (the header's first,
//! or the caller's), MONOCHROME1 inverted, padding black, fitted within a viewport, as 8-bit
//! grey. A study's or series' thumbnail is its first received radiograph's.

use super::super::state::State;
use super::super::{Caller, Error};
use super::{instances, Scope};
use crate::imaging::display::{choose_voi, display_values, VoiChoice};
use crate::imaging::lut::{VoiTransform, Window};

/// How to render: the window (None: the header's default) and the viewport (columns, rows)
/// the image is fitted within (None: its own size).
#[derive(Debug, Clone, Default)]
pub struct Rendering {
    pub window: Option<Window>,
    pub viewport: Option<(u32, u32)>,
}

/// The size (rows, columns) of `rows` x `columns` fitted within `viewport`, never larger.
fn fitted(rows: usize, columns: usize, viewport: Option<(u32, u32)>) -> (usize, usize) {
    let Some((width, height)) = viewport else {
        return (rows, columns);
    };
    let scale = (f64::from(width) / columns as f64)
        .min(f64::from(height) / rows as f64)
        .min(1.0);
    (
        ((rows as f64 * scale).round() as usize).max(1),
        ((columns as f64 * scale).round() as usize).max(1),
    )
}

/// The first radiograph of `scope` rendered (audited as `caller`'s retrieval).
pub async fn render(
    state: &State,
    caller: &Caller,
    scope: &Scope,
    rendering: Rendering,
) -> Result<image::GrayImage, Error> {
    let held = instances(state, scope).await?;
    let radiograph = held
        .iter()
        .find(|h| h.entry.made.is_none())
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} holds no radiograph to render (radassist renders the images it received; its own results are DICOM objects to retrieve)",
                scope.path()
            ))
        })?;
    let sha256 = radiograph.entry.sha256.clone();
    let store = state.store.clone();
    let image = tokio::task::spawn_blocking(move || {
        let radiograph = crate::store::decode(store.blobs(), &sha256).map_err(Error::Invalid)?;
        let voi = match rendering.window {
            Some(window) if window.is_valid() => VoiTransform::Window(window),
            Some(window) => {
                return Err(Error::Invalid(format!(
                    "a window of width {} cannot be shown: give a width of at least 1",
                    window.width
                )))
            }
            None => choose_voi(&radiograph, &VoiChoice::Default)
                .map_err(|e| Error::Invalid(e.to_string()))?,
        };
        let display = display_values(&radiograph, &voi);
        let (rows, columns) = display.dim();
        let (h, w) = fitted(rows, columns, rendering.viewport);
        let small = if (h, w) == (rows, columns) {
            display
        } else {
            crate::imaging::resize::resize(display.view(), h, w)
        };
        let pixels =
            crate::imaging::output::quantise(small.view(), crate::imaging::output::PngDepth::Eight);
        image::GrayImage::from_raw(w as u32, h as u32, pixels)
            .ok_or_else(|| Error::internal("rendering", "the image's size and pixels disagree"))
    })
    .await
    .map_err(|e| Error::internal("rendering", e))??;
    state
        .audit(caller, "dicomweb-rendered", &scope.path())
        .await?;
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::fitted;

    #[test]
    fn images_fit_their_viewport_keeping_their_shape_and_never_grow() {
        assert_eq!(fitted(2000, 1000, Some((100, 100))), (100, 50));
        assert_eq!(fitted(1000, 2000, Some((100, 300))), (50, 100));
        assert_eq!(fitted(100, 50, Some((1000, 1000))), (100, 50));
        assert_eq!(fitted(100, 50, None), (100, 50));
        assert_eq!(fitted(5000, 1, Some((10, 10))), (10, 1));
    }
}
