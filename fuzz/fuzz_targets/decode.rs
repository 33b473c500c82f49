//! Fuzzes the whole decoder: any bytes must give a radiograph or a DecodeError, never a panic,
//! a hang or an allocation beyond the limits. Seed the corpus with sample-dicom/ (see README).
#![no_main]

use libfuzzer_sys::fuzz_target;
use radassist::dicom::{read_bytes, DecodeLimits};
use radassist::imaging::display::{choose_voi, display_values, VoiChoice};

fuzz_target!(|data: &[u8]| {
    // A lower pixel limit keeps each run fast; the logic is the same.
    let limits = DecodeLimits { max_file_bytes: 1 << 24, max_pixels: 1 << 22 };
    if let Ok(radiograph) = read_bytes(data, &limits) {
        if let Ok(voi) = choose_voi(&radiograph, &VoiChoice::Default) {
            let _ = display_values(&radiograph, &voi);
        }
    }
});
