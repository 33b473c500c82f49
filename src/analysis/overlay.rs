//! The analysis drawn on the radiograph, and the temporal subtraction image.
//!
//! The overlay is the display image (default VOI) in grey, at most 1024 pixels on its longer
//! side, with every landmark found (cross and name), each tube and line coloured by its
//! verdict (green appropriate, amber borderline, red malpositioned, blue not assessable), the
//! distance each verdict rests on drawn as a calliper with its value in cm, the reference
//! levels (carina, left hemidiaphragm, the cavoatrial junction band), a legend with each
//! device's statement, a 5 cm scale bar when the image is calibrated, and the test-model
//! warning when one was used. Text is DejaVu Sans Condensed Bold (fonts/LICENSE-DejaVu.txt)
//! with a dark outline, legible on lung and bone alike.

use super::StudyAnalysis;
use crate::placement::{names, Device, DeviceCheck, LandmarkUsed, Verdict};
use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_line_segment_mut, draw_text_mut, text_size};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

const FONT: &[u8] = include_bytes!("fonts/DejaVuSansCondensed-Bold.ttf");
/// The overlay's longer side at most, in pixels.
pub const OVERLAY_SIZE: usize = 1024;

const GREEN: Rgb<u8> = Rgb([40, 220, 60]);
const AMBER: Rgb<u8> = Rgb([255, 176, 0]);
const RED: Rgb<u8> = Rgb([255, 50, 50]);
const BLUE: Rgb<u8> = Rgb([90, 170, 255]);
const CYAN: Rgb<u8> = Rgb([0, 230, 230]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

fn colour(verdict: Verdict) -> Rgb<u8> {
    match verdict {
        Verdict::Appropriate => GREEN,
        Verdict::Borderline => AMBER,
        Verdict::Malpositioned => RED,
        Verdict::NotAssessable | Verdict::Absent => BLUE,
    }
}

struct Canvas {
    image: RgbImage,
    /// Overlay pixels per image pixel.
    scale: f64,
    font: FontRef<'static>,
    text: PxScale,
}

impl Canvas {
    fn at(&self, x: f64, y: f64) -> (f32, f32) {
        (
            ((x + 0.5) * self.scale - 0.5) as f32,
            ((y + 0.5) * self.scale - 0.5) as f32,
        )
    }

    /// A line three pixels wide with a dark edge.
    fn line(&mut self, a: (f32, f32), b: (f32, f32), colour: Rgb<u8>) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let length = dx.hypot(dy).max(1e-3);
        let (nx, ny) = (-dy / length, dx / length);
        for (k, c) in [
            (-2.0, BLACK),
            (2.0, BLACK),
            (-1.0, colour),
            (0.0, colour),
            (1.0, colour),
        ] {
            draw_line_segment_mut(
                &mut self.image,
                (a.0 + nx * k, a.1 + ny * k),
                (b.0 + nx * k, b.1 + ny * k),
                c,
            );
        }
    }

    fn label(&mut self, x: f32, y: f32, text: &str, colour: Rgb<u8>) {
        let (x, y) = (x.round() as i32, y.round() as i32);
        for (dx, dy) in [
            (-1, -1),
            (-1, 1),
            (1, -1),
            (1, 1),
            (0, 2),
            (2, 0),
            (0, -2),
            (-2, 0),
        ] {
            draw_text_mut(
                &mut self.image,
                BLACK,
                x + dx,
                y + dy,
                self.text,
                &self.font,
                text,
            );
        }
        draw_text_mut(&mut self.image, colour, x, y, self.text, &self.font, text);
    }

    fn cross(&mut self, p: (f32, f32), colour: Rgb<u8>) {
        let r = 9.0;
        self.line((p.0 - r, p.1), (p.0 - 3.0, p.1), colour);
        self.line((p.0 + 3.0, p.1), (p.0 + r, p.1), colour);
        self.line((p.0, p.1 - r), (p.0, p.1 - 3.0), colour);
        self.line((p.0, p.1 + 3.0), (p.0, p.1 + r), colour);
    }

    /// Blends a rectangle over the image (alpha 0..1).
    fn shade(&mut self, x0: f32, y0: f32, x1: f32, y1: f32, colour: Rgb<u8>, alpha: f32) {
        let (w, h) = self.image.dimensions();
        let clamp = |v: f32, max: u32| v.round().clamp(0.0, max as f32) as u32;
        for y in clamp(y0.min(y1), h)..clamp(y0.max(y1), h) {
            for x in clamp(x0.min(x1), w)..clamp(x0.max(x1), w) {
                let p = self.image.get_pixel_mut(x, y);
                for c in 0..3 {
                    p[c] = (f32::from(p[c]) * (1.0 - alpha) + f32::from(colour[c]) * alpha) as u8;
                }
            }
        }
    }
}

fn landmark<'a>(check: &'a DeviceCheck, name: &str) -> Option<&'a LandmarkUsed> {
    check.landmarks.iter().find(|l| l.name == name)
}

fn short_name(device: Device) -> &'static str {
    match device {
        Device::EndotrachealTube => "ETT",
        Device::EnteralTube => "NGT",
        Device::CentralVenousCatheter => "CVC",
        Device::ChestTube => "Chest tube",
    }
}

/// A vertical calliper from `tip` to the level of `reference`, labelled with `mm`.
fn calliper(
    canvas: &mut Canvas,
    tip: &LandmarkUsed,
    reference: &LandmarkUsed,
    mm: f64,
    colour: Rgb<u8>,
) {
    let a = canvas.at(tip.x, tip.y);
    let b = canvas.at(tip.x, reference.y);
    canvas.line(a, b, colour);
    for p in [a, b] {
        canvas.line((p.0 - 7.0, p.1), (p.0 + 7.0, p.1), colour);
    }
    let text = format!("{:.1} cm", mm / 10.0);
    canvas.label(a.0 + 10.0, (a.1 + b.1) / 2.0 - 9.0, &text, colour);
}

/// Draws the study's current-image analysis on its display image.
pub fn draw(display: ArrayView2<f32>, study: &StudyAnalysis) -> RgbImage {
    let (rows, cols) = display.dim();
    let (h, w) =
        crate::imaging::resize::fit_longest_side(rows, cols, OVERLAY_SIZE.min(rows.max(cols)));
    let small = crate::imaging::resize::resize(display, h, w);
    let image = RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let v = (small[(y as usize, x as usize)].clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([v, v, v])
    });
    let text_px = (h.max(w) as f32 / 55.0).clamp(12.0, 22.0);
    let mut canvas = Canvas {
        image,
        scale: w as f64 / cols as f64,
        font: FontRef::try_from_slice(FONT).expect("the bundled font parses"),
        text: PxScale::from(text_px),
    };
    let analysis = &study.current;
    let carina = analysis.landmarks.iter().find(|l| l.name == names::CARINA);
    // Reference levels first, so devices draw over them.
    if let Some(c) = carina.filter(|c| c.confidence >= 0.5) {
        let p = canvas.at(c.x, c.y);
        canvas.line((p.0 - 60.0, p.1), (p.0 + 60.0, p.1), CYAN);
    }
    for check in &analysis.placement.devices {
        if check.verdict == Verdict::Absent {
            continue;
        }
        let colour = colour(check.verdict);
        let value = |name: &str| {
            check
                .measurements
                .iter()
                .find(|m| m.name == name)
                .filter(|m| m.calibrated)
                .map(|m| m.value)
        };
        match check.device {
            Device::EndotrachealTube => {
                if let (Some(tip), Some(c), Some(mm)) = (
                    landmark(check, names::ETT_TIP),
                    landmark(check, names::CARINA),
                    value("ett_tip_above_carina"),
                ) {
                    calliper(&mut canvas, tip, c, mm, colour);
                }
            }
            Device::EnteralTube => {
                if let (Some(tip), Some(d), Some(mm)) = (
                    landmark(check, names::NGT_TIP),
                    landmark(check, names::LEFT_HEMIDIAPHRAGM),
                    value("ngt_tip_below_left_hemidiaphragm"),
                ) {
                    let p = canvas.at(d.x, d.y);
                    canvas.line((p.0 - 70.0, p.1), (p.0 + 70.0, p.1), CYAN);
                    calliper(&mut canvas, tip, d, mm, colour);
                }
            }
            Device::CentralVenousCatheter => {
                let low = check
                    .thresholds
                    .iter()
                    .find(|t| t.name == "junction_band_low_mm");
                let high = check
                    .thresholds
                    .iter()
                    .find(|t| t.name == "junction_band_high_mm");
                if let (Some(tip), Some(c), Some(low), Some(high), Some(spacing)) = (
                    landmark(check, names::CVC_TIP),
                    landmark(check, names::CARINA),
                    low,
                    high,
                    analysis.placement.frame.spacing,
                ) {
                    // The cavoatrial junction band, drawn in the image's own row direction.
                    let sign = analysis.placement.frame.feet_sign;
                    let y0 = c.y + sign * low.value_mm / spacing.row_mm;
                    let y1 = c.y + sign * high.value_mm / spacing.row_mm;
                    let (a, b) = (canvas.at(c.x, y0), canvas.at(c.x, y1));
                    canvas.shade(a.0 - 70.0, a.1, a.0 + 70.0, b.1, AMBER, 0.22);
                    canvas.label(
                        a.0 + 74.0,
                        (a.1 + b.1) / 2.0 - 10.0,
                        "cavoatrial junction band",
                        AMBER,
                    );
                    if let Some(mm) = value("cvc_tip_below_carina") {
                        calliper(&mut canvas, tip, c, mm.abs(), colour);
                    }
                }
            }
            Device::ChestTube => {}
        }
        if let Some(tip) = check.landmarks.first() {
            let p = canvas.at(tip.x, tip.y);
            canvas.cross(p, colour);
            let text = format!("{} tip", short_name(check.device));
            let (tw, _) = text_size(canvas.text, &canvas.font, &text);
            canvas.label(p.0 - tw as f32 - 12.0, p.1 - 10.0, &text, colour);
        }
    }
    // Every landmark found, including those no device uses.
    for l in analysis.landmarks.iter().filter(|l| l.confidence >= 0.5) {
        let used_by_device = analysis.placement.devices.iter().any(|d| {
            d.verdict != Verdict::Absent && d.landmarks.first().is_some_and(|t| t.name == l.name)
        });
        if !used_by_device {
            let p = canvas.at(l.x, l.y);
            canvas.cross(p, CYAN);
            canvas.label(p.0 + 12.0, p.1 + 4.0, &l.name.replace('_', " "), CYAN);
        }
    }
    legend(&mut canvas, study);
    canvas.image
}

fn legend(canvas: &mut Canvas, study: &StudyAnalysis) {
    let mut lines: Vec<(String, Rgb<u8>)> = Vec::new();
    if study.warning.is_some() {
        lines.push(("TEST MODELS - NOT FOR CLINICAL USE".into(), RED));
    }
    for check in &study.current.placement.devices {
        let mut text = format!("{}: {}", short_name(check.device), check.verdict.as_str());
        if let Some(m) = check.measurements.first().filter(|m| m.calibrated) {
            // Each measurement is signed: positive in the direction its name says.
            let (positive, negative) = match m.name.as_str() {
                "ett_tip_above_carina" => ("above carina", "below carina"),
                "ngt_tip_below_left_hemidiaphragm" => {
                    ("below L hemidiaphragm", "above L hemidiaphragm")
                }
                _ => ("below carina", "above carina"),
            };
            let reference = if m.value >= 0.0 { positive } else { negative };
            text = format!("{text}, tip {:.1} cm {reference}", m.value.abs() / 10.0);
        }
        if let Some(side) = check.side {
            text = format!("{text}, {side:?}")
                .replace("Left", "left")
                .replace("Right", "right");
        }
        let text = if check.critical {
            format!("{text} - CRITICAL")
        } else {
            text
        };
        lines.push((text, colour(check.verdict)));
    }
    let line_height = canvas.text.y * 1.25;
    let width = lines
        .iter()
        .map(|(t, _)| text_size(canvas.text, &canvas.font, t).0)
        .max()
        .unwrap_or(0) as f32;
    canvas.shade(
        4.0,
        4.0,
        width + 20.0,
        12.0 + line_height * lines.len() as f32,
        BLACK,
        0.6,
    );
    for (i, (text, colour)) in lines.iter().enumerate() {
        canvas.label(12.0, 8.0 + line_height * i as f32, text, *colour);
    }
    // A 5 cm scale bar, bottom right.
    if let Some(spacing) = study.current.placement.frame.spacing {
        let length = (50.0 / spacing.column_mm * canvas.scale) as f32;
        let (w, h) = canvas.image.dimensions();
        let (x1, y) = (w as f32 - 16.0, h as f32 - 20.0);
        if length < w as f32 / 2.0 {
            canvas.line((x1 - length, y), (x1, y), WHITE);
            canvas.label(x1 - length, y - canvas.text.y - 6.0, "5 cm", WHITE);
        }
    }
}

/// The subtraction as an 8-bit grey PNG: mid-grey is no change, brighter is denser now,
/// darker is denser on the prior (1 display unit = 255 grey levels); black where the prior
/// does not cover the current image.
pub fn subtraction_png(difference: &Array2<Option<f32>>, path: &Path) -> image::ImageResult<()> {
    subtraction_grey(difference).save(path)
}

/// The subtraction as an 8-bit grey image (see [`subtraction_png`]).
pub fn subtraction_grey(difference: &Array2<Option<f32>>) -> image::GrayImage {
    let (rows, cols) = difference.dim();
    image::GrayImage::from_fn(cols as u32, rows as u32, |x, y| {
        let v = match difference[(y as usize, x as usize)] {
            Some(d) => (128.0 + d * 255.0).round().clamp(1.0, 255.0) as u8,
            None => 0,
        };
        image::Luma([v])
    })
}
