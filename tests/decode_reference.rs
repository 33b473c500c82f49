//! Decoding every sample against values computed independently (pydicom with its pylibjpeg
//! and GDCM plugins; dcmtk's dcmdjpeg for lossy JPEG), stored by scripts/make-fixtures.py.

use crate::common;

use common::*;
use radassist::dicom::{self, DecodeError, DecodeLimits};
use radassist::imaging::display::{choose_voi, display_values, VoiChoice};
use radassist::imaging::output::{quantise, PngDepth};
use radassist::imaging::Radiograph;

fn decode(relative_to_root: &str) -> Radiograph {
    dicom::read_file(&root().join(relative_to_root), &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("{relative_to_root}: {e}"))
}

fn rendered(radiograph: &Radiograph, choice: &VoiChoice) -> Vec<u8> {
    let voi = choose_voi(radiograph, choice).expect("voi");
    quantise(display_values(radiograph, &voi).view(), PngDepth::Eight)
}

#[test]
fn modality_values_equal_the_reference_exactly() {
    let mut checked = 0;
    for (name, reference) in manifest().into_iter().filter(|(_, r)| r.decodes) {
        let radiograph = decode(&reference.file);
        assert_eq!(
            radiograph.values.dim(),
            (reference.rows, reference.columns),
            "{name}"
        );
        if reference.values_array {
            let (expected, shape) =
                read_npy_gz(&reference_dir().join(format!("{name}.values.npy.gz")));
            assert_eq!(shape, vec![reference.rows, reference.columns], "{name}");
            let actual: Vec<f32> = radiograph.values.iter().copied().collect();
            let (max, count) = compare(&actual, &expected);
            assert_eq!(
                count, 0,
                "{name}: {count} values differ from the reference, by up to {max}"
            );
        }
        let hash = sha256_f32(radiograph.values.iter().copied());
        assert_eq!(
            hash, reference.values_sha256,
            "{name}: values differ from the reference (hash)"
        );
        checked += 1;
    }
    assert!(checked >= 28, "only {checked} references checked");
}

#[test]
fn display_images_match_the_reference_to_rounding() {
    for (name, reference) in manifest().into_iter().filter(|(_, r)| r.decodes) {
        let radiograph = decode(&reference.file);
        let actual = rendered(&radiograph, &VoiChoice::Default);
        let (expected, width, height) =
            read_png8(&reference_dir().join(format!("{name}.display.png")));
        assert_eq!(
            (height as usize, width as usize),
            radiograph.values.dim(),
            "{name}"
        );
        let (max, count) = compare(&actual, &expected);
        // Both sides round half up, but a value that sits exactly on a .5 boundary in real
        // arithmetic (LINEAR_EXACT with c = 500, w = 600 makes many) can land on either side
        // after float rounding. Everything else must agree exactly.
        assert!(max <= 1.0, "{name}: display differs by up to {max} levels");
        assert!(
            count * 100 <= actual.len(),
            "{name}: {count} of {} pixels differ by one level",
            actual.len()
        );
    }
}

const LOSSLESS_ENCODINGS_OF_CR_CHEST: [&str; 12] = [
    "CR-MONO1-10-chest.dcm",
    "derived/CR-MONO1-10-chest_EXPLICIT_LE.dcm",
    "derived/CR-MONO1-10-chest_EXPLICIT_BE.dcm",
    "derived/CR-MONO1-10-chest_DEFLATED.dcm",
    "derived/CR-MONO1-10-chest_NO_PREAMBLE.dcm",
    "derived/CR-MONO1-10-chest_RLE.dcm",
    "derived/CR-MONO1-10-chest_JPLL.dcm",
    "derived/CR-MONO1-10-chest_JPEG_LOSSLESS_P14_SV2.dcm",
    "derived/CR-MONO1-10-chest_JLSL.dcm",
    "derived/CR-MONO1-10-chest_J2KR.dcm",
    "derived/CR-MONO1-10-chest_HIGH_BITS_SET.dcm",
    "derived/CR-MONO1-10-chest_SIGNED.dcm",
];

#[test]
fn every_lossless_encoding_decodes_to_the_same_array() {
    let original = decode("sample-dicom/CR-MONO1-10-chest.dcm").values;
    for file in LOSSLESS_ENCODINGS_OF_CR_CHEST {
        let radiograph = decode(&format!("sample-dicom/{file}"));
        assert_eq!(radiograph.values, original, "{file}");
    }
}

#[test]
fn lossy_encodings_stay_close_to_the_original() {
    let original = decode("sample-dicom/CR-MONO1-10-chest.dcm").values;
    // dcmcjpeg stored the 10-bit image as 12 bits (values x 4).
    let extended =
        decode("sample-dicom/derived/CR-MONO1-10-chest_JPEG_EXTENDED_12BIT.dcm").values / 4.0;
    let near = decode("sample-dicom/derived/CR-MONO1-10-chest_JLSN.dcm").values;
    let max_error =
        |a: &ndarray::Array2<f32>| (a - &original).iter().fold(0f32, |m, d| m.max(d.abs()));
    // JPEG-LS near-lossless bounds the error by NEAR (dcmcjpls default 2).
    assert!(
        max_error(&near) <= 2.0,
        "near-lossless error {}",
        max_error(&near)
    );
    assert!(
        max_error(&extended) < 16.0,
        "12-bit JPEG error {}",
        max_error(&extended)
    );
}

#[test]
fn monochrome1_and_its_inverted_monochrome2_copy_render_alike() {
    let mono1 = rendered(
        &decode("sample-dicom/CR-MONO1-10-chest.dcm"),
        &VoiChoice::Default,
    );
    // The copy's header window (centre 473) is the mirror image less one value, so display
    // levels can differ by one; with the exact mirror (centre 474) they are identical.
    let copy = decode("sample-dicom/derived/CR-MONO1-10-chest_as_MONOCHROME2.dcm");
    let (max, _) = compare(&mono1, &rendered(&copy, &VoiChoice::Default));
    assert!(max <= 1.0);
    let mirrored = VoiChoice::Explicit {
        center: 474.0,
        width: 1024.0,
    };
    assert_eq!(rendered(&copy, &mirrored), mono1);
    let inverse = decode("sample-dicom/derived/CR-MONO1-10-chest_PRESENTATION_INVERSE.dcm");
    assert!(inverse.header.display.inverted);
    assert_eq!(rendered(&inverse, &VoiChoice::Default), mono1);
}

#[test]
fn a_fake_monochrome1_renders_inverted() {
    let normal = rendered(
        &decode("sample-dicom/siim_chest_pa_jpeg_baseline.dcm"),
        &VoiChoice::Default,
    );
    let fake = decode("sample-dicom/siim_fake_monochrome1.dcm");
    assert!(fake.header.display.inverted);
    let fake = rendered(&fake, &VoiChoice::Default);
    // Same pixels, so every display level is the mirror image of the MONOCHROME2 one.
    let inverted: Vec<u8> = normal.iter().map(|v| 255 - v).collect();
    let (max, _) = compare(&fake, &inverted);
    assert!(max <= 1.0);
    assert!(normal.iter().zip(&fake).filter(|(a, b)| a == b).count() < normal.len() / 50);
}

#[test]
fn padding_pixels_display_black_and_stay_out_of_the_values() {
    let padded = decode("sample-dicom/derived/CR-MONO1-10-chest_PIXEL_PADDING.dcm");
    let mask = padded.padding.as_ref().expect("padding mask");
    assert_eq!(mask.iter().filter(|&&p| p).count(), 440 * 440 - 408 * 408);
    let shown = rendered(&padded, &VoiChoice::Default);
    assert!(mask.iter().zip(&shown).all(|(&p, &v)| !p || v == 0));
}

#[test]
fn a_second_window_and_explicit_windows_can_be_chosen() {
    let two = decode("sample-dicom/derived/CR-MONO1-10-chest_TWO_WINDOWS.dcm");
    assert_eq!(two.header.display.windows.len(), 2);
    assert_eq!(
        two.header.display.windows[1].explanation.as_deref(),
        Some("NARROW")
    );
    let narrow = rendered(&two, &VoiChoice::Window(1));
    assert_eq!(
        narrow,
        rendered(
            &two,
            &VoiChoice::Explicit {
                center: 300.0,
                width: 200.0
            }
        )
    );
    assert_ne!(narrow, rendered(&two, &VoiChoice::Default));
    assert!(choose_voi(&two, &VoiChoice::Window(2)).is_err());
}

#[test]
fn undecodable_instances_are_refused_with_the_reason() {
    let limits = DecodeLimits::default();
    let frames = dicom::read_file(&sample("derived/CR-MONO1-10-chest_TWO_FRAMES.dcm"), &limits);
    assert!(
        matches!(frames, Err(DecodeError::MultiFrame { frames: 2 })),
        "{frames:?}"
    );
    let sr = dicom::read_file(&sample("derived/basic_text_sr.dcm"), &limits);
    assert!(
        matches!(&sr, Err(DecodeError::NotAnImage { sop_class }) if sop_class.ends_with(".88.11")),
        "{sr:?}"
    );
    // The NEMA WG04 10-bit JPEG extended file that no decoder tried here (dcmtk, GDCM, pylibjpeg)
    // decodes cleanly: refused, naming the syntax.
    let jply = dicom::read_file(&sample("non_chest/RG3_JPLY.dcm"), &limits);
    let message = jply.expect_err("must be refused").to_string();
    assert!(message.contains("JPEG Extended"), "{message}");
}
