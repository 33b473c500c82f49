//! The greyscale transforms of DICOM PS3.3 C.11, on plain numbers.
//!
//! Stored pixel values become modality values through the [`ModalityLut`] (Rescale Slope and
//! Intercept, or a lookup table); modality values become display values through a
//! [`VoiTransform`] (a window with its VOI LUT Function, or a VOI lookup table). Output of the
//! VOI step is normalised to [0, 1] here, so 8- and 16-bit rendering share one path.

use serde::Serialize;

/// A DICOM lookup table: LUT Descriptor (entries, first value mapped, bits) and LUT Data.
#[derive(Debug, Clone, PartialEq)]
pub struct LookupTable {
    /// The input value that maps to the first entry.
    pub first_mapped: i64,
    /// Bits per entry (third value of the LUT Descriptor): outputs span 0 ..= 2^bits - 1.
    pub bits: u8,
    pub data: Vec<u16>,
    pub explanation: Option<String>,
}

impl LookupTable {
    /// The entry for `input`: inputs below the first mapped value take the first entry, inputs
    /// past the last take the last entry (PS3.3 C.11.1.1).
    #[inline]
    pub fn lookup(&self, input: f64) -> u16 {
        let index = (input.floor() as i64 - self.first_mapped).clamp(0, self.data.len() as i64 - 1);
        self.data[index as usize]
    }

    pub fn max_output(&self) -> f64 {
        ((1u32 << self.bits) - 1) as f64
    }
}

impl Serialize for LookupTable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut s = serializer.serialize_struct("LookupTable", 4)?;
        s.serialize_field("entries", &self.data.len())?;
        s.serialize_field("first_mapped", &self.first_mapped)?;
        s.serialize_field("bits", &self.bits)?;
        s.serialize_field("explanation", &self.explanation)?;
        s.end()
    }
}

/// Stored values to modality values (for CR/DX: values proportional to exposure or its log).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModalityLut {
    Rescale { slope: f64, intercept: f64 },
    Table(LookupTable),
}

impl ModalityLut {
    pub fn is_identity(&self) -> bool {
        matches!(self, ModalityLut::Rescale { slope, intercept } if *slope == 1.0 && *intercept == 0.0)
    }
}

/// VOI LUT Function (0028,1056), PS3.3 C.11.2.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    /// The VOI LUT Function's defined term.
    pub fn as_str(self) -> &'static str {
        match self {
            VoiFunction::Linear => "LINEAR",
            VoiFunction::LinearExact => "LINEAR_EXACT",
            VoiFunction::Sigmoid => "SIGMOID",
        }
    }
}

/// One window (Window Center and Width pair).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
    pub explanation: Option<String>,
}

impl Window {
    /// Whether the width is usable for this function (LINEAR needs >= 1, the others > 0).
    pub fn is_valid(&self) -> bool {
        match self.function {
            VoiFunction::Linear => self.width >= 1.0,
            VoiFunction::LinearExact | VoiFunction::Sigmoid => self.width > 0.0,
        }
    }

    /// Maps a modality value to [0, 1] (PS3.3 C.11.2.1.2.1, .3.2 and .3.1, with y in [0, 1]).
    #[inline]
    pub fn apply(&self, x: f64) -> f64 {
        let (c, w) = (self.center, self.width);
        match self.function {
            VoiFunction::Linear => {
                if x <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                    1.0
                } else {
                    (x - (c - 0.5)) / (w - 1.0) + 0.5
                }
            }
            VoiFunction::LinearExact => {
                if x <= c - w / 2.0 {
                    0.0
                } else if x > c + w / 2.0 {
                    1.0
                } else {
                    (x - c) / w + 0.5
                }
            }
            VoiFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
        }
    }
}

/// The value-of-interest step chosen for display.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VoiTransform {
    Window(Window),
    Table(LookupTable),
}

impl VoiTransform {
    /// Maps a modality value to [0, 1].
    #[inline]
    pub fn apply(&self, x: f64) -> f64 {
        match self {
            VoiTransform::Window(window) => window.apply(x),
            VoiTransform::Table(table) => table.lookup(x) as f64 / table.max_output(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(center: f64, width: f64, function: VoiFunction) -> Window {
        Window {
            center,
            width,
            function,
            explanation: None,
        }
    }

    #[test]
    fn linear_window_follows_the_standard_boundaries() {
        // PS3.3 C.11.2.1.2.1: c = 2048, w = 4096 maps x <= 0 to ymin and x > 4095 to ymax.
        let w = window(2048.0, 4096.0, VoiFunction::Linear);
        assert_eq!(w.apply(0.0), 0.0);
        assert_eq!(w.apply(4096.0), 1.0);
        assert!((w.apply(2047.5) - 0.5).abs() < 1e-12);
        // A width of 1 is a threshold at c - 0.5.
        let t = window(100.0, 1.0, VoiFunction::Linear);
        assert_eq!(t.apply(99.5), 0.0);
        assert_eq!(t.apply(99.51), 1.0);
    }

    #[test]
    fn linear_exact_and_sigmoid_centre_on_c() {
        let e = window(100.0, 50.0, VoiFunction::LinearExact);
        assert_eq!(e.apply(75.0), 0.0);
        assert!((e.apply(100.0) - 0.5).abs() < 1e-12);
        assert_eq!(e.apply(125.1), 1.0);
        let s = window(100.0, 50.0, VoiFunction::Sigmoid);
        assert!((s.apply(100.0) - 0.5).abs() < 1e-12);
        // y = 1 / (1 + exp(-4 (x - c) / w)) at x = c + w/4 is 1 / (1 + e^-1).
        assert!((s.apply(112.5) - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-12);
    }

    #[test]
    fn lookup_tables_clamp_outside_their_range() {
        let t = LookupTable {
            first_mapped: -2,
            bits: 8,
            data: vec![10, 20, 30],
            explanation: None,
        };
        assert_eq!(t.lookup(-100.0), 10);
        assert_eq!(t.lookup(-1.0), 20);
        assert_eq!(t.lookup(0.0), 30);
        assert_eq!(t.lookup(1000.0), 30);
        assert_eq!(VoiTransform::Table(t).apply(0.0), 30.0 / 255.0);
    }

    #[test]
    fn invalid_widths_are_recognised() {
        assert!(!window(0.0, 0.5, VoiFunction::Linear).is_valid());
        assert!(window(0.0, 0.5, VoiFunction::LinearExact).is_valid());
        assert!(!window(0.0, 0.0, VoiFunction::Sigmoid).is_valid());
    }
}
