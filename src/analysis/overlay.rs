//! The analysis drawn on the radiograph, and the temporal subtraction image.
//!
//! The overlay is the display image (default VOI) in grey, at most 1024 pixels on its longer
//! side, with every landmark found (cross and name), each tube and line coloured by its
//! verdict (green appropriate, amber borderline, red malpositioned, blue not assessable), the
//! distance each verdict rests on drawn as a calliper with its value in cm, the reference
//! levels (carina, left hemidiaphragm, the cavoatrial junction band), a legend with each
//! device's statement, a 5 cm scale bar when the image is calibrated, and the test-model
//! warning when one was used: the marks of [`super::marks`], which the presentation state
//! draws too. [`summary`] adds the findings and "AI draft, not a diagnosis" for the summary
//! image. Text is DejaVu Sans Condensed Bold (fonts/LICENSE-DejaVu.txt)
//! with a dark outline, legible on lung and bone alike.

use super::marks::{self, Colour, Mark, Shape, Side};
use super::StudyAnalysis;
use ab_glyph::{FontRef, PxScale};
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_line_segment_mut, draw_text_mut, text_size};
use ndarray::{Array2, ArrayView2};
use std::path::Path;

const FONT: &[u8] = include_bytes!("fonts/DejaVuSansCondensed-Bold.ttf");
/// The overlay's longer side at most, in pixels.
pub const OVERLAY_SIZE: usize = 1024;

const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

fn rgb(colour: Colour) -> Rgb<u8> {
    Rgb(colour.rgb())
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

/// Draws one mark.
fn draw_mark(canvas: &mut Canvas, mark: &Mark) {
    let colour = rgb(mark.colour);
    match &mark.shape {
        Shape::Level { at, half_width } => {
            let p = canvas.at(at.x, at.y);
            canvas.line((p.0 - half_width, p.1), (p.0 + half_width, p.1), colour);
        }
        Shape::Calliper { tip, to_row, label } => {
            let a = canvas.at(tip.x, tip.y);
            let b = canvas.at(tip.x, *to_row);
            canvas.line(a, b, colour);
            for p in [a, b] {
                canvas.line((p.0 - 7.0, p.1), (p.0 + 7.0, p.1), colour);
            }
            canvas.label(a.0 + 10.0, (a.1 + b.1) / 2.0 - 9.0, label, colour);
        }
        Shape::Band {
            x,
            from_row,
            to_row,
            half_width,
            label,
        } => {
            let (a, b) = (canvas.at(*x, *from_row), canvas.at(*x, *to_row));
            canvas.shade(a.0 - half_width, a.1, a.0 + half_width, b.1, colour, 0.22);
            canvas.label(
                a.0 + half_width + 4.0,
                (a.1 + b.1) / 2.0 - 10.0,
                label,
                colour,
            );
        }
        Shape::Cross { at, label, side } => {
            let p = canvas.at(at.x, at.y);
            canvas.cross(p, colour);
            match side {
                Side::Left => {
                    let (tw, _) = text_size(canvas.text, &canvas.font, label);
                    canvas.label(p.0 - tw as f32 - 12.0, p.1 - 10.0, label, colour);
                }
                Side::Right => canvas.label(p.0 + 12.0, p.1 + 4.0, label, colour),
            }
        }
    }
}

/// The display image in grey, fitted to [`OVERLAY_SIZE`], on a canvas for drawing.
fn canvas(display: ArrayView2<f32>) -> Canvas {
    let (rows, cols) = display.dim();
    let mut canvas = Canvas::blank(rows, cols);
    let (w, h) = canvas.image.dimensions();
    let small = crate::imaging::resize::resize(display, h as usize, w as usize);
    for (x, y, p) in canvas.image.enumerate_pixels_mut() {
        let v = (small[(y as usize, x as usize)].clamp(0.0, 1.0) * 255.0).round() as u8;
        *p = Rgb([v, v, v]);
    }
    canvas
}

impl Canvas {
    /// A black canvas the overlay's size for a film of `rows` x `cols`.
    fn blank(rows: usize, cols: usize) -> Canvas {
        let (h, w) =
            crate::imaging::resize::fit_longest_side(rows, cols, OVERLAY_SIZE.min(rows.max(cols)));
        let text_px = (h.max(w) as f32 / 55.0).clamp(12.0, 22.0);
        Canvas {
            image: RgbImage::from_pixel(w as u32, h as u32, BLACK),
            scale: w as f64 / cols as f64,
            font: FontRef::try_from_slice(FONT).expect("the bundled font parses"),
            text: PxScale::from(text_px),
        }
    }
}

/// Draws the study's current-image analysis on its display image.
pub fn draw(display: ArrayView2<f32>, study: &StudyAnalysis) -> RgbImage {
    let mut canvas = canvas(display);
    for mark in marks::marks(study) {
        draw_mark(&mut canvas, &mark);
    }
    legend(&mut canvas, study);
    canvas.image
}

/// The marks alone as a bitmap the size of the film (`rows` x `columns`, true where a mark
/// is): drawn as the overlay draws them (at its size, labels included, no legend), then
/// scaled to the film, for the presentation state's overlay plane.
pub fn marks_mask(rows: usize, columns: usize, study: &StudyAnalysis) -> image::GrayImage {
    let mut canvas = Canvas::blank(rows, columns);
    for mark in marks::marks(study) {
        draw_mark(&mut canvas, &mark);
    }
    let mask = image::GrayImage::from_fn(canvas.image.width(), canvas.image.height(), |x, y| {
        let p = canvas.image.get_pixel(x, y);
        image::Luma([if p.0.iter().any(|&c| c > 100) { 255 } else { 0 }])
    });
    image::imageops::resize(
        &mask,
        columns as u32,
        rows as u32,
        image::imageops::FilterType::Nearest,
    )
}

/// The summary image: the overlay, and below it a band with the findings the draft states and
/// the words "AI draft, not a diagnosis: see the report", for viewers that show neither the
/// measurement report nor the presentation state.
pub fn summary(display: ArrayView2<f32>, study: &StudyAnalysis, findings: &[String]) -> RgbImage {
    let film = draw(display, study);
    let (rows, cols) = display.dim();
    let mut canvas = Canvas::blank(rows, cols);
    let line_height = canvas.text.y * 1.3;
    let mut lines: Vec<(String, Rgb<u8>)> = vec![(
        "AI draft, not a diagnosis: see the report".into(),
        rgb(Colour::Warning),
    )];
    let white = rgb(Colour::White);
    lines.extend(
        wrap(
            &canvas,
            &findings_line(findings),
            film.width() as f32 - 24.0,
        )
        .into_iter()
        .map(|l| (l, white)),
    );
    let footer = (12.0 + line_height * lines.len() as f32).ceil() as u32;
    let mut image = RgbImage::from_pixel(film.width(), film.height() + footer, BLACK);
    image::imageops::replace(&mut image, &film, 0, 0);
    canvas.image = image;
    for (i, (text, colour)) in lines.iter().enumerate() {
        let y = film.height() as f32 + 6.0 + line_height * i as f32;
        canvas.label(12.0, y, text, *colour);
    }
    canvas.image
}

fn findings_line(findings: &[String]) -> String {
    if findings.is_empty() {
        "Findings: none stated by the models.".into()
    } else {
        format!("Findings: {}.", findings.join("; "))
    }
}

/// `text` broken into lines no wider than `width` display pixels (a word longer than a line
/// is cut).
fn wrap(canvas: &Canvas, text: &str, width: f32) -> Vec<String> {
    let fits = |t: &str| text_size(canvas.text, &canvas.font, t).0 as f32 <= width;
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        let candidate = if line.is_empty() {
            word.to_string()
        } else {
            format!("{line} {word}")
        };
        if fits(&candidate) || line.is_empty() {
            line = candidate;
            while !fits(&line) && line.chars().count() > 1 {
                line.pop();
            }
        } else {
            lines.push(std::mem::replace(&mut line, word.to_string()));
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

fn legend(canvas: &mut Canvas, study: &StudyAnalysis) {
    let lines: Vec<(String, Rgb<u8>)> = marks::legend(study)
        .into_iter()
        .map(|(text, colour)| (text, rgb(colour)))
        .collect();
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
        let white = rgb(Colour::White);
        if length < w as f32 / 2.0 {
            canvas.line((x1 - length, y), (x1, y), white);
            canvas.label(x1 - length, y - canvas.text.y - 6.0, "5 cm", white);
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
