//! Landmarks in image pixels to distances in mm at the patient plane.
//!
//! The radiograph's header says how far apart pixel centres are at the patient (Pixel Spacing,
//! or Imager Pixel Spacing corrected by the magnification factor, or, failing both, at the
//! detector) and which way the patient lies in the image (Patient Orientation: the first value
//! is the direction of increasing column, the second of increasing row). [`PatientFrame`] turns
//! two points into craniocaudal and left-right offsets in mm, in the patient's own directions,
//! so rules read "the tip is 45 mm above the carina" however the film was hung. Without any
//! spacing the offsets are in pixels and every measurement says it is uncalibrated.

use crate::dicom::{Spacing, SpacingSource};
use crate::imaging::ImageHeader;
use serde::{Deserialize, Serialize};

/// A point on the image: column and row in pixels (pixel centres at integers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImagePoint {
    pub x: f64,
    pub y: f64,
}

/// The unit a measurement is in: mm at the patient plane, or pixels when uncalibrated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LengthUnit {
    Mm,
    Px,
}

impl LengthUnit {
    /// The unit's symbol, as reports and the API write it (and serde names it).
    pub fn symbol(self) -> &'static str {
        match self {
            LengthUnit::Mm => "mm",
            LengthUnit::Px => "px",
        }
    }
}

/// How image directions relate to the patient, with the spacing measurements use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatientFrame {
    pub spacing: Option<Spacing>,
    pub spacing_source: SpacingSource,
    pub rows: u32,
    pub columns: u32,
    /// +1 when the row index grows towards the feet (the usual hanging), -1 towards the head.
    pub feet_sign: f64,
    /// +1 when the column index grows towards the patient's left (the usual frontal hanging).
    pub left_sign: f64,
    /// True when Patient Orientation was missing or unreadable and the usual frontal hanging
    /// (row direction to the patient's left, column direction to the feet) was assumed.
    pub orientation_assumed: bool,
}

impl PatientFrame {
    pub fn from_header(header: &ImageHeader) -> PatientFrame {
        let left = header.acquisition.left_sign();
        let feet = header.acquisition.feet_sign();
        PatientFrame {
            spacing: header.geometry.patient_spacing,
            spacing_source: header.geometry.spacing_source,
            rows: header.pixels.rows,
            columns: header.pixels.columns,
            feet_sign: feet.unwrap_or(1.0),
            left_sign: left.unwrap_or(1.0),
            orientation_assumed: left.is_none() || feet.is_none(),
        }
    }

    pub fn calibrated(&self) -> bool {
        self.spacing.is_some()
    }

    pub fn unit(&self) -> LengthUnit {
        if self.calibrated() {
            LengthUnit::Mm
        } else {
            LengthUnit::Px
        }
    }

    fn row_scale(&self) -> f64 {
        self.spacing.map_or(1.0, |s| s.row_mm)
    }

    fn column_scale(&self) -> f64 {
        self.spacing.map_or(1.0, |s| s.column_mm)
    }

    /// How far `a` lies below `b` (towards the feet), in mm (px when uncalibrated); negative
    /// when `a` is above `b`.
    pub fn below(&self, a: ImagePoint, b: ImagePoint) -> f64 {
        (a.y - b.y) * self.row_scale() * self.feet_sign
    }

    /// How far `a` lies to the patient's left of `b`, in mm (px when uncalibrated); negative on
    /// the patient's right.
    pub fn left_of(&self, a: ImagePoint, b: ImagePoint) -> f64 {
        (a.x - b.x) * self.column_scale() * self.left_sign
    }

    /// The straight distance from `a` to `b`, in mm (px when uncalibrated).
    pub fn distance(&self, a: ImagePoint, b: ImagePoint) -> f64 {
        let dy = (a.y - b.y) * self.row_scale();
        let dx = (a.x - b.x) * self.column_scale();
        dx.hypot(dy)
    }

    /// The point's distance to the nearest edge of the image, in mm (px when uncalibrated).
    pub fn distance_to_edge(&self, p: ImagePoint) -> f64 {
        let last_column = f64::from(self.columns.max(1) - 1);
        let last_row = f64::from(self.rows.max(1) - 1);
        let dx = p.x.min(last_column - p.x) * self.column_scale();
        let dy = p.y.min(last_row - p.y) * self.row_scale();
        dx.min(dy)
    }

    /// The frame of the same image mirrored left to right (for tests of the rules).
    pub fn mirrored(&self, p: ImagePoint) -> ImagePoint {
        ImagePoint {
            x: f64::from(self.columns.max(1) - 1) - p.x,
            y: p.y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(spacing: Option<Spacing>, orientation: (f64, f64)) -> PatientFrame {
        PatientFrame {
            spacing,
            spacing_source: if spacing.is_some() {
                SpacingSource::PixelSpacing
            } else {
                SpacingSource::Uncalibrated
            },
            rows: 1000,
            columns: 800,
            feet_sign: orientation.1,
            left_sign: orientation.0,
            orientation_assumed: false,
        }
    }

    #[test]
    fn offsets_follow_spacing_and_orientation() {
        let spacing = Some(Spacing {
            row_mm: 0.2,
            column_mm: 0.1,
        });
        let a = ImagePoint { x: 300.0, y: 700.0 };
        let b = ImagePoint { x: 400.0, y: 500.0 };
        let usual = frame(spacing, (1.0, 1.0));
        assert!((usual.below(a, b) - 40.0).abs() < 1e-9);
        assert!((usual.left_of(a, b) + 10.0).abs() < 1e-9);
        assert!((usual.distance(a, b) - 10f64.hypot(40.0)).abs() < 1e-9);
        // Hung upside down and mirrored: the same anatomy reads the same.
        let flipped = frame(spacing, (-1.0, -1.0));
        let a2 = ImagePoint {
            x: 799.0 - a.x,
            y: 999.0 - a.y,
        };
        let b2 = ImagePoint {
            x: 799.0 - b.x,
            y: 999.0 - b.y,
        };
        assert!((flipped.below(a2, b2) - 40.0).abs() < 1e-9);
        assert!((flipped.left_of(a2, b2) + 10.0).abs() < 1e-9);
        // No spacing: pixels.
        let bare = frame(None, (1.0, 1.0));
        assert_eq!(bare.unit(), LengthUnit::Px);
        assert!((bare.below(a, b) - 200.0).abs() < 1e-9);
        assert!((usual.distance_to_edge(ImagePoint { x: 5.0, y: 500.0 }) - 0.5).abs() < 1e-9);
    }
}
