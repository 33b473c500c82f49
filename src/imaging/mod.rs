//! The canonical radiograph and what follows decoding, without any DICOM.
//!
//! A [`Radiograph`] is the header ([`ImageHeader`]: identity, acquisition, geometry, encoding,
//! display attributes) plus the modality values as `f32`, rows x columns, after the Modality LUT.
//! The display pipeline ([`display`]) is a separate, explicit step: VOI window or LUT, then
//! MONOCHROME1 / Presentation LUT inversion, giving values in [0, 1]. [`resize`] shrinks by area
//! averaging, and [`output`] writes PNG and `.npy` files.

pub mod display;
pub mod header;
pub mod lut;
pub mod output;
pub mod resize;

pub use header::ImageHeader;
use ndarray::Array2;

/// One decoded radiograph: the canonical type that every analysis sees.
#[derive(Debug, Clone)]
pub struct Radiograph {
    pub header: ImageHeader,
    /// Modality values (after Rescale or the Modality LUT, before VOI), rows x columns.
    pub values: Array2<f32>,
    /// Pixels that Pixel Padding Value marks as outside the image (true = padding).
    pub padding: Option<Array2<bool>>,
}

impl Radiograph {
    /// Builds the radiograph from modality values and padding flags (row-major, one per pixel).
    pub fn new(header: ImageHeader, values: Vec<f32>, padding: Option<Vec<bool>>) -> Self {
        let shape = (header.pixels.rows as usize, header.pixels.columns as usize);
        let values = Array2::from_shape_vec(shape, values).expect("one value per pixel");
        let padding =
            padding.map(|mask| Array2::from_shape_vec(shape, mask).expect("one flag per pixel"));
        Radiograph {
            header,
            values,
            padding,
        }
    }

    pub fn rows(&self) -> usize {
        self.values.nrows()
    }

    pub fn columns(&self) -> usize {
        self.values.ncols()
    }

    /// Whether the pixel at (row, column) holds image data rather than padding.
    #[inline]
    pub fn is_image(&self, row: usize, column: usize) -> bool {
        self.padding
            .as_ref()
            .is_none_or(|mask| !mask[(row, column)])
    }
}
