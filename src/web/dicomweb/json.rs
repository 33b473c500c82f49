//! DICOM JSON (PS3.18 F.2) as this server writes it: a search's answers with the URL each is
//! retrieved at (Retrieve URL), and an instance's metadata with its pixel data replaced by
//! the URL of its frames (a Bulk Data URI), as viewers expect.

use crate::app::archive::Level;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use serde_json::{json, Map, Value};

/// The key of `tag` in a DICOM JSON object.
fn key(tag: Tag) -> String {
    format!("{:04X}{:04X}", tag.group(), tag.element())
}

fn text(data_set: &InMemDicomObject, tag: Tag) -> String {
    crate::dicom::Attributes(data_set)
        .text(tag)
        .unwrap_or_default()
}

/// The URL an answer at `level` is retrieved at.
pub fn retrieve_url(base: &str, answer: &InMemDicomObject, level: Level) -> String {
    let mut url = format!("{base}/studies/{}", text(answer, tags::STUDY_INSTANCE_UID));
    if level != Level::Study {
        url.push_str(&format!(
            "/series/{}",
            text(answer, tags::SERIES_INSTANCE_UID)
        ));
    }
    if level == Level::Instance {
        url.push_str(&format!(
            "/instances/{}",
            text(answer, tags::SOP_INSTANCE_UID)
        ));
    }
    url
}

/// A data set as DICOM JSON (serialising a parsed data set does not fail: an element that
/// would is left out, with a log line), its IS and DS values as JSON numbers.
pub fn data_set(data_set: &InMemDicomObject) -> Map<String, Value> {
    let mut map = written(data_set);
    numbers(&mut map);
    map
}

/// IS and DS values (decimal text in DICOM) as JSON numbers, as PS3.18 F.2.3 lists them (and
/// Orthanc and the viewers write and read them), in sequences too. A value that is not a
/// finite number stays text.
fn numbers(map: &mut Map<String, Value>) {
    for element in map.values_mut() {
        let vr = element["vr"].as_str().unwrap_or("").to_string();
        let Some(values) = element.get_mut("Value").and_then(Value::as_array_mut) else {
            continue;
        };
        for value in values.iter_mut() {
            match (vr.as_str(), &mut *value) {
                ("IS", Value::String(text)) => {
                    if let Ok(n) = text.trim().parse::<i64>() {
                        *value = json!(n);
                    }
                }
                ("DS", Value::String(text)) => {
                    if let Some(n) = text.trim().parse::<f64>().ok().filter(|n| n.is_finite()) {
                        // A whole number as one ("150", not "150.0").
                        *value = if n.fract() == 0.0 && n.abs() < 9e15 {
                            json!(n as i64)
                        } else {
                            json!(n)
                        };
                    }
                }
                ("SQ", Value::Object(item)) => numbers(item),
                _ => {}
            }
        }
    }
}

fn written(data_set: &InMemDicomObject) -> Map<String, Value> {
    match dicom_json::to_value(data_set) {
        Ok(Value::Object(map)) => map,
        Ok(_) => Map::new(),
        Err(e) => {
            tracing::warn!("DICOMweb: a data set does not serialise as DICOM JSON ({e})");
            let mut map = Map::new();
            for element in data_set.iter() {
                if let Ok(Value::Object(one)) =
                    dicom_json::to_value(&InMemDicomObject::from_element_iter([element.clone()]))
                {
                    map.extend(one);
                }
            }
            map
        }
    }
}

/// A search's answers, each with its Retrieve URL.
pub fn answers(answers: &[InMemDicomObject], base: &str, level: Level) -> Value {
    Value::Array(
        answers
            .iter()
            .map(|answer| {
                let mut map = data_set(answer);
                map.insert(
                    key(tags::RETRIEVE_URL),
                    json!({"vr": "UR", "Value": [retrieve_url(base, answer, level)]}),
                );
                Value::Object(map)
            })
            .collect(),
    )
}

/// An instance's metadata: its data set without its pixel data, which is named by the URL of
/// its frames (`frames` of them).
pub fn metadata(data_set: &InMemDicomObject, instance_url: &str, frames: u32) -> Value {
    let mut without = data_set.clone();
    let pixel_vr = without
        .take_element(tags::PIXEL_DATA)
        .ok()
        .map(|e| e.vr().to_string());
    let mut map = self::data_set(&without);
    if let Some(vr) = pixel_vr {
        let list: Vec<String> = (1..=frames.max(1)).map(|f| f.to_string()).collect();
        map.insert(
            key(tags::PIXEL_DATA),
            json!({"vr": vr, "BulkDataURI": format!("{instance_url}/frames/{}", list.join(","))}),
        );
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, VR};

    #[test]
    fn integer_and_decimal_strings_are_written_as_numbers() {
        let item = InMemDicomObject::from_element_iter([DataElement::new(
            tags::SLICE_THICKNESS,
            VR::DS,
            "1.200",
        )]);
        let data_set = InMemDicomObject::from_element_iter([
            DataElement::new(tags::SERIES_NUMBER, VR::IS, " 12"),
            DataElement::new(
                tags::PIXEL_SPACING,
                VR::DS,
                dicom_core::PrimitiveValue::Strs(
                    ["0.168".into(), "0.170".into()].into_iter().collect(),
                ),
            ),
            DataElement::new(tags::WINDOW_CENTER, VR::DS, "not a number"),
            DataElement::new(tags::WINDOW_WIDTH, VR::DS, "400.0"),
            DataElement::new(
                tags::REFERENCED_IMAGE_SEQUENCE,
                VR::SQ,
                dicom_core::value::DataSetSequence::from(vec![item]),
            ),
        ]);
        let json = Value::Object(self::data_set(&data_set));
        assert_eq!(json["00200011"]["Value"], json!([12]));
        assert_eq!(json["00280030"]["Value"], json!([0.168, 0.17]));
        assert_eq!(json["00281050"]["Value"], json!(["not a number"]));
        assert_eq!(json["00281051"]["Value"], json!([400]));
        assert_eq!(
            json["00081140"]["Value"][0]["00180050"]["Value"],
            json!([1.2])
        );
    }
}
