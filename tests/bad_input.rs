//! Hostile and broken input: every case must end in a clear error (or, for a cut that loses
//! nothing, the same image), never a panic, a hang, a giant allocation or a wrong image.

use crate::common;

use common::sample;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use proptest::prelude::*;
use radassist::dicom::{read_bytes, DecodeError, DecodeLimits};

fn bytes_of(file: &str) -> Vec<u8> {
    std::fs::read(sample(file)).expect("sample exists")
}

/// Samples covering the parse paths: bare data set, Part 10 native, deflated, and each codec.
const FILES: [&str; 9] = [
    "CR-MONO1-10-chest.dcm",
    "derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm",
    "derived/CR-MONO1-10-chest_DEFLATED.dcm",
    "derived/CR-MONO1-10-chest_RLE.dcm",
    "derived/CR-MONO1-10-chest_JPLL.dcm",
    "derived/CR-MONO1-10-chest_JLSL.dcm",
    "derived/CR-MONO1-10-chest_J2KR.dcm",
    "derived/CR-MONO1-10-chest_JPEG_EXTENDED_12BIT.dcm",
    "siim_chest_pa_jpeg_baseline.dcm",
];

#[test]
fn empty_and_random_input_is_not_dicom() {
    let limits = DecodeLimits::default();
    assert!(matches!(
        read_bytes(&[], &limits),
        Err(DecodeError::NotDicom { .. })
    ));
    let mut state = 0x2545F4914F6CDD1Du64;
    for length in [1usize, 7, 8, 131, 132, 133, 4096, 100_000] {
        let noise: Vec<u8> = (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        assert!(
            read_bytes(&noise, &limits).is_err(),
            "{length} random bytes decoded"
        );
    }
    // "DICM" at the right place, then garbage.
    let mut fake = vec![0u8; 128];
    fake.extend_from_slice(b"DICM\x02\x00\x00\x00UL\x04\x00\xff\xff\xff\xff");
    assert!(read_bytes(&fake, &limits).is_err());
}

/// Truncating a file anywhere must give an error, or exactly the image the whole file gives
/// (a cut after the last pixel byte loses nothing the image needs).
#[test]
fn truncation_anywhere_is_an_error_or_the_same_image() {
    let limits = DecodeLimits::default();
    for file in FILES {
        let whole = bytes_of(file);
        let expected = read_bytes(&whole, &limits)
            .expect("the whole file decodes")
            .values;
        // Every offset through the header, then a stride through the pixel data, then the tail.
        let head = (0..whole.len().min(2048)).collect::<Vec<_>>();
        let body = (2048..whole.len()).step_by(whole.len() / 97 + 1);
        let tail = whole.len().saturating_sub(16)..whole.len();
        for cut in head.into_iter().chain(body).chain(tail) {
            match read_bytes(&whole[..cut], &limits) {
                Err(_) => {}
                Ok(image) => assert_eq!(
                    image.values, expected,
                    "{file} cut at {cut} gave a different image"
                ),
            }
        }
    }
}

fn explicit_le_with(edit: impl FnOnce(&mut radassist::dicom::DicomInstance)) -> Vec<u8> {
    let mut object =
        radassist::dicom::parse_dicom(&bytes_of("derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm"))
            .unwrap();
    edit(&mut object);
    let mut out = Vec::new();
    object.write_all(&mut out).expect("writes");
    out
}

#[test]
fn absurd_rows_and_columns_are_refused_before_allocating() {
    let limits = DecodeLimits::default();
    let huge = explicit_le_with(|o| {
        o.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(65535u16),
        ));
        o.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(65535u16),
        ));
        o.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![0u16; 8].into()),
        ));
    });
    let err = read_bytes(&huge, &limits).expect_err("65535 x 65535 refused");
    assert!(
        matches!(
            err,
            DecodeError::ImageTooLarge {
                rows: 65535,
                columns: 65535,
                ..
            }
        ),
        "{err}"
    );

    let short = explicit_le_with(|o| {
        o.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(1000u16),
        ));
    });
    let err = read_bytes(&short, &limits).expect_err("pixel data shorter than the header");
    assert!(
        matches!(
            err,
            DecodeError::PixelDataTooShort {
                expected: 880_000,
                actual: 387_200
            }
        ),
        "{err}"
    );

    let zero = explicit_le_with(|o| {
        o.put(DataElement::new(
            tags::COLUMNS,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    });
    assert!(matches!(
        read_bytes(&zero, &limits),
        Err(DecodeError::InvalidAttribute {
            name: "Columns",
            ..
        })
    ));
}

#[test]
fn inconsistent_pixel_descriptions_are_refused() {
    let limits = DecodeLimits::default();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            explicit_le_with(|o| {
                o.put(DataElement::new(
                    tags::BITS_STORED,
                    VR::US,
                    PrimitiveValue::from(17u16),
                ));
            }),
            "BitsStored",
        ),
        (
            explicit_le_with(|o| {
                o.put(DataElement::new(
                    tags::BITS_ALLOCATED,
                    VR::US,
                    PrimitiveValue::from(12u16),
                ));
            }),
            "BitsAllocated",
        ),
        (
            explicit_le_with(|o| {
                o.put(DataElement::new(
                    tags::HIGH_BIT,
                    VR::US,
                    PrimitiveValue::from(3u16),
                ));
            }),
            "HighBit",
        ),
        (
            explicit_le_with(|o| {
                o.put(DataElement::new(
                    tags::SAMPLES_PER_PIXEL,
                    VR::US,
                    PrimitiveValue::from(3u16),
                ));
            }),
            "SamplesPerPixel",
        ),
        (
            explicit_le_with(|o| {
                o.put(DataElement::new(
                    tags::RESCALE_SLOPE,
                    VR::DS,
                    PrimitiveValue::from("0"),
                ));
            }),
            "RescaleSlope",
        ),
        (
            explicit_le_with(|o| {
                o.put(DataElement::new(
                    tags::RESCALE_SLOPE,
                    VR::DS,
                    PrimitiveValue::from("abc"),
                ));
            }),
            "RescaleSlope",
        ),
    ];
    for (bytes, attribute) in cases {
        match read_bytes(&bytes, &limits) {
            Err(DecodeError::InvalidAttribute { name, .. }) => assert_eq!(name, attribute),
            other => panic!("{attribute}: expected an invalid attribute, got {other:?}"),
        }
    }
    let rgb = explicit_le_with(|o| {
        o.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from("RGB"),
        ));
    });
    assert!(
        matches!(read_bytes(&rgb, &limits), Err(DecodeError::NotMonochrome(pi)) if pi == "RGB")
    );
    let missing = explicit_le_with(|o| {
        o.remove_element(tags::BITS_STORED);
    });
    assert!(matches!(
        read_bytes(&missing, &limits),
        Err(DecodeError::MissingAttribute {
            name: "BitsStored",
            ..
        })
    ));
}

#[test]
fn a_codestream_whose_size_disagrees_with_the_header_is_refused() {
    let limits = DecodeLimits::default();
    for file in [
        "derived/CR-MONO1-10-chest_JPLL.dcm",
        "derived/CR-MONO1-10-chest_JLSL.dcm",
        "derived/CR-MONO1-10-chest_J2KR.dcm",
    ] {
        for (rows, columns) in [(220u16, 440u16), (440, 220), (880, 220)] {
            let mut object = radassist::dicom::parse_dicom(&bytes_of(file)).unwrap();
            object.put(DataElement::new(
                tags::ROWS,
                VR::US,
                PrimitiveValue::from(rows),
            ));
            object.put(DataElement::new(
                tags::COLUMNS,
                VR::US,
                PrimitiveValue::from(columns),
            ));
            let mut bytes = Vec::new();
            object.write_all(&mut bytes).unwrap();
            let err = read_bytes(&bytes, &limits)
                .expect_err("geometry in doubt")
                .to_string();
            assert!(
                err.contains("440 x 440"),
                "{file} as {rows} x {columns}: {err}"
            );
        }
    }
}

#[test]
fn an_element_length_beyond_the_data_is_an_error() {
    // Pixel Data's length field claims almost 4 GiB in a 388 kB file.
    let mut bytes = bytes_of("derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm");
    let at = bytes
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .expect("pixel data tag");
    bytes[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    // Refused by the structure check, before the parser could allocate the claimed 4 GiB.
    let err = read_bytes(&bytes, &DecodeLimits::default())
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("(7FE0,0010)") && err.contains("claims 4294967280 bytes"),
        "{err}"
    );
    // The same in a sequence item deep in the header.
    let mut bytes = bytes_of("derived/CR-MONO1-10-chest_MAGNIFICATION.dcm");
    let at = bytes
        .windows(4)
        .position(|w| w == [0x54, 0x00, 0x20, 0x02])
        .expect("view code sequence");
    bytes[at + 8..at + 12].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    let err = read_bytes(&bytes, &DecodeLimits::default())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("(0054,0220)"), "{err}");
}

/// Found by fuzzing: an RLE segment that decodes short made dicom-rs's RLE adapter panic.
#[test]
fn a_short_rle_segment_is_an_error() {
    let whole = bytes_of("derived/CR-MONO1-10-chest_RLE.dcm");
    let object = radassist::dicom::parse_dicom(&whole).unwrap();
    let fragment = object
        .element(tags::PIXEL_DATA)
        .unwrap()
        .value()
        .fragments()
        .unwrap()[0]
        .clone();
    let at = whole
        .windows(64)
        .position(|w| w == &fragment[..64])
        .expect("RLE header in the file");
    // Move the second segment's start back by 1000 bytes: the first decodes short.
    let mut bytes = whole.clone();
    let second = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
    bytes[at + 8..at + 12].copy_from_slice(&(second - 1000).to_le_bytes());
    let err = read_bytes(&bytes, &DecodeLimits::default())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("RLE segment 1"), "{err}");
    // A segment count that does not fit 16-bit samples.
    let mut bytes = whole;
    bytes[at..at + 4].copy_from_slice(&3u32.to_le_bytes());
    let err = read_bytes(&bytes, &DecodeLimits::default())
        .expect_err("refused")
        .to_string();
    assert!(err.contains("3 segments"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random byte corruptions anywhere in a real file: no panic, whatever the outcome.
    #[test]
    fn corrupted_files_never_panic(
        file in prop::sample::select(FILES.to_vec()),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
    ) {
        let mut bytes = bytes_of(file);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = read_bytes(&bytes, &DecodeLimits::default());
    }
}
