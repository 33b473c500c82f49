//! The marks as a presentation state's graphic and text objects: each shape of
//! [`crate::analysis::marks`] as POLYLINEs and bounding-boxed text in PIXEL units, with the
//! overlay's proportions (its display-pixel sizes converted with the overlay's own scale) and
//! each mark's colour as CIELab Line and Text Styles.

use crate::analysis::marks::{Colour, Mark, Point, Shape, Side};
use crate::analysis::overlay::OVERLAY_SIZE;
use crate::draft::dataset::{sequence, text, Item};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// sRGB to DICOM's CIELab encoding (PS3.3 C.10.7.1.1: L* 0..100 and a*, b* -128..127 scaled to
/// 0..65535; D50 white, as ICC profiles use).
pub fn cielab(rgb: [u8; 3]) -> [u16; 3] {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    let (r, g, b) = (linear(rgb[0]), linear(rgb[1]), linear(rgb[2]));
    // sRGB to XYZ, Bradford-adapted to D50.
    let x = 0.436_074_7 * r + 0.385_064_9 * g + 0.143_080_4 * b;
    let y = 0.222_504_5 * r + 0.716_878_6 * g + 0.060_616_9 * b;
    let z = 0.013_932_2 * r + 0.097_104_5 * g + 0.714_173_3 * b;
    let f = |t: f64| {
        if t > 216.0 / 24389.0 {
            t.cbrt()
        } else {
            (24389.0 / 27.0 * t + 16.0) / 116.0
        }
    };
    let (fx, fy, fz) = (f(x / 0.9642), f(y), f(z / 0.8249));
    let (l, a, bb) = (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz));
    let scale = |v: f64, low: f64, high: f64| {
        ((v - low) / (high - low) * 65535.0)
            .round()
            .clamp(0.0, 65535.0) as u16
    };
    [
        scale(l, 0.0, 100.0),
        scale(a, -128.0, 127.0),
        scale(bb, -128.0, 127.0),
    ]
}

pub(super) fn us(tag: Tag, values: &[u16]) -> DataElement<Item> {
    DataElement::new(tag, VR::US, PrimitiveValue::U16(values.into()))
}

fn fl(tag: Tag, values: &[f32]) -> DataElement<Item> {
    DataElement::new(tag, VR::FL, PrimitiveValue::F32(values.into()))
}

/// How overlay display pixels map onto the film: the overlay's scale and its text height.
pub(super) struct Geometry {
    /// Overlay pixels per image pixel.
    scale: f64,
    /// The overlay's text height, in overlay pixels.
    text_px: f64,
}

impl Geometry {
    pub(super) fn of(rows: u32, columns: u32) -> Geometry {
        let (rows, columns) = (rows as usize, columns as usize);
        let (h, w) = crate::imaging::resize::fit_longest_side(
            rows,
            columns,
            OVERLAY_SIZE.min(rows.max(columns)),
        );
        Geometry {
            scale: w as f64 / columns as f64,
            text_px: (h.max(w) as f64 / 55.0).clamp(12.0, 22.0),
        }
    }

    /// The PIXEL position of image point `p` moved by (dx, dy) overlay pixels.
    fn at(&self, p: Point, dx: f64, dy: f64) -> [f32; 2] {
        [
            (p.x + 0.5 + dx / self.scale) as f32,
            (p.y + 0.5 + dy / self.scale) as f32,
        ]
    }

    /// A label's width in image pixels (DejaVu Sans Condensed Bold: about 0.6 of the height
    /// per character).
    fn text_width(&self, label: &str) -> f64 {
        label.chars().count() as f64 * self.text_px * 0.6
    }
}

fn line_style(colour: Colour) -> Item {
    InMemDicomObject::from_element_iter([
        us(tags::PATTERN_ON_COLOR_CIE_LAB_VALUE, &cielab(colour.rgb())),
        fl(tags::PATTERN_ON_OPACITY, &[1.0]),
        fl(tags::LINE_THICKNESS, &[2.0]),
        text(tags::LINE_DASHING_STYLE, VR::CS, "SOLID"),
        text(tags::SHADOW_STYLE, VR::CS, "OUTLINED"),
        fl(tags::SHADOW_OFFSET_X, &[1.0]),
        fl(tags::SHADOW_OFFSET_Y, &[1.0]),
        us(tags::SHADOW_COLOR_CIE_LAB_VALUE, &cielab([0, 0, 0])),
        fl(tags::SHADOW_OPACITY, &[1.0]),
    ])
}

/// A polyline through `points` (closed when its first and last points are the same).
fn polyline(points: &[[f32; 2]], colour: Colour) -> Item {
    let data: Vec<f32> = points.iter().flatten().copied().collect();
    let mut object = InMemDicomObject::from_element_iter([
        text(tags::GRAPHIC_ANNOTATION_UNITS, VR::CS, "PIXEL"),
        us(tags::GRAPHIC_DIMENSIONS, &[2]),
        us(tags::NUMBER_OF_GRAPHIC_POINTS, &[points.len() as u16]),
        fl(tags::GRAPHIC_DATA, &data),
        text(tags::GRAPHIC_TYPE, VR::CS, "POLYLINE"),
        sequence(tags::LINE_STYLE_SEQUENCE, vec![line_style(colour)]),
    ]);
    if points.first() == points.last() && points.len() > 2 {
        object.put(text(tags::GRAPHIC_FILLED, VR::CS, "N"));
    }
    object
}

fn text_style(colour: Colour) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::CSS_FONT_NAME, VR::LO, "sans-serif"),
        us(tags::TEXT_COLOR_CIE_LAB_VALUE, &cielab(colour.rgb())),
        text(tags::HORIZONTAL_ALIGNMENT, VR::CS, "LEFT"),
        text(tags::VERTICAL_ALIGNMENT, VR::CS, "TOP"),
        text(tags::SHADOW_STYLE, VR::CS, "OUTLINED"),
        fl(tags::SHADOW_OFFSET_X, &[1.0]),
        fl(tags::SHADOW_OFFSET_Y, &[1.0]),
        us(tags::SHADOW_COLOR_CIE_LAB_VALUE, &cielab([0, 0, 0])),
        fl(tags::SHADOW_OPACITY, &[1.0]),
        text(tags::UNDERLINED, VR::CS, "N"),
        text(tags::BOLD, VR::CS, "Y"),
        text(tags::ITALIC, VR::CS, "N"),
    ])
}

/// A text object in the box from `top_left` to `bottom_right`, in `units` (PIXEL or DISPLAY).
pub(super) fn text_object(
    label: &str,
    top_left: [f32; 2],
    bottom_right: [f32; 2],
    units: &str,
    colour: Colour,
) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::BOUNDING_BOX_ANNOTATION_UNITS, VR::CS, units),
        text(tags::UNFORMATTED_TEXT_VALUE, VR::ST, label),
        fl(tags::BOUNDING_BOX_TOP_LEFT_HAND_CORNER, &top_left),
        fl(tags::BOUNDING_BOX_BOTTOM_RIGHT_HAND_CORNER, &bottom_right),
        text(
            tags::BOUNDING_BOX_TEXT_HORIZONTAL_JUSTIFICATION,
            VR::CS,
            "LEFT",
        ),
        sequence(tags::TEXT_STYLE_SEQUENCE, vec![text_style(colour)]),
    ])
}

/// A label whose top left corner is `dx`, `dy` overlay pixels from `p`, as the overlay puts it.
fn label(g: &Geometry, p: Point, dx: f64, dy: f64, label: &str, colour: Colour) -> Item {
    let top_left = g.at(p, dx, dy);
    let bottom_right = [
        top_left[0] + (g.text_width(label) / g.scale) as f32,
        top_left[1] + (g.text_px * 1.2 / g.scale) as f32,
    ];
    text_object(label, top_left, bottom_right, "PIXEL", colour)
}

/// One mark as graphic and text objects.
pub(super) fn objects(g: &Geometry, mark: &Mark) -> (Vec<Item>, Vec<Item>) {
    let c = mark.colour;
    match &mark.shape {
        Shape::Level { at, half_width } => {
            let w = f64::from(*half_width);
            (
                vec![polyline(&[g.at(*at, -w, 0.0), g.at(*at, w, 0.0)], c)],
                vec![],
            )
        }
        Shape::Calliper {
            tip,
            to_row,
            label: text,
        } => {
            let end = Point {
                x: tip.x,
                y: *to_row,
            };
            let mut lines = vec![polyline(&[g.at(*tip, 0.0, 0.0), g.at(end, 0.0, 0.0)], c)];
            for p in [*tip, end] {
                lines.push(polyline(&[g.at(p, -7.0, 0.0), g.at(p, 7.0, 0.0)], c));
            }
            let middle = Point {
                x: tip.x,
                y: (tip.y + to_row) / 2.0,
            };
            (lines, vec![label(g, middle, 10.0, -9.0, text, c)])
        }
        Shape::Band {
            x,
            from_row,
            to_row,
            half_width,
            label: text,
        } => {
            let w = f64::from(*half_width);
            let (a, b) = (
                Point {
                    x: *x,
                    y: *from_row,
                },
                Point { x: *x, y: *to_row },
            );
            let outline = [
                g.at(a, -w, 0.0),
                g.at(a, w, 0.0),
                g.at(b, w, 0.0),
                g.at(b, -w, 0.0),
                g.at(a, -w, 0.0),
            ];
            let middle = Point {
                x: *x,
                y: (from_row + to_row) / 2.0,
            };
            (
                vec![polyline(&outline, c)],
                vec![label(g, middle, w + 4.0, -10.0, text, c)],
            )
        }
        Shape::Cross {
            at,
            label: text,
            side,
        } => {
            let arms = [
                (-9.0, 0.0, -3.0, 0.0),
                (3.0, 0.0, 9.0, 0.0),
                (0.0, -9.0, 0.0, -3.0),
                (0.0, 3.0, 0.0, 9.0),
            ];
            let lines = arms
                .iter()
                .map(|&(x0, y0, x1, y1)| polyline(&[g.at(*at, x0, y0), g.at(*at, x1, y1)], c))
                .collect();
            let (dx, dy) = match side {
                Side::Left => (-(g.text_width(text)) - 12.0, -10.0),
                Side::Right => (12.0, 4.0),
            };
            (lines, vec![label(g, *at, dx, dy, text, c)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cielab;

    #[test]
    fn cielab_of_white_black_and_red() {
        assert_eq!(cielab([255, 255, 255])[0], 65535);
        assert_eq!(cielab([0, 0, 0]), [0, 32896, 32896]);
        let red = cielab([255, 0, 0]);
        // sRGB red is about L* 54, a* 81, b* 70 (D50).
        assert!(
            (f64::from(red[0]) / 65535.0 * 100.0 - 54.3).abs() < 1.0,
            "{red:?}"
        );
        assert!(
            (f64::from(red[1]) / 65535.0 * 255.0 - 128.0 - 80.8).abs() < 1.5,
            "{red:?}"
        );
    }
}
