//! What is drawn on the radiograph, as marks in the image's own pixel coordinates: the single
//! description that the reading room's overlay ([`super::overlay`]), the presentation state
//! and the summary image all render, so each shows the same marks.
//!
//! A mark has a layer (reference levels, devices, measurements, landmarks), a colour (a device's
//! verdict, or the reference colour) and a shape. Positions are image pixels with a pixel's
//! centre at whole numbers (as the landmarks model gives them); sizes that do not scale with the
//! anatomy (tick and cross arms, a level line's width) are in display pixels of the overlay
//! ([`super::overlay::OVERLAY_SIZE`] on the longer side), so every renderer draws them alike.

use super::StudyAnalysis;
use crate::placement::{names, Device, DeviceCheck, LandmarkUsed, Verdict};

/// The named layers a presentation state groups the marks into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The carina and hemidiaphragm levels and the cavoatrial junction band.
    ReferenceLevels,
    /// Tube and line tips.
    Devices,
    /// The calliper each verdict rests on, with its value.
    Measurements,
    /// Landmarks no device uses.
    Landmarks,
}

impl Layer {
    pub const ALL: [Layer; 4] = [
        Layer::ReferenceLevels,
        Layer::Landmarks,
        Layer::Measurements,
        Layer::Devices,
    ];

    /// The layer's name (a Graphic Layer is CS: upper case, at most 16 characters).
    pub fn name(self) -> &'static str {
        match self {
            Layer::ReferenceLevels => "REFERENCE LEVELS",
            Layer::Devices => "DEVICES",
            Layer::Measurements => "MEASUREMENTS",
            Layer::Landmarks => "LANDMARKS",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Layer::ReferenceLevels => "carina and hemidiaphragm levels, cavoatrial junction band",
            Layer::Devices => "tube and line tips, coloured by verdict",
            Layer::Measurements => "the distance each verdict rests on",
            Layer::Landmarks => "landmarks found that no device uses",
        }
    }
}

/// A mark's colour: a verdict's, the reference levels' and landmarks', or plain white.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Verdict(Verdict),
    /// The junction band.
    Band,
    Reference,
    White,
    /// The test-model warning.
    Warning,
}

impl Colour {
    /// sRGB.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Verdict(Verdict::Appropriate) => [40, 220, 60],
            Colour::Verdict(Verdict::Borderline) | Colour::Band => [255, 176, 0],
            Colour::Verdict(Verdict::Malpositioned) | Colour::Warning => [255, 50, 50],
            Colour::Verdict(Verdict::NotAssessable | Verdict::Absent) => [90, 170, 255],
            Colour::Reference => [0, 230, 230],
            Colour::White => [255, 255, 255],
        }
    }
}

/// An image position: column (x) and row (y), pixel centres at whole numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// Which side of its point a label goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A horizontal level line through `at`, `half_width` display pixels each way.
    Level { at: Point, half_width: f32 },
    /// A vertical calliper from `tip` to row `to_row`, with end ticks and its label.
    Calliper {
        tip: Point,
        to_row: f64,
        label: String,
    },
    /// A shaded band between rows `from_row` and `to_row`, centred on column `x`, with a label.
    Band {
        x: f64,
        from_row: f64,
        to_row: f64,
        half_width: f32,
        label: String,
    },
    /// A cross at `at` with its label on `side`.
    Cross {
        at: Point,
        label: String,
        side: Side,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub layer: Layer,
    pub colour: Colour,
    pub shape: Shape,
}

fn landmark<'a>(check: &'a DeviceCheck, name: &str) -> Option<&'a LandmarkUsed> {
    check.landmarks.iter().find(|l| l.name == name)
}

fn point(l: &LandmarkUsed) -> Point {
    Point { x: l.x, y: l.y }
}

/// The device's short name, as the marks and legend label it.
pub fn short_name(device: Device) -> &'static str {
    match device {
        Device::EndotrachealTube => "ETT",
        Device::EnteralTube => "NGT",
        Device::CentralVenousCatheter => "CVC",
        Device::ChestTube => "Chest tube",
    }
}

fn calliper(tip: &LandmarkUsed, reference: &LandmarkUsed, mm: f64, colour: Colour) -> Mark {
    Mark {
        layer: Layer::Measurements,
        colour,
        shape: Shape::Calliper {
            tip: point(tip),
            to_row: reference.y,
            label: format!("{:.1} cm", mm / 10.0),
        },
    }
}

/// The marks of one device: its reference level or band, its calliper and its tip.
fn device_marks(study: &StudyAnalysis, check: &DeviceCheck) -> Vec<Mark> {
    let analysis = &study.current;
    let colour = Colour::Verdict(check.verdict);
    let value = |name: &str| {
        check
            .measurements
            .iter()
            .find(|m| m.name == name)
            .filter(|m| m.calibrated)
            .map(|m| m.value)
    };
    let mut marks = Vec::new();
    match check.device {
        Device::EndotrachealTube => {
            if let (Some(tip), Some(c), Some(mm)) = (
                landmark(check, names::ETT_TIP),
                landmark(check, names::CARINA),
                value("ett_tip_above_carina"),
            ) {
                marks.push(calliper(tip, c, mm, colour));
            }
        }
        Device::EnteralTube => {
            if let (Some(tip), Some(d), Some(mm)) = (
                landmark(check, names::NGT_TIP),
                landmark(check, names::LEFT_HEMIDIAPHRAGM),
                value("ngt_tip_below_left_hemidiaphragm"),
            ) {
                marks.push(Mark {
                    layer: Layer::ReferenceLevels,
                    colour: Colour::Reference,
                    shape: Shape::Level {
                        at: point(d),
                        half_width: 70.0,
                    },
                });
                marks.push(calliper(tip, d, mm, colour));
            }
        }
        Device::CentralVenousCatheter => {
            let threshold = |name: &str| check.thresholds.iter().find(|t| t.name == name);
            if let (Some(tip), Some(c), Some(low), Some(high), Some(spacing)) = (
                landmark(check, names::CVC_TIP),
                landmark(check, names::CARINA),
                threshold("junction_band_low_mm"),
                threshold("junction_band_high_mm"),
                analysis.placement.frame.spacing,
            ) {
                // The cavoatrial junction band, drawn in the image's own row direction.
                let sign = analysis.placement.frame.feet_sign;
                marks.push(Mark {
                    layer: Layer::ReferenceLevels,
                    colour: Colour::Band,
                    shape: Shape::Band {
                        x: c.x,
                        from_row: c.y + sign * low.value_mm / spacing.row_mm,
                        to_row: c.y + sign * high.value_mm / spacing.row_mm,
                        half_width: 70.0,
                        label: "cavoatrial junction band".into(),
                    },
                });
                if let Some(mm) = value("cvc_tip_below_carina") {
                    marks.push(calliper(tip, c, mm.abs(), colour));
                }
            }
        }
        Device::ChestTube => {}
    }
    if let Some(tip) = check.landmarks.first() {
        marks.push(Mark {
            layer: Layer::Devices,
            colour,
            shape: Shape::Cross {
                at: point(tip),
                label: format!("{} tip", short_name(check.device)),
                side: Side::Left,
            },
        });
    }
    marks
}

/// Every mark of the study's current image, in drawing order (reference levels first, so
/// devices draw over them).
pub fn marks(study: &StudyAnalysis) -> Vec<Mark> {
    let analysis = &study.current;
    let mut marks = Vec::new();
    if let Some(c) = analysis
        .landmarks
        .iter()
        .find(|l| l.name == names::CARINA && l.confidence >= 0.5)
    {
        marks.push(Mark {
            layer: Layer::ReferenceLevels,
            colour: Colour::Reference,
            shape: Shape::Level {
                at: Point { x: c.x, y: c.y },
                half_width: 60.0,
            },
        });
    }
    for check in &analysis.placement.devices {
        if check.verdict != Verdict::Absent {
            marks.extend(device_marks(study, check));
        }
    }
    // Every landmark found, including those no device uses.
    for l in analysis.landmarks.iter().filter(|l| l.confidence >= 0.5) {
        let used_by_device = analysis.placement.devices.iter().any(|d| {
            d.verdict != Verdict::Absent && d.landmarks.first().is_some_and(|t| t.name == l.name)
        });
        if !used_by_device {
            marks.push(Mark {
                layer: Layer::Landmarks,
                colour: Colour::Reference,
                shape: Shape::Cross {
                    at: Point { x: l.x, y: l.y },
                    label: l.name.replace('_', " "),
                    side: Side::Right,
                },
            });
        }
    }
    marks
}

/// The legend: the test-model warning, then each device's verdict and measurement.
pub fn legend(study: &StudyAnalysis) -> Vec<(String, Colour)> {
    let mut lines: Vec<(String, Colour)> = Vec::new();
    if study.warning.is_some() {
        lines.push(("TEST MODELS - NOT FOR CLINICAL USE".into(), Colour::Warning));
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
        if check.critical {
            text = format!("{text} - CRITICAL");
        }
        lines.push((text, Colour::Verdict(check.verdict)));
    }
    lines
}
