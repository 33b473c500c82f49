//! A search's answers: the entries the store returned, gathered into studies, their series and
//! instances (each instance seen with its study's and series' attributes, those radassist
//! computes included), matched against every key, and shaped as the search's level returns
//! them.

use super::{attributes, text, Found, Held, Include, Level, Search};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use std::collections::BTreeSet;

/// One study of the archive: its attributes (those of its first instance received, with what
/// radassist computes), and its instances by series.
struct Study<'a> {
    attributes: InMemDicomObject,
    series: Vec<Series<'a>>,
}

struct Series<'a> {
    attributes: InMemDicomObject,
    instances: Vec<&'a Held>,
}

/// The elements `tags` of `from` (those it has) put into `into`.
fn copy(into: &mut InMemDicomObject, from: &InMemDicomObject, tags: &[Tag]) {
    for &tag in tags {
        if let Ok(element) = from.element(tag) {
            into.put(element.clone());
        }
    }
}

fn put_text(into: &mut InMemDicomObject, tag: Tag, vr: VR, values: Vec<String>) {
    into.put(DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(values.into_iter().collect()),
    ));
}

fn put_count(into: &mut InMemDicomObject, tag: Tag, count: usize) {
    put_text(into, tag, VR::IS, vec![count.to_string()]);
}

/// The studies of `held` (in the order met), their series and instances.
fn studies(held: &[Held]) -> Vec<Study<'_>> {
    let mut studies: Vec<Study> = Vec::new();
    let mut current: Option<&str> = None;
    for h in held {
        if current != Some(h.entry.study_instance_uid.as_str()) {
            current = Some(&h.entry.study_instance_uid);
            // The study's attributes are those of its first entry: an instance received when
            // it has one (the store lists them before the results made from them).
            let mut attributes = InMemDicomObject::new_empty();
            copy(&mut attributes, &h.attributes, attributes::STUDY);
            studies.push(Study {
                attributes,
                series: Vec::new(),
            });
        }
        let study = studies.last_mut().expect("pushed above");
        let series_uid = h.text(tags::SERIES_INSTANCE_UID);
        match study
            .series
            .iter_mut()
            .find(|s| text(&s.attributes, tags::SERIES_INSTANCE_UID) == series_uid)
        {
            Some(series) => series.instances.push(h),
            None => {
                let mut attributes = InMemDicomObject::new_empty();
                copy(&mut attributes, &h.attributes, attributes::SERIES);
                study.series.push(Series {
                    attributes,
                    instances: vec![h],
                });
            }
        }
    }
    for study in &mut studies {
        computed(study);
    }
    studies
}

/// The attributes radassist computes for a study and its series.
fn computed(study: &mut Study) {
    let mut modalities = BTreeSet::new();
    let mut classes = BTreeSet::new();
    let mut instances = 0;
    for series in &mut study.series {
        let modality = text(&series.attributes, tags::MODALITY);
        if !modality.is_empty() {
            modalities.insert(modality);
        }
        for i in &series.instances {
            classes.insert(i.text(tags::SOP_CLASS_UID));
        }
        instances += series.instances.len();
        put_count(
            &mut series.attributes,
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
            series.instances.len(),
        );
    }
    let a = &mut study.attributes;
    put_text(
        a,
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        modalities.into_iter().collect(),
    );
    classes.remove("");
    put_text(
        a,
        tags::SOP_CLASSES_IN_STUDY,
        VR::UI,
        classes.into_iter().collect(),
    );
    put_count(a, tags::NUMBER_OF_STUDY_RELATED_SERIES, study.series.len());
    put_count(a, tags::NUMBER_OF_STUDY_RELATED_INSTANCES, instances);
    put_text(
        a,
        tags::INSTANCE_AVAILABILITY,
        VR::CS,
        vec!["ONLINE".into()],
    );
}

/// An instance as a search matches it: its own attributes with its series' and study's.
fn whole(study: &Study, series: &Series, instance: &Held) -> InMemDicomObject {
    let mut whole = instance.attributes.clone();
    for element in series.attributes.iter().chain(study.attributes.iter()) {
        whole.put(element.clone());
    }
    whole
}

/// The answers of `search` among `held`.
pub(super) fn answers(search: &Search, held: &[Held]) -> Found {
    let studies = studies(held);
    let keys = &search.keys;
    let matching = |record: &InMemDicomObject| keys.iter().all(|k| k.matches(record));
    let mut matched = Vec::new();
    for study in &studies {
        let mut study_matched = false;
        for series in &study.series {
            if search
                .series
                .as_ref()
                .is_some_and(|s| *s != text(&series.attributes, tags::SERIES_INSTANCE_UID))
            {
                continue;
            }
            let mut series_matched = false;
            for instance in &series.instances {
                let record = whole(study, series, instance);
                if !matching(&record) {
                    continue;
                }
                match search.level {
                    Level::Instance => matched.push(answer(search, &record, Level::Instance)),
                    Level::Series if !series_matched => {
                        series_matched = true;
                        matched.push(answer(search, &record, Level::Series));
                    }
                    Level::Study if !study_matched => {
                        study_matched = true;
                        matched.push(answer(search, &record, Level::Study));
                    }
                    _ => {}
                }
            }
        }
    }
    let count = matched.len();
    Found {
        answers: matched
            .into_iter()
            .skip(search.offset)
            .take(search.limit)
            .collect(),
        matched: count,
    }
}

/// The study attributes radassist computes.
const STUDY_COMPUTED: [Tag; 5] = [
    tags::MODALITIES_IN_STUDY,
    tags::SOP_CLASSES_IN_STUDY,
    tags::NUMBER_OF_STUDY_RELATED_SERIES,
    tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
    tags::INSTANCE_AVAILABILITY,
];

/// The attributes an answer at `level` returns, taken from `record` (an instance seen whole):
/// its level's, the levels' above it when the search is not within them, the keys', and those
/// the search includes (of its level and above).
fn answer(search: &Search, record: &InMemDicomObject, level: Level) -> InMemDicomObject {
    let all = search.include == Include::All;
    let mut returned: Vec<Tag> = vec![tags::STUDY_INSTANCE_UID];
    if level == Level::Study || search.study.is_none() || all {
        returned.extend(attributes::STUDY);
        returned.extend(STUDY_COMPUTED);
    }
    if level == Level::Series || (level == Level::Instance && (search.series.is_none() || all)) {
        returned.extend(attributes::SERIES);
        returned.push(tags::NUMBER_OF_SERIES_RELATED_INSTANCES);
    }
    if level == Level::Instance {
        returned.extend(attributes::INSTANCE);
    }
    if level != Level::Study {
        // The scope's UIDs are always returned: a viewer builds its links from them.
        returned.push(tags::SERIES_INSTANCE_UID);
    }
    if let Include::Also(also) = &search.include {
        returned.extend(also);
    }
    returned.extend(search.keys.iter().map(|k| k.tag));
    let mut out = InMemDicomObject::new_empty();
    for tag in returned {
        if let Ok(element) = record.element(tag) {
            out.put(element.clone());
        }
    }
    out
}
