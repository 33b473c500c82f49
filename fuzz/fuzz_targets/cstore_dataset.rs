//! Fuzzes a data set received by C-STORE: the listener puts its own file meta group (here: CR
//! Image Storage, Explicit VR Little Endian) before the bytes as they came, and ingest then
//! parses and reads the header (the checks before anything is written). Any bytes must give an
//! instance or an error naming what is wrong, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use radassist::dicom::{parse_dicom, ImageHeader};

/// Preamble, "DICM" and a file meta group as the listener writes it.
fn meta() -> Vec<u8> {
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    let mut group = Vec::new();
    let mut element = |element: u16, vr: &[u8; 2], value: &[u8]| {
        let mut value = value.to_vec();
        if value.len() % 2 == 1 {
            value.push(0);
        }
        group.extend_from_slice(&[0x02, 0x00]);
        group.extend_from_slice(&element.to_le_bytes());
        group.extend_from_slice(vr);
        if vr == b"OB" {
            group.extend_from_slice(&[0, 0]);
            group.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            group.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        group.extend_from_slice(&value);
    };
    element(0x0001, b"OB", &[0, 1]);
    element(0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.1");
    element(0x0003, b"UI", b"1.2.3.4");
    element(0x0010, b"UI", b"1.2.840.10008.1.2.1");
    element(0x0012, b"UI", b"2.25.171493722431906374125476937117196340893");
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00]);
    out.extend_from_slice(b"UL");
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&(group.len() as u32).to_le_bytes());
    out.extend_from_slice(&group);
    out
}

fuzz_target!(|data: &[u8]| {
    let mut bytes = meta();
    bytes.extend_from_slice(data);
    if let Ok(instance) = parse_dicom(&bytes) {
        let _ = ImageHeader::from_instance(&instance);
    }
});
