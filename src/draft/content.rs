//! SR content items (PS3.3 C.17.3): the building blocks of the report's tree (TID 2000) and of
//! the measurement report's (TID 1500), one function per value type.

use super::codes::{self, Code};
use super::dataset::{coded, referenced_sop, sequence, text, Item};
use super::ImageReference;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// How a content item relates to its parent (PS3.3 C.17.3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    Contains,
    HasObsContext,
    HasConceptMod,
    HasProperties,
    InferredFrom,
    SelectedFrom,
}

impl Relationship {
    fn as_str(self) -> &'static str {
        match self {
            Relationship::Contains => "CONTAINS",
            Relationship::HasObsContext => "HAS OBS CONTEXT",
            Relationship::HasConceptMod => "HAS CONCEPT MOD",
            Relationship::HasProperties => "HAS PROPERTIES",
            Relationship::InferredFrom => "INFERRED FROM",
            Relationship::SelectedFrom => "SELECTED FROM",
        }
    }
}

/// A content item: relationship (None for the root), value type, concept name (None: an item
/// without one, such as an image library entry).
pub fn item(relationship: Option<Relationship>, value_type: &str, concept: Option<&Code>) -> Item {
    let mut item = InMemDicomObject::new_empty();
    if let Some(r) = relationship {
        item.put(text(tags::RELATIONSHIP_TYPE, VR::CS, r.as_str()));
    }
    item.put(text(tags::VALUE_TYPE, VR::CS, value_type));
    if let Some(concept) = concept {
        item.put(sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![coded(concept)],
        ));
    }
    item
}

/// Adds `children` under `item`.
pub fn with_children(mut item: Item, children: Vec<Item>) -> Item {
    if !children.is_empty() {
        item.put(sequence(tags::CONTENT_SEQUENCE, children));
    }
    item
}

pub fn text_item(relationship: Relationship, concept: &Code, value: &str) -> Item {
    let mut i = item(Some(relationship), "TEXT", Some(concept));
    i.put(text(tags::TEXT_VALUE, VR::UT, value));
    i
}

pub fn code_item(relationship: Relationship, concept: &Code, value: &Code) -> Item {
    let mut i = item(Some(relationship), "CODE", Some(concept));
    i.put(sequence(tags::CONCEPT_CODE_SEQUENCE, vec![coded(value)]));
    i
}

pub fn uid_item(relationship: Relationship, concept: &Code, uid: &str) -> Item {
    let mut i = item(Some(relationship), "UIDREF", Some(concept));
    i.put(text(tags::UID, VR::UI, uid));
    i
}

pub fn person_item(relationship: Relationship, concept: &Code, name: &str) -> Item {
    let mut i = item(Some(relationship), "PNAME", Some(concept));
    i.put(text(tags::PERSON_NAME, VR::PN, name));
    i
}

/// A container (continuity SEPARATE) of `children`, with its template when it starts one.
pub fn container(
    relationship: Option<Relationship>,
    concept: &Code,
    template: Option<&str>,
    children: Vec<Item>,
) -> Item {
    let mut c = item(relationship, "CONTAINER", Some(concept));
    c.put(text(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
    if let Some(template) = template {
        c.put(sequence(
            tags::CONTENT_TEMPLATE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                text(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
                text(tags::TEMPLATE_IDENTIFIER, VR::CS, template),
            ])],
        ));
    }
    with_children(c, children)
}

/// A numeric measurement: its value (DS, at most 16 characters) and units.
pub fn num_item(relationship: Relationship, concept: &Code, value: f64, units: &Code) -> Item {
    let mut i = item(Some(relationship), "NUM", Some(concept));
    let measured = InMemDicomObject::from_element_iter([
        text(tags::NUMERIC_VALUE, VR::DS, &decimal(value)),
        sequence(tags::MEASUREMENT_UNITS_CODE_SEQUENCE, vec![coded(units)]),
    ]);
    i.put(sequence(tags::MEASURED_VALUE_SEQUENCE, vec![measured]));
    i
}

/// A decimal string of at most 16 characters: one decimal for large values, more for small
/// ones (probabilities).
fn decimal(value: f64) -> String {
    let value = if value.is_finite() { value } else { 0.0 };
    if value.abs() >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.4}")
    }
}

/// An image reference item.
pub fn image_item(
    relationship: Relationship,
    concept: Option<&Code>,
    image: &ImageReference,
) -> Item {
    let mut i = item(Some(relationship), "IMAGE", concept);
    i.put(sequence(
        tags::REFERENCED_SOP_SEQUENCE,
        vec![referenced_sop(image)],
    ));
    i
}

/// The image a measurement was made on.
pub fn source_of_measurement(image: &ImageReference) -> Item {
    image_item(
        Relationship::InferredFrom,
        Some(&codes::SOURCE_OF_MEASUREMENT),
        image,
    )
}

/// A point on `image` (SCOORD POINT, column then row, in the image's pixel coordinates where
/// the top left corner of the top left pixel is 0,0: a pixel's centre is at +0.5), selected from
/// that image.
pub fn point_item(
    relationship: Relationship,
    concept: &Code,
    column: f64,
    row: f64,
    image: &ImageReference,
) -> Item {
    scoord_item(relationship, concept, "POINT", &[(column, row)], image)
}

/// A line on `image` through `points` (column, row), as a SCOORD POLYLINE selected from it.
pub fn polyline_item(
    relationship: Relationship,
    concept: &Code,
    points: &[(f64, f64)],
    image: &ImageReference,
) -> Item {
    scoord_item(relationship, concept, "POLYLINE", points, image)
}

fn scoord_item(
    relationship: Relationship,
    concept: &Code,
    graphic_type: &str,
    points: &[(f64, f64)],
    image: &ImageReference,
) -> Item {
    let mut i = item(Some(relationship), "SCOORD", Some(concept));
    i.put(text(tags::GRAPHIC_TYPE, VR::CS, graphic_type));
    let data: Vec<f32> = points
        .iter()
        .flat_map(|&(column, row)| [column as f32, row as f32])
        .collect();
    i.put(DataElement::new(
        tags::GRAPHIC_DATA,
        VR::FL,
        PrimitiveValue::F32(data.as_slice().into()),
    ));
    with_children(i, vec![image_item(Relationship::SelectedFrom, None, image)])
}
