//! The marks on the film as a Grayscale Softcopy Presentation State (PS3.3 A.33.1): what a PACS
//! viewer draws over the radiograph when the radiologist opens radassist's marks, the same marks
//! as the reading room's overlay ([`crate::analysis::marks`]).
//!
//! The presentation state references the film and carries its window (the one the overlay is
//! drawn with: the header's first window, else its first VOI LUT, else the image's range) as the
//! Softcopy VOI LUT, the film's rescale as its Modality LUT, and MONOCHROME1 films as an INVERSE
//! presentation LUT. The marks are graphic objects (polylines: levels, callipers, crosses, the
//! junction band) and text objects (each label, with its value), in PIXEL units, in four named
//! graphic layers (reference levels, landmarks, measurements, devices) and a fifth for the
//! legend (display-relative, top left). Each object's colour (a device's verdict, or the
//! reference colour) is its Line Style's and Text Style's CIELab value; each layer also
//! recommends a colour and a grey for viewers that colour by layer.
//!
//! Coordinates: the marks' image positions have pixel centres at whole numbers; PIXEL units
//! put the top left corner of the top left pixel at 0,0, so a point is written at +0.5. Sizes
//! that are display pixels on the overlay (cross arms, ticks, label offsets) are converted with
//! the overlay's own scale, so the marks keep their proportions.

mod graphics;

use crate::analysis::marks::{self, Colour, Layer};
use crate::analysis::StudyAnalysis;
use crate::dicom::DicomInstance;
use crate::draft::dataset::{self, sequence, text, Created, Item, NewInstance, ObjectError};
use crate::imaging::lut::VoiTransform;
use crate::imaging::Radiograph;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use graphics::{cielab, objects, text_object, us, Geometry};

pub const GRAYSCALE_SOFTCOPY_PRESENTATION_STATE: &str = "1.2.840.10008.5.1.4.1.1.11.1";
/// The series number of the presentation states radassist makes.
pub const SERIES_NUMBER: u32 = 9003;
const LEGEND_LAYER: &str = "LEGEND";
/// The layer of the overlay plane: the marks as a bitmap, for viewers (and dcmtk's
/// `dcmp2pgm`) that draw overlays but not graphic annotations.
const BITMAP_LAYER: &str = "MARKS BITMAP";

fn referenced_image(film: &crate::draft::ImageReference) -> DataElement<Item> {
    sequence(
        tags::REFERENCED_IMAGE_SEQUENCE,
        vec![dataset::referenced_sop(film)],
    )
}

/// Graphic Annotation and Graphic Layer: one annotation item per layer that has marks.
fn annotations(
    study: &StudyAnalysis,
    film: &crate::draft::ImageReference,
    g: &Geometry,
) -> (Vec<Item>, Vec<Item>) {
    let all = marks::marks(study);
    let mut annotations = Vec::new();
    let mut layers = Vec::new();
    for (order, layer) in Layer::ALL.iter().enumerate() {
        let (mut graphics, mut texts) = (Vec::new(), Vec::new());
        for mark in all.iter().filter(|m| m.layer == *layer) {
            let (gs, ts) = objects(g, mark);
            graphics.extend(gs);
            texts.extend(ts);
        }
        if graphics.is_empty() && texts.is_empty() {
            continue;
        }
        let colour = if *layer == Layer::ReferenceLevels || *layer == Layer::Landmarks {
            Colour::Reference
        } else {
            Colour::White
        };
        layers.push(layer_item(
            layer.name(),
            order + 1,
            layer.description(),
            colour,
        ));
        let mut item = InMemDicomObject::from_element_iter([
            referenced_image(film),
            text(tags::GRAPHIC_LAYER, VR::CS, layer.name()),
        ]);
        if !graphics.is_empty() {
            item.put(sequence(tags::GRAPHIC_OBJECT_SEQUENCE, graphics));
        }
        if !texts.is_empty() {
            item.put(sequence(tags::TEXT_OBJECT_SEQUENCE, texts));
        }
        annotations.push(item);
    }
    let legend: Vec<Item> = marks::legend(study)
        .iter()
        .enumerate()
        .map(|(i, (line, colour))| {
            let top = 0.01 + 0.03 * i as f32;
            text_object(line, [0.01, top], [0.6, top + 0.028], "DISPLAY", *colour)
        })
        .collect();
    if !legend.is_empty() {
        layers.push(layer_item(
            LEGEND_LAYER,
            Layer::ALL.len() + 1,
            "each device's verdict",
            Colour::White,
        ));
        annotations.push(InMemDicomObject::from_element_iter([
            referenced_image(film),
            text(tags::GRAPHIC_LAYER, VR::CS, LEGEND_LAYER),
            sequence(tags::TEXT_OBJECT_SEQUENCE, legend),
        ]));
    }
    (annotations, layers)
}

fn layer_item(name: &str, order: usize, description: &str, colour: Colour) -> Item {
    InMemDicomObject::from_element_iter([
        text(tags::GRAPHIC_LAYER, VR::CS, name),
        text(tags::GRAPHIC_LAYER_ORDER, VR::IS, &order.to_string()),
        us(
            tags::GRAPHIC_LAYER_RECOMMENDED_DISPLAY_GRAYSCALE_VALUE,
            &[0xFFFF],
        ),
        us(
            tags::GRAPHIC_LAYER_RECOMMENDED_DISPLAY_CIE_LAB_VALUE,
            &cielab(colour.rgb()),
        ),
        text(tags::GRAPHIC_LAYER_DESCRIPTION, VR::LO, description),
    ])
}

/// Overlay Plane 6000 with the marks as a bitmap the size of the film, activated in its own
/// layer.
fn put_marks_overlay(pr: &mut Item, study: &StudyAnalysis, rows: u32, columns: u32) {
    let mask = crate::analysis::overlay::marks_mask(rows as usize, columns as usize, study);
    // One bit per pixel, row by row, the first pixel in the lowest bit (PS3.5 8.1.2).
    let mut words = vec![0u16; (mask.len()).div_ceil(16)];
    for (i, p) in mask.pixels().enumerate() {
        if p.0[0] != 0 {
            words[i / 16] |= 1 << (i % 16);
        }
    }
    let group = |element: u16| Tag(0x6000, element);
    pr.put(us(group(0x0010), &[rows as u16]));
    pr.put(us(group(0x0011), &[columns as u16]));
    pr.put(text(group(0x0022), VR::LO, "radassist tube and line marks"));
    pr.put(text(group(0x0040), VR::CS, "G"));
    pr.put(DataElement::new(
        group(0x0050),
        VR::SS,
        PrimitiveValue::I16([1, 1].as_slice().into()),
    ));
    pr.put(us(group(0x0100), &[1]));
    pr.put(us(group(0x0102), &[0]));
    pr.put(text(group(0x1001), VR::CS, BITMAP_LAYER));
    pr.put(text(group(0x1500), VR::LO, "RADASSIST MARKS"));
    pr.put(DataElement::new(
        group(0x3000),
        VR::OW,
        PrimitiveValue::U16(words.into()),
    ));
}

/// Modality LUT, Softcopy VOI LUT and Softcopy Presentation LUT: the film's rescale (or
/// Modality LUT Sequence), the window the overlay uses, and INVERSE for MONOCHROME1.
fn put_luts(
    pr: &mut Item,
    source: &DicomInstance,
    voi: &VoiTransform,
    inverted: bool,
    film: &crate::draft::ImageReference,
) {
    for tag in [
        tags::RESCALE_SLOPE,
        tags::RESCALE_INTERCEPT,
        tags::MODALITY_LUT_SEQUENCE,
    ] {
        if let Ok(element) = source.element(tag) {
            pr.put(element.clone());
        }
    }
    if source.element(tags::RESCALE_SLOPE).is_ok() {
        let kind = crate::dicom::Attributes(source)
            .text(tags::RESCALE_TYPE)
            .unwrap_or_else(|| "US".into());
        pr.put(text(tags::RESCALE_TYPE, VR::LO, &kind));
    }
    let mut voi_item = InMemDicomObject::from_element_iter([referenced_image(film)]);
    match voi {
        VoiTransform::Window(w) => {
            voi_item.put(text(
                tags::WINDOW_CENTER,
                VR::DS,
                &format!("{:.2}", w.center),
            ));
            voi_item.put(text(
                tags::WINDOW_WIDTH,
                VR::DS,
                &format!("{:.2}", w.width.max(1.0)),
            ));
            voi_item.put(text(tags::VOILUT_FUNCTION, VR::CS, w.function.as_str()));
        }
        VoiTransform::Table(_) => {
            if let Ok(table) = source.element(tags::VOILUT_SEQUENCE) {
                voi_item.put(table.clone());
            }
        }
    }
    pr.put(sequence(tags::SOFTCOPY_VOILUT_SEQUENCE, vec![voi_item]));
    let shape = if inverted { "INVERSE" } else { "IDENTITY" };
    pr.put(text(tags::PRESENTATION_LUT_SHAPE, VR::CS, shape));
}

/// The presentation state of `study`'s marks on `film` (`source`, decoded as `radiograph`),
/// shown through `voi`.
pub fn build(
    study: &StudyAnalysis,
    source: &DicomInstance,
    radiograph: &Radiograph,
    voi: &VoiTransform,
) -> Result<dicom_object::DefaultDicomObject, ObjectError> {
    let created = Created::now();
    let film = dataset::source_reference(source)?;
    let mut pr = dataset::new_object(
        source,
        &NewInstance {
            sop_class_uid: GRAYSCALE_SOFTCOPY_PRESENTATION_STATE,
            modality: "PR",
            series_number: SERIES_NUMBER,
            series_description: "radassist marks",
        },
        &created,
    )?;
    pr.put(text(tags::CONTENT_LABEL, VR::CS, "RADASSIST"));
    pr.put(text(
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        "radassist: tubes, lines and landmarks",
    ));
    // Type 2: radassist is no person (it is named in Contributing Equipment).
    pr.put(text(tags::CONTENT_CREATOR_NAME, VR::PN, ""));
    // General Series' Laterality (Type 2C): a chest film is of no paired structure.
    pr.put(text(tags::LATERALITY, VR::CS, ""));
    pr.put(text(
        tags::PRESENTATION_CREATION_DATE,
        VR::DA,
        &created.date,
    ));
    pr.put(text(
        tags::PRESENTATION_CREATION_TIME,
        VR::TM,
        &created.time,
    ));
    pr.put(sequence(
        tags::REFERENCED_SERIES_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            text(tags::SERIES_INSTANCE_UID, VR::UI, &film.series_instance_uid),
            referenced_image(&film),
        ])],
    ));
    let (rows, columns) = (
        radiograph.header.pixels.rows,
        radiograph.header.pixels.columns,
    );
    pr.put(sequence(
        tags::DISPLAYED_AREA_SELECTION_SEQUENCE,
        vec![InMemDicomObject::from_element_iter([
            DataElement::new(
                tags::DISPLAYED_AREA_TOP_LEFT_HAND_CORNER,
                VR::SL,
                PrimitiveValue::I32([1, 1].as_slice().into()),
            ),
            DataElement::new(
                tags::DISPLAYED_AREA_BOTTOM_RIGHT_HAND_CORNER,
                VR::SL,
                PrimitiveValue::I32([columns as i32, rows as i32].as_slice().into()),
            ),
            text(tags::PRESENTATION_SIZE_MODE, VR::CS, "SCALE TO FIT"),
            text(tags::PRESENTATION_PIXEL_ASPECT_RATIO, VR::IS, "1\\1"),
        ])],
    ));
    let (annotations, mut layers) = annotations(study, &film, &Geometry::of(rows, columns));
    if !annotations.is_empty() {
        pr.put(sequence(tags::GRAPHIC_ANNOTATION_SEQUENCE, annotations));
    }
    layers.push(layer_item(
        BITMAP_LAYER,
        layers.len() + 1,
        "the marks as an overlay bitmap, for viewers without graphics",
        Colour::White,
    ));
    pr.put(sequence(tags::GRAPHIC_LAYER_SEQUENCE, layers));
    put_marks_overlay(&mut pr, study, rows, columns);
    put_luts(
        &mut pr,
        source,
        voi,
        radiograph.header.display.inverted,
        &film,
    );
    dataset::put_contributing_equipment(
        &mut pr,
        &study.models,
        "tube and line marks drawn by radassist",
        &created,
    );
    dataset::with_meta(pr)
}
