//! WADO-RS's rendered resources (PS3.18 10.4.1.1.4, 10.4.1.3): an instance (or its frame 1) as
//! a picture, and thumbnails of an instance, a series or a study, as JPEG (the default) or PNG.
//!
//! `window=center,width[,linear|linear-exact|sigmoid]` overrides the header's window,
//! `viewport=columns,rows` fits the picture within that size, and `quality` (1 to 100) sets
//! JPEG's. A thumbnail fits within [`THUMBNAIL`] unless a viewport is given.

use super::{authorize, Operation};
use crate::app::archive::rendering::{render, Rendering};
use crate::app::archive::Scope;
use crate::imaging::lut::{VoiFunction, Window};
use crate::web::{App, WebError};
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// A thumbnail's viewport when none is asked for.
pub const THUMBNAIL: (u32, u32) = (256, 256);

/// The picture formats served.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Jpeg,
    Png,
}

fn bad(message: String) -> WebError {
    WebError::new(StatusCode::BAD_REQUEST, message)
}

/// What a rendered request's query asks: the rendering and JPEG's quality.
fn query(raw: &str) -> Result<(Rendering, u8), WebError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw)
        .map_err(|e| bad(format!("the query string does not parse ({e})")))?;
    let mut rendering = Rendering::default();
    let mut quality = 90;
    let numbers = |name: &str, value: &str| -> Result<Vec<f64>, WebError> {
        value
            .split(',')
            .map(|v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .ok_or_else(|| {
                        bad(format!(
                            "{name}={}: each part must be a number",
                            crate::excerpt::excerpt(value)
                        ))
                    })
            })
            .collect()
    };
    for (name, value) in pairs {
        match name.as_str() {
            "window" => {
                let (numeric, function) = match value.rsplit_once(',') {
                    Some((rest, f)) if f.trim().parse::<f64>().is_err() => (rest, Some(f.trim())),
                    _ => (value.as_str(), None),
                };
                let function = match function.map(str::to_ascii_lowercase).as_deref() {
                    None | Some("linear") => VoiFunction::Linear,
                    Some("linear-exact") => VoiFunction::LinearExact,
                    Some("sigmoid") => VoiFunction::Sigmoid,
                    Some(other) => {
                        return Err(bad(format!(
                            "window function {}: use linear, linear-exact or sigmoid",
                            crate::excerpt::excerpt(other)
                        )))
                    }
                };
                let [center, width] = numbers("window", numeric)?[..] else {
                    return Err(bad("window=center,width[,function]".into()));
                };
                rendering.window = Some(Window {
                    center,
                    width,
                    function,
                    explanation: None,
                });
            }
            "viewport" => {
                let [columns, rows] = numbers("viewport", &value)?[..] else {
                    return Err(bad("viewport=columns,rows".into()));
                };
                if !(1.0..=8192.0).contains(&columns) || !(1.0..=8192.0).contains(&rows) {
                    return Err(bad("a viewport is 1 to 8192 pixels each way".into()));
                }
                rendering.viewport = Some((columns as u32, rows as u32));
            }
            "quality" => {
                quality = value
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| bad("quality is 1 to 100".into()))?;
            }
            // PS3.18's annotation, charset and the like: not applied.
            _ => {}
        }
    }
    Ok((rendering, quality))
}

/// The format an Accept header takes: JPEG unless it takes PNG and not JPEG.
fn format(request: &Parts) -> Result<Format, WebError> {
    let Some(accept) = request
        .headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(Format::Jpeg);
    };
    let media: Vec<String> = accept
        .split(',')
        .map(|o| {
            o.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .collect();
    let takes = |m: &str| media.iter().any(|x| x == m || x == "*/*" || x == "image/*");
    if takes("image/jpeg") {
        Ok(Format::Jpeg)
    } else if takes("image/png") {
        Ok(Format::Png)
    } else {
        Err(WebError::new(
            StatusCode::NOT_ACCEPTABLE,
            "rendered images are served as image/jpeg or image/png",
        ))
    }
}

async fn rendered(
    app: App,
    request: Parts,
    scope: Scope,
    thumbnail: bool,
) -> Result<Response, WebError> {
    let caller = authorize(&app, &request, Operation::Retrieve).await?;
    super::retrieve::check_scope(&scope)?;
    let format = format(&request)?;
    let (mut rendering, quality) = query(request.uri.query().unwrap_or(""))?;
    if thumbnail && rendering.viewport.is_none() {
        rendering.viewport = Some(THUMBNAIL);
    }
    let picture = render(&app.state, &caller, &scope, rendering).await?;
    let encoded = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let written = match format {
            Format::Png => {
                picture.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            }
            Format::Jpeg => image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                .encode_image(&picture),
        };
        written.map(|()| out)
    })
    .await
    .map_err(|e| WebError::internal(format!("encoding the picture: {e}")))?
    .map_err(|e| WebError::internal(format!("encoding the picture: {e}")))?;
    let media = match format {
        Format::Jpeg => "image/jpeg",
        Format::Png => "image/png",
    };
    Ok(([(header::CONTENT_TYPE, media)], encoded).into_response())
}

pub async fn instance(
    State(app): State<App>,
    Path((study, series, instance)): Path<(String, String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    rendered(
        app,
        request,
        Scope::new(study, Some(series), Some(instance)),
        false,
    )
    .await
}

pub async fn frame(
    State(app): State<App>,
    Path((study, series, instance, frame)): Path<(String, String, String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    if frame.trim() != "1" {
        return Err(WebError::not_found(
            "radassist renders frame 1 only (radiographs have one frame)",
        ));
    }
    rendered(
        app,
        request,
        Scope::new(study, Some(series), Some(instance)),
        false,
    )
    .await
}

pub async fn instance_thumbnail(
    State(app): State<App>,
    Path((study, series, instance)): Path<(String, String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    rendered(
        app,
        request,
        Scope::new(study, Some(series), Some(instance)),
        true,
    )
    .await
}

pub async fn series_thumbnail(
    State(app): State<App>,
    Path((study, series)): Path<(String, String)>,
    request: Parts,
) -> Result<Response, WebError> {
    rendered(app, request, Scope::new(study, Some(series), None), true).await
}

pub async fn study_thumbnail(
    State(app): State<App>,
    Path(study): Path<String>,
    request: Parts,
) -> Result<Response, WebError> {
    rendered(app, request, Scope::new(study, None, None), true).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_parameters_are_read_and_bad_ones_refused() {
        let (r, q) = query("window=40,400,sigmoid&viewport=512,256&quality=75").unwrap();
        let w = r.window.unwrap();
        assert_eq!(
            (w.center, w.width, w.function),
            (40.0, 400.0, VoiFunction::Sigmoid)
        );
        assert_eq!(r.viewport, Some((512, 256)));
        assert_eq!(q, 75);
        let (r, _) = query("window=-100.5,2000").unwrap();
        assert_eq!(r.window.unwrap().function, VoiFunction::Linear);
        for bad in [
            "window=1",
            "window=a,b",
            "window=1,2,cubic",
            "viewport=0,10",
            "viewport=10",
            "quality=0",
        ] {
            assert_eq!(
                query(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
